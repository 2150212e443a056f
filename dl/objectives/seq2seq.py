"""Sequence-to-sequence objectives: token cross-entropy averaged over REAL target tokens only.

    loss_fn(params, extra, batch, rng) -> (loss, (metrics, extra))       (the engine's shape)
    eval_fn(params, extra, batch) -> {"loss": sum, "accuracy": sum, "count": tokens}

A batch (`BATCH_KEYS`): "src" [B, S] int, "src_lengths" [B] int, "tgt_in" [B, T] int (BOS,
y_1 .. y_{T-1}), "tgt_out" [B, T] int (y_1 .. y_T, EOS included), and optionally "tgt_mask"
[B, T] (1 / True = a real target token; without it, tgt_out != pad_id). A whole padded row
(a filler example in the last batch) is simply a row of mask 0.

The loss is sum(mask * nll) / sum(mask) over the batch: the mean over real tokens, so padding,
and how far a batch is padded, change nothing. (Flax's seq2seq example divides by all B * T
positions, padding included, which weights short batches down and makes the value depend on the
padding.) Metrics: perplexity exp(loss) and token accuracy (argmax == target), both over real
tokens. `eval_fn` returns sums so `dl.train.step.evaluate` gives exact corpus means per token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.ops.losses import cross_entropy

BATCH_KEYS = ("src", "src_lengths", "tgt_in", "tgt_out")


def target_mask(batch: dict, pad_id: int = 0) -> jax.Array:
    """[B, T] float32: batch["tgt_mask"] if present, else tgt_out != pad_id."""
    if "tgt_mask" in batch:
        return jnp.asarray(batch["tgt_mask"]).astype(jnp.float32)
    return (jnp.asarray(batch["tgt_out"]) != pad_id).astype(jnp.float32)


def token_sums(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
    """{"loss": sum of nll, "accuracy": sum of hits, "count": sum of mask} over real tokens.

    logits [B, T, V], targets [B, T] int, mask [B, T] (0 / 1). Padded positions are selected
    away (`where`), so even a non-finite logit there cannot reach the sums.
    """
    keep = mask != 0
    nll = cross_entropy(logits=logits, targets=targets, reduce=False)
    hits = (jnp.argmax(logits, axis=-1) == targets).astype(nll.dtype)
    zero = jnp.zeros((), nll.dtype)
    return {
        "loss": jnp.sum(jnp.where(keep, nll, zero)),
        "accuracy": jnp.sum(jnp.where(keep, hits, zero)),
        "count": jnp.sum(keep.astype(nll.dtype)),
    }


def _logits(model: nn.Module, params, batch, *, train: bool, rng=None) -> jax.Array:
    rngs = {"dropout": rng} if rng is not None else {}
    return model.apply(
        {"params": params},
        batch["src"],
        batch["src_lengths"],
        batch["tgt_in"],
        train=train,
        rngs=rngs,
    )


def seq2seq_loss(model: nn.Module, *, pad_id: int = 0) -> Callable[..., Any]:
    """The engine's loss: mean cross-entropy per real target token (nats), with dropout from
    `rng`. `model.apply(v, src, src_lengths, tgt_in, train=...)` -> logits [B, T, V], e.g.
    `dl.models.seq2seq.Seq2Seq`. metrics: {"perplexity", "token_accuracy", "tokens"}."""

    def loss_fn(params, extra, batch, rng):
        logits = _logits(model, params, batch, train=True, rng=rng)
        sums = token_sums(logits, batch["tgt_out"], target_mask(batch, pad_id))
        count = jnp.maximum(sums["count"], 1.0)
        loss = sums["loss"] / count
        metrics = {
            "perplexity": jnp.exp(loss),
            "token_accuracy": sums["accuracy"] / count,
            "tokens": sums["count"],
        }
        return loss, (metrics, extra)

    return loss_fn


def seq2seq_eval(model: nn.Module, *, pad_id: int = 0) -> Callable[..., Any]:
    """Jitted `(params, extra, batch) -> token_sums` in evaluation mode (no dropout); with
    `dl.train.step.evaluate`: {"loss": nats per token, "accuracy": token accuracy}."""

    @jax.jit
    def fn(params, extra, batch):
        del extra
        logits = _logits(model, params, batch, train=False)
        return token_sums(logits, batch["tgt_out"], target_mask(batch, pad_id))

    return fn
