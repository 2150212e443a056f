"""Importance-sampled estimates of log p(x) for latent-variable models (Burda, Grosse &
Salakhutdinov 2016, sec. 5: "the log-likelihood ... estimated using k = 5000 importance
samples"; the same estimator as Rezende et al. 2014, appendix E).

    log p(x) ~= log (1/K) sum_{i=1..K} p(x, z_i) / q(z_i | x),   z_i ~ q(z | x)

which is the IWAE bound L_K: it underestimates log p(x) in expectation and converges to it as
K grows, and it is exact for every K when q is the true posterior (every weight equals p(x)).

Memory stays bounded for large K: the K samples are drawn in `K / chunk` chunks under
`lax.scan`, and only a running logsumexp [B] is carried, so peak memory is that of `chunk`
decoder passes whatever K is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dl.ops.densities import diag_gaussian_log_density, standard_normal_log_density


def importance_log_likelihood(
    rng: jax.Array,
    x: jax.Array,
    *,
    encode: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    log_px_given_z: Callable[[jax.Array, jax.Array], jax.Array],
    num_samples: int = 5000,
    chunk: int = 500,
    log_prior: Callable[[jax.Array], jax.Array] = standard_normal_log_density,
) -> jax.Array:
    """The K-sample importance estimate of log p(x) for every row of x.

    Args:
      rng: PRNG key; chunk c draws its eps with `fold_in(rng, c)`.
      x: [B, D].
      encode: x -> (mean, logvar) [B, L] of the diagonal-Gaussian proposal q(z|x).
      log_px_given_z: (x [B, D], z [c, B, L]) -> [c, B].
      num_samples: K; a multiple of `chunk`.
      chunk: samples drawn per scan step (bounds memory).
      log_prior: z [c, B, L] -> [c, B]; N(0, I) by default.
    Returns:
      [B] estimates in nats.
    """
    if num_samples < 1 or chunk < 1 or num_samples % chunk:
        raise ValueError(
            f"num_samples ({num_samples}) must be a positive multiple of chunk ({chunk})"
        )
    mean, logvar = encode(x)

    def body(acc, c):
        eps = jax.random.normal(jax.random.fold_in(rng, c), (chunk, *mean.shape), mean.dtype)
        z = mean + jnp.exp(0.5 * logvar) * eps
        log_q = diag_gaussian_log_density(x=z, mean=mean, logvar=logvar)
        log_w = log_px_given_z(x, z) + log_prior(z) - log_q
        return jnp.logaddexp(acc, jax.nn.logsumexp(log_w, axis=0)), None

    init = jnp.full(mean.shape[:-1], -jnp.inf, mean.dtype)
    total, _ = lax.scan(body, init, jnp.arange(num_samples // chunk))
    return total - math.log(num_samples)


def dataset_log_likelihood(
    rng: jax.Array,
    x,
    *,
    params: Any,
    model_fns: Callable[[Any], tuple[Callable, Callable]],
    num_samples: int = 5000,
    chunk: int = 500,
    batch_size: int = 100,
) -> np.ndarray:
    """Per-example estimates [n] over a host array x [n, D], `batch_size` rows per call of one
    jitted function (the last batch is padded and trimmed); batch b uses `fold_in(rng, b)`.

    model_fns: params -> (encode, log_px_given_z) as `importance_log_likelihood` takes them
      (e.g. `functools.partial(dl.objectives.vae.model_fns, model)`); the parameters are an
      argument of the jitted function, not constants baked into it.
    """

    @jax.jit
    def fn(p, b, xb):
        encode, log_px_given_z = model_fns(p)
        return importance_log_likelihood(
            jax.random.fold_in(rng, b),
            xb,
            encode=encode,
            log_px_given_z=log_px_given_z,
            num_samples=num_samples,
            chunk=chunk,
        )

    x = np.asarray(x)
    out = []
    for b, start in enumerate(range(0, len(x), batch_size)):
        xb = x[start : start + batch_size]
        n = len(xb)
        if n < batch_size:  # one shape for every call: pad with the first row, then trim
            xb = np.concatenate([xb, np.repeat(xb[:1], batch_size - n, axis=0)])
        out.append(np.asarray(fn(params, b, xb))[:n])
    return np.concatenate(out)
