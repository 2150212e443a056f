"""Language-model objectives: next-token cross-entropy over contiguous streams, with the
recurrent state carried from one truncated-BPTT chunk to the next (Zaremba et al. 2014).

    loss_fn(params, extra, batch, rng) -> (loss, (metrics, new_extra))     (the engine's shape)

`stream_loss` keeps the carry in the engine's `extra` collection: ``extra = {"carry": ...}``,
so `dl.train.step.train_step` threads it from step to step; its gradient is stopped
(`dl.nn.sequence.detach_carry`), which is what makes the backpropagation truncated. A batch is
a `dl.data.text.StreamBatches` chunk plus ``reset`` (1.0 on an epoch's first chunk, where the
rows restart and the old carry is zeroed).

Evaluation scores EVERY token of a stream after the first: `stream_layout` cuts the stream's
``(input, target)`` pairs into ``rows`` contiguous rows (zero-padded at the end, with a mask)
and chunks of ``chunk`` steps; `chunk_nll` scores one chunk and returns the carry for the next.
With ``rows=1`` each token is conditioned on the whole stream before it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dl.nn.sequence import detach_carry
from dl.ops.losses import cross_entropy


def token_nll(logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None):
    """(sum of -log softmax(logits)[target] over unmasked tokens, their count).

    logits: [*batch, time, V]; targets: [*batch, time] int; mask: [*batch, time] (1 = scored).
    """
    nll = cross_entropy(logits=logits, targets=targets, reduce=False)
    if mask is None:
        return jnp.sum(nll), jnp.asarray(nll.size, nll.dtype)
    mask = mask.astype(nll.dtype)
    return jnp.sum(nll * mask), jnp.sum(mask)


def stream_loss(model: nn.Module) -> Callable[..., Any]:
    """The engine's loss for truncated BPTT over `StreamBatches` chunks.

    `model.apply(variables, tokens, initial_carry, train=True)` -> (logits, carries), e.g.
    `dl.models.language_model.RNNLM`. batch: {"inputs": [B, T], "targets": [B, T], "reset":
    scalar}. extra: {"carry": the carry after the previous chunk}. loss: mean token NLL (nats);
    metrics: {"perplexity": exp(loss)}.
    """

    def loss_fn(params, extra, batch, rng):
        keep = 1.0 - jnp.asarray(batch["reset"], jnp.float32)
        carry = jax.tree.map(lambda c: c * keep.astype(c.dtype), detach_carry(extra["carry"]))
        logits, carry = model.apply(
            {"params": params}, batch["inputs"], carry, train=True, rngs={"dropout": rng}
        )
        total, count = token_nll(logits, batch["targets"])
        loss = total / count
        return loss, ({"perplexity": jnp.exp(loss)}, {"carry": detach_carry(carry)})

    return loss_fn


def stream_layout(tokens: np.ndarray, *, rows: int, chunk: int) -> dict[str, np.ndarray]:
    """The ``len(tokens) - 1`` (input, target) pairs of a stream as [C, rows, chunk] arrays.

    Row r holds pairs ``r * n .. (r + 1) * n - 1`` (n = ceil(pairs / rows)) in order, so the
    carry after chunk c is the right start of chunk c + 1; the tail is padded with mask 0.
    Returns {"inputs", "targets": int32, "mask": float32}, each [C, rows, chunk].
    """
    tokens = np.asarray(tokens, np.int32)
    pairs = len(tokens) - 1
    if pairs < 1 or rows < 1 or chunk < 1:
        raise ValueError(
            f"need >= 2 tokens, rows >= 1, chunk >= 1; got {len(tokens)}, {rows}, {chunk}"
        )
    n = -(-pairs // rows)
    n = -(-n // chunk) * chunk
    out = {}
    for name, part in (("inputs", tokens[:-1]), ("targets", tokens[1:])):
        full = np.zeros(rows * n, np.int32)
        full[:pairs] = part
        out[name] = full.reshape(rows, n // chunk, chunk).transpose(1, 0, 2)
    mask = np.zeros(rows * n, np.float32)
    mask[:pairs] = 1.0
    out["mask"] = mask.reshape(rows, n // chunk, chunk).transpose(1, 0, 2)
    return out


def chunk_nll(model: nn.Module) -> Callable[..., Any]:
    """`(params, carry, inputs, targets, mask) -> ((nll sum, count), new carry)` for one chunk in
    evaluation mode (no dropout); jit or vmap it at the call site."""

    def fn(params, carry, inputs, targets, mask):
        logits, carry = model.apply({"params": params}, inputs, carry, train=False)
        return token_nll(logits, targets, mask), carry

    return fn


@functools.lru_cache(maxsize=32)
def _jitted_chunk_nll(model: nn.Module):
    return jax.jit(chunk_nll(model))  # one compile per model and chunk shape, not per call


def stream_nll(
    model: nn.Module, params: Any, tokens: np.ndarray, carry: Any, *, rows: int, chunk: int
) -> tuple[float, int]:
    """(total NLL in nats, number of scored tokens) of ``tokens[1:]`` given the tokens before
    them. carry: the zero carry for a batch of ``rows`` (e.g. `zero_carry(model, (rows,))`)."""
    layout = stream_layout(tokens, rows=rows, chunk=chunk)
    fn = _jitted_chunk_nll(model)
    total, count = 0.0, 0.0
    for c in range(layout["inputs"].shape[0]):
        (s, n), carry = fn(
            params, carry, layout["inputs"][c], layout["targets"][c], layout["mask"][c]
        )
        total, count = total + float(s), count + float(n)
    return total, round(count)
