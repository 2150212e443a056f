"""Log-densities of the distributions that latent-variable models are built from, summed over
the last (event) axis so that a [*batch, D] argument gives a [*batch] log-density.

* `bernoulli_log_likelihood`: log Bernoulli(x | sigmoid(logits)) = x l - softplus(l), the
  stable form of x log s + (1 - x) log(1 - s) (finite for any logit, including +-1e4).
* `diag_gaussian_log_density`: log N(x | mean, diag(exp(logvar))).
* `standard_normal_log_density`: log N(x | 0, I).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array

LOG_2PI = math.log(2.0 * math.pi)


def bernoulli_log_likelihood(*, logits: Array, x: Array) -> Array:
    """sum_d [x_d l_d - softplus(l_d)]. logits, x: [*batch, D] (x in [0, 1]; binary for a pmf,
    fractional values give the usual cross-entropy). Returns [*batch]."""
    x = x.astype(logits.dtype)
    return jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)


def diag_gaussian_log_density(*, x: Array, mean: Array, logvar: Array) -> Array:
    """sum_d -1/2 [log 2 pi + v_d + (x_d - m_d)^2 exp(-v_d)]. x, mean, logvar broadcast to
    [*batch, D]. Returns [*batch]."""
    per_dim = LOG_2PI + logvar + jnp.square(x - mean) * jnp.exp(-logvar)
    return -0.5 * jnp.sum(per_dim, axis=-1)


def standard_normal_log_density(x: Array) -> Array:
    """sum_d -1/2 [log 2 pi + x_d^2]. x: [*batch, D]. Returns [*batch]."""
    return -0.5 * jnp.sum(LOG_2PI + jnp.square(x), axis=-1)
