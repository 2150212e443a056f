"""Divergences between probability vectors given as probabilities (zeros allowed).

`dl.ops.losses.kl_divergence` takes logits, which cannot express the exact zeros that sparsemax
predicts and that sparse gold label proportions have; these take the probabilities themselves.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array


def _kl_to(p: Array, m: Array, axis: int) -> Array:
    """sum_k p_k log(p_k / m_k) with 0 log 0 = 0, for m > 0 wherever p > 0."""
    support = p > 0
    # Both logs see 1 off the support (the double-where trick): a log(0) there would be -inf in
    # the unselected branch of `where`, and its gradient 0 * inf would turn into NaN.
    p_safe = jnp.where(support, p, 1.0)
    m_safe = jnp.where(support, m, 1.0)
    terms = jnp.where(support, p * (jnp.log(p_safe) - jnp.log(m_safe)), 0.0)
    return jnp.sum(terms, axis=axis)


def jensen_shannon(*, p: Array, q: Array, axis: int = -1, base: float | None = None) -> Array:
    """Jensen-Shannon divergence JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2.

    The metric of Martins & Astudillo (2016), Sec. 4.1, for predicted vs gold label proportions.
    Symmetric, 0 iff p = q, and at most log 2 (1 in base 2, reached by disjoint supports). Terms
    with p_k = 0 (resp. q_k = 0) contribute 0 (0 log 0 = 0), so sparse vectors are fine; where
    p_k > 0, m_k >= p_k / 2 > 0, so no division by zero can occur. The value and its gradient are
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
    m = 0.5 * (p + q)
    js = 0.5 * (_kl_to(p, m, axis) + _kl_to(q, m, axis))
    return js if base is None else js / math.log(base)


def squared_error(*, p: Array, q: Array, axis: int = -1) -> Array:
    """||p - q||^2 along `axis` (the "squared error" of Martins & Astudillo 2016, Sec. 4.1).

    p, q: [..., K] of one shape and dtype -> [...].
    """
    p, q = jnp.asarray(p), jnp.asarray(q)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    return jnp.sum(jnp.square(p - q), axis=axis)
