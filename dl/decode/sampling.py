"""Greedy and temperature (ancestral) sampling from any step function

    step_fn(params, tokens [B], state) -> (logits [B, V], state)

e.g. `dl.models.language_model.step_fn(model)`. The prompt is fed first (its last token is the
input of the first generated step); generation is one `lax.scan`, so it jits and vmaps.
`greedy_decode` is greedy decoding for sequence-to-sequence models: it stops each row at EOS
and returns lengths and log-probabilities (beam search is in `dl.decode.beam`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

StepFn = Callable[[Any, jax.Array, Any], tuple[jax.Array, Any]]


def next_token(key: jax.Array, logits: jax.Array, temperature) -> jax.Array:
    """[B, V] logits -> [B] int32 tokens: argmax where temperature is 0, else a draw from
    softmax(logits / temperature). temperature: a scalar or [B] (one per row, traced)."""
    t = jnp.broadcast_to(jnp.asarray(temperature, logits.dtype), logits.shape[:1])
    greedy = jnp.argmax(logits, axis=-1)
    safe = jnp.where(t > 0, t, jnp.ones((), t.dtype))[:, None]
    drawn = jax.random.categorical(key, logits / safe, axis=-1)
    return jnp.where(t > 0, drawn, greedy).astype(jnp.int32)


def sample(
    step_fn: StepFn,
    params: Any,
    prompt: jax.Array,
    state: Any,
    key: jax.Array,
    *,
    num_steps: int,
    temperature: float | jax.Array = 1.0,
) -> jax.Array:
    """Continues each row of ``prompt`` [B, P] (P >= 1) by ``num_steps`` tokens.

    Runs `step_fn` over prompt[:, :-1] to condition ``state``, then generates: step t feeds the
    previous token and picks the next with `next_token` (key ``fold_in(key, t)``).
    temperature: 0 greedy (argmax), 1 the model's distribution, < 1 sharper; a scalar or one
    per row [B] (so greedy and sampled rows share one compiled call). Returns [B, num_steps]
    int32, without the prompt.
    """
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be [B, P] with P >= 1, got shape {prompt.shape}")
    if isinstance(temperature, int | float) and temperature < 0:  # arrays are not checked
        raise ValueError(f"temperature must be >= 0, got {temperature}")

    def feed(state, tokens):
        _, state = step_fn(params, tokens, state)
        return state, None

    state, _ = lax.scan(feed, state, jnp.moveaxis(prompt[:, :-1], 1, 0))

    def gen(carry, t):
        tokens, state = carry
        logits, state = step_fn(params, tokens, state)
        new = next_token(jax.random.fold_in(key, t), logits, temperature)
        return (new, state), new

    _, out = lax.scan(gen, (prompt[:, -1], state), jnp.arange(num_steps))
    return jnp.moveaxis(out, 0, 1)


def greedy_decode(
    step_fn: StepFn,
    params: Any,
    state: Any,
    start_tokens: jax.Array,
    *,
    eos: int,
    max_len: int,
    pad: int = 0,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Greedy decoding that stops at EOS: (tokens [B, max_len] int32 with `pad` after each
    row's EOS, lengths [B] (EOS included; max_len if none), log P(tokens) [B]).

    Step t feeds the previous token (``start_tokens`` [B], e.g. BOS, first) and takes the
    argmax; a row that has emitted EOS keeps stepping (one `lax.scan`, jittable) but its
    outputs are `pad` and add nothing to its log-probability.
    """
    start_tokens = jnp.asarray(start_tokens, jnp.int32)

    def body(carry, _):
        tokens, state, finished, logp = carry
        logits, state = step_fn(params, tokens, state)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        new = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
        gain = jnp.take_along_axis(log_probs, new[:, None], axis=-1)[:, 0]
        logp = logp + jnp.where(finished, jnp.zeros((), logp.dtype), gain)
        out = jnp.where(finished, jnp.asarray(pad, jnp.int32), new)
        return (new, state, finished | (new == eos), logp), out

    b = start_tokens.shape[0]
    init = (start_tokens, state, jnp.zeros((b,), bool), jnp.zeros((b,), jnp.float32))
    (_, _, _, logp), out = lax.scan(body, init, None, length=max_len)
    out = jnp.moveaxis(out, 0, 1)
    is_eos = out == eos
    lengths = jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1) + 1, max_len)
    return out, lengths.astype(jnp.int32), logp
