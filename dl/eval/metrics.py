"""Classification metrics as masked sums, so that padded batches and any batching give exact
dataset means (divide by the summed mask); perplexity from summed token log-likelihoods."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def correct_sum(
    *, logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """logits: [batch, classes]; labels: [batch] int -> number of valid rows with argmax == label."""
    hit = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return jnp.sum(hit if mask is None else hit * mask)


def accuracy(*, logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    count = jnp.asarray(labels.shape[0], jnp.float32) if mask is None else jnp.sum(mask)
    return correct_sum(logits=logits, labels=labels, mask=mask) / jnp.maximum(count, 1.0)


def perplexity(total_nll: float, count: float) -> float:
    """exp(total_nll / count): the perplexity of `count` tokens whose negative log-likelihoods
    (natural log) sum to `total_nll`; 2 ** bits-per-token for the same tokens."""
    if count <= 0:
        raise ValueError(f"perplexity needs count > 0, got {count}")
    return math.exp(total_nll / count)
