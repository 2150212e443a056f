"""Divergences between probability vectors given as probabilities (zeros allowed).

`dl.ops.losses.kl_divergence` takes logits, which cannot express the exact zeros that sparsemax
predicts and that sparse gold label proportions have; these take the probabilities themselves.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array


def _kl_to_mean(p: Array, q: Array, axis: int) -> Array:
    """KL(p || m), m = (p + q) / 2, as sum_k p_k (log 2 + log p_k - log(p_k + q_k)), 0 log 0 = 0.

    log(p / m) is written with p + q rather than m: for the smallest float32 subnormal p (1e-45,
    which a normalised sigmoid or softmax can produce) and q = 0, m = p / 2 rounds to 0 and
    log(p / m) would be inf; p + q >= p > 0 cannot underflow.
    """
    support = p > 0
    # Both logs see 1 off the support (the double-where trick): a log(0) there would be -inf in
    # the unselected branch of `where`, and its gradient 0 * inf would turn into NaN.
    p_safe = jnp.where(support, p, 1.0)
    sum_safe = jnp.where(support, p + q, 1.0)
    log_ratio = math.log(2.0) + jnp.log(p_safe) - jnp.log(sum_safe)
    return jnp.sum(jnp.where(support, p * log_ratio, 0.0), axis=axis)


def jensen_shannon(*, p: Array, q: Array, axis: int = -1, base: float | None = None) -> Array:
    """Jensen-Shannon divergence JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2.

    The metric of Martins & Astudillo (2016), Sec. 4.1, for predicted vs gold label proportions.
    Symmetric, 0 iff p = q, and at most log 2 (1 in base 2, reached by disjoint supports). Terms
    with p_k = 0 (resp. q_k = 0) contribute 0 (0 log 0 = 0), so sparse vectors are fine, and
    subnormal probabilities cannot make m underflow to 0 (see `_kl_to_mean`). The value and its gradient are
    finite for any non-negative p, q (at p_k = 0 the gradient omits the p_k log p_k term, whose
    derivative is -inf there).

    Note: scipy.spatial.distance.jensenshannon returns the square root of this (a metric).

    Args:
      p, q: [..., K] non-negative, each summing to 1 along `axis` (not checked or renormalised);
        same shape and floating dtype.
      axis: the category axis.
      base: the logarithm's base; None means natural log (nats), 2 gives bits in [0, 1].

    Returns:
      [...] (the shape without `axis`), dtype of p.
    """
    p, q = jnp.asarray(p), jnp.asarray(q)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    js = 0.5 * (_kl_to_mean(p, q, axis) + _kl_to_mean(q, p, axis))
    return js if base is None else js / math.log(base)


def squared_error(*, p: Array, q: Array, axis: int = -1) -> Array:
    """||p - q||^2 along `axis` (the "squared error" of Martins & Astudillo 2016, Sec. 4.1).

    p, q: [..., K] of one shape and dtype -> [...].
    """
    p, q = jnp.asarray(p), jnp.asarray(q)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    return jnp.sum(jnp.square(p - q), axis=axis)
