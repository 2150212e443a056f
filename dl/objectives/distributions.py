"""Small distributions for the gradient estimators: a sampler, a log-prob and, where one exists,
a reparameterization, in one NamedTuple (no distrax/tfp dependency).

Every function acts on ONE draw; the estimators `vmap` over samples. `params` is a dict pytree
whose leaves share the event shape; `log_prob` sums over it and returns a scalar.

    gaussian():    params {"mean": [...], "std": [...]} (std > 0); x = mean + std * eps
    bernoulli():   params {"logits": [...]}; x in {0., 1.} (float, same shape as logits)
    categorical(): params {"logits": [..., C]}; x int32 of shape logits.shape[:-1]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Params = Any  # a dict pytree of arrays


class Distribution(NamedTuple):
    """sample(key, params) -> x; log_prob(params, x) -> scalar (summed over the event).

    noise(key, params) -> eps and reparameterize(params, eps) -> x (with x differentiable in
    params) are None for distributions without a pathwise estimator (the discrete ones).
    """

    sample: Callable[[jax.Array, Params], jax.Array]
    log_prob: Callable[[Params, jax.Array], jax.Array]
    noise: Callable[[jax.Array, Params], jax.Array] | None = None
    reparameterize: Callable[[Params, jax.Array], jax.Array] | None = None


_LOG_SQRT_2PI = 0.5 * jnp.log(2.0 * jnp.pi)


def _gaussian_noise(key, params):
    mean = params["mean"]
    return jax.random.normal(key, jnp.shape(mean), jnp.result_type(mean))


def _gaussian_reparameterize(params, eps):
    return params["mean"] + params["std"] * eps


def _gaussian_sample(key, params):
    return _gaussian_reparameterize(params, _gaussian_noise(key, params))


def _gaussian_log_prob(params, x):
    z = (x - params["mean"]) / params["std"]
    return jnp.sum(-0.5 * z**2 - jnp.log(params["std"]) - _LOG_SQRT_2PI)


def gaussian() -> Distribution:
    """Diagonal Gaussian N(mean, diag(std^2)); reparameterizable (x = mean + std * eps)."""
    return Distribution(
        _gaussian_sample, _gaussian_log_prob, _gaussian_noise, _gaussian_reparameterize
    )


def _bernoulli_sample(key, params):
    logits = params["logits"]
    u = jax.random.uniform(key, jnp.shape(logits), jnp.result_type(logits))
    return (u < jax.nn.sigmoid(logits)).astype(jnp.result_type(logits))


def _bernoulli_log_prob(params, x):
    logits = params["logits"]
    return jnp.sum(x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits))


def bernoulli() -> Distribution:
    """Independent Bernoullis with P(x = 1) = sigmoid(logits)."""
    return Distribution(_bernoulli_sample, _bernoulli_log_prob)


def _categorical_sample(key, params):
    return jax.random.categorical(key, params["logits"], axis=-1)


def _categorical_log_prob(params, x):
    logp = jax.nn.log_softmax(params["logits"], axis=-1)
    return jnp.sum(jnp.take_along_axis(logp, x[..., None], axis=-1))


def categorical() -> Distribution:
    """Independent categoricals over the last axis of logits, P(x = c) = softmax(logits)_c."""
    return Distribution(_categorical_sample, _categorical_log_prob)
