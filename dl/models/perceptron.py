"""The perceptron (Rosenblatt 1958) as pure functions of arrays, for `lax.scan` and `vmap`.

A linear threshold unit ``sign(<w, x>)`` with labels ``y`` in {-1, +1}, trained by the
error-correction rule: on a mistake, ``y <w, x> <= 0``, set ``w <- w + y x``. A zero score counts
as a mistake, so the first example seen from ``w = 0`` is always one; this is the convention of
Novikoff's (1962) theorem: if ``||x_i|| <= R`` and a unit ``w*`` has ``y_i <w*, x_i> >= gamma > 0``
for all i, cycling through the data makes at most ``(R / gamma)^2`` mistakes in total.

There is no separate bias: separators through the origin, or a bias folded into ``x`` as a
constant feature (`with_bias_feature`), which raises R accordingly. Learning rate 1 and
``w_0 = 0``: for the perceptron on ``w_0 = 0`` any positive rate only rescales ``w`` and leaves
every prediction and mistake unchanged.

Everything is traceable: `epoch` is a `lax.scan` over examples and `train` a `lax.while_loop`
over epochs, so ``jax.vmap(train)`` runs many instances at once (instances that finish early
keep their state while the others go on).
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

Array = jax.Array


def with_bias_feature(x: Array) -> Array:
    """x: [n, d] -> [n, d + 1] with a constant 1 appended, so ``<w, x>`` gains a bias ``w[-1]``."""
    return jnp.concatenate([x, jnp.ones((*x.shape[:-1], 1), x.dtype)], axis=-1)


def scores(w: Array, x: Array) -> Array:
    """w: [d]; x: [n, d] -> [n] scores ``<w, x>``; the prediction is +1 where the score > 0."""
    _check_data(w, x)
    return x @ w


def _check_data(w: Array, x: Array, y: Array | None = None) -> None:
    """w: [d]; x: [n, d]; y: [n] (static shapes: a trace-time check under jit and vmap)."""
    chex.assert_rank(x, 2, custom_message="perceptron x: [n, d]")
    chex.assert_shape(w, (x.shape[1],))
    if y is not None:
        chex.assert_shape(y, (x.shape[0],))


def update(w: Array, example: tuple[Array, Array]) -> tuple[Array, Array]:
    """One step of Rosenblatt's rule; ``lax.scan``-shaped (carry ``w``, one example per step).

    Args:
      w: [d] weights.
      example: (x [d], y [] in {-1, +1}, any numeric dtype; cast to ``x.dtype``).

    Returns:
      (``w + y x`` if ``y <w, x> <= 0`` else ``w``, mistake: [] bool).
    """
    x, y = example
    y = jnp.asarray(y).astype(x.dtype)
    mistake = y * jnp.dot(w, x) <= 0.0
    return jnp.where(mistake, w + y * x, w), mistake


def epoch(w: Array, x: Array, y: Array) -> tuple[Array, Array]:
    """One pass over the data in order. w: [d]; x: [n, d]; y: [n] in {-1, +1}.

    Returns (w after the pass, number of mistakes in the pass: [] int32).
    """
    _check_data(w, x, y)
    w, mistakes = jax.lax.scan(update, w, (x, y))
    return w, jnp.sum(mistakes, dtype=jnp.int32)


class Result(NamedTuple):
    """What `train` returns (each field gains a leading axis under `vmap`).

    Attributes:
      w: [d] final weights.
      mistakes: [] int32, total updates over all epochs (the quantity Novikoff bounds).
      epochs: [] int32, passes made, including the final mistake-free one if converged.
      converged: [] bool, whether the last pass made no mistake (so ``w`` separates the data).
    """

    w: Array
    mistakes: Array
    epochs: Array
    converged: Array


def train(x: Array, y: Array, *, max_epochs: int) -> Result:
    """Cycles through (x [n, d], y [n] in {-1, +1}) from ``w = 0`` until a pass makes no mistake
    or ``max_epochs`` passes are done. On separable data the loop ends after at most
    ``(R / gamma)^2 + 1`` passes, since every pass but the last makes a mistake."""

    def cond(carry):
        _, _, epochs, last = carry
        return (last > 0) & (epochs < max_epochs)

    def body(carry):
        w, total, epochs, _ = carry
        w, mistakes = epoch(w, x, y)
        return w, total + mistakes, epochs + 1, mistakes

    zero = jnp.zeros((), jnp.int32)
    # `last` starts at 1 so that the first pass always runs.
    init = (jnp.zeros(x.shape[-1], x.dtype), zero, zero, jnp.ones((), jnp.int32))
    w, total, epochs, last = jax.lax.while_loop(cond, body, init)
    return Result(w=w, mistakes=total, epochs=epochs, converged=last == 0)


def train_epochs(x: Array, y: Array, *, num_epochs: int) -> tuple[Array, Array]:
    """Exactly ``num_epochs`` passes (for data that may not be separable, e.g. XOR).

    Returns (w after each pass: [num_epochs, d], mistakes in each pass: [num_epochs] int32).
    """

    def body(w, _):
        w, mistakes = epoch(w, x, y)
        return w, (w, mistakes)

    _, (ws, mistakes) = jax.lax.scan(body, jnp.zeros(x.shape[-1], x.dtype), None, length=num_epochs)
    return ws, mistakes
