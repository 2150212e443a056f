"""Binarized MNIST: grey levels in [0, 1] read as Bernoulli probabilities.

* Dynamic binarization (Salakhutdinov & Murray 2008's sampling; the training data of Burda et
  al. 2016, sec. 5): every training step draws a fresh binary image x_b ~ Bernoulli(x) on the
  device, inside the jitted step. In the engine the key is `fold_in(rng, BINARIZE_STREAM)` of the
  step's rng `fold_in(state.rng, step)` (`with_dynamic_binarization`), so the binary batch at a
  step is a pure function of (seed, step) and resumed runs see the same one.
* Fixed binarization for evaluation: one draw, seeded once (`fixed_binarization`), so every
  model is scored on the same binary test set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

# Folded into the step's key for binarization, so its draws are independent of the model's.
BINARIZE_STREAM = 0x62696E


def dynamic_binarization(x: jax.Array, rng: jax.Array) -> jax.Array:
    """x [*] in [0, 1] -> a {0, 1} sample of Bernoulli(x), same shape and dtype (jittable)."""
    return jax.random.bernoulli(rng, x).astype(x.dtype)


def step_key(seed: int, step: int) -> jax.Array:
    """The binarization key of training step `step` of a run seeded `seed`, as the engine derives
    it (its state rng is the third split of PRNGKey(seed): `dl.train.supervised.init_state`)."""
    state_rng = jax.random.split(jax.random.PRNGKey(seed), 3)[2]
    return jax.random.fold_in(jax.random.fold_in(state_rng, step), BINARIZE_STREAM)


def with_dynamic_binarization(loss_fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps an engine loss `(params, extra, batch, rng) -> ...` so that it sees batch["x"]
    binarized with `fold_in(rng, BINARIZE_STREAM)`."""

    def fn(params, extra, batch, rng):
        key = jax.random.fold_in(rng, BINARIZE_STREAM)
        batch = {**batch, "x": dynamic_binarization(batch["x"], key)}
        return loss_fn(params, extra, batch, rng)

    return fn


def fixed_binarization(x: np.ndarray, seed: int) -> np.ndarray:
    """x [*] in [0, 1] (host) -> float32 {0, 1}: x_b = [u < x], u ~ U[0, 1) from
    `np.random.default_rng(seed)`; the same seed gives the same binary set."""
    u = np.random.default_rng(seed).random(np.shape(x), dtype=np.float32)
    return (u < np.asarray(x, np.float32)).astype(np.float32)
