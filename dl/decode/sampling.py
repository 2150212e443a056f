"""Greedy and temperature (ancestral) sampling from any step function

    step_fn(params, tokens [B], state) -> (logits [B, V], state)

e.g. `dl.models.language_model.step_fn(model)`. The prompt is fed first (its last token is the
input of the first generated step); generation is one `lax.scan`, so it jits and vmaps.
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
