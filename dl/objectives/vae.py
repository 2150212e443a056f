"""Variational bounds on log p(x) for the VAE of `dl.models.vae`, as pure objectives.

With q(z|x) the encoder, p(z) = N(0, I) and p(x|z) the decoder, the log importance weight of a
sample z ~ q(z|x) is

    log w(x, z) = log p(x|z) + log p(z) - log q(z|x).

* ELBO (Kingma & Welling 2014, eq. 3 and 10): L_1 = E_q[log w] = E_q[log p(x|z)] - KL(q || p).
  `kl="analytic"` uses the closed-form Gaussian KL (`dl.ops.losses.gaussian_kl`, K&W appendix
  B) and averages log p(x|z) over the k samples; `kl="mc"` averages log w itself (K&W's generic
  estimator, eq. 6). Both are unbiased for L_1.
* IWAE bound (Burda, Grosse & Salakhutdinov 2016, eq. 8):
      L_k = E[log (1/k) sum_i w_i],   z_1..z_k ~ q(z|x) independently,
  computed as logsumexp(log w) - log k, stable for any weight range. L_1 is the ELBO and
  L_1 <= L_k <= L_{k+1} <= log p(x) (their Theorem 1).

Objectives have the shape `(params, batch, rng) -> (loss, metrics)` with loss = -bound averaged
over the valid rows of `batch` ({"x": [B, D], "mask": [B]}); `engine_loss` adapts one to the
engine's `(params, extra, batch, rng) -> (loss, (metrics, extra))`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.models.vae import sample_latent
from dl.ops.densities import (
    bernoulli_log_likelihood,
    diag_gaussian_log_density,
    standard_normal_log_density,
)
from dl.ops.losses import gaussian_kl

BOUNDS = ("elbo", "iwae")
KL_ESTIMATORS = ("analytic", "mc")


def log_mean_exp(log_w: jax.Array, axis: int = 0) -> jax.Array:
    """log (1/k) sum_i exp(log_w_i) along `axis` (k = its length), via logsumexp."""
    return jax.nn.logsumexp(log_w, axis=axis) - math.log(log_w.shape[axis])


def model_fns(model: nn.Module, params: Any) -> tuple[Callable, Callable]:
    """(encode, log_px_given_z) of a `dl.models.vae.VAE` with `params`:
    encode(x [B, D]) -> (mean, logvar) [B, L];
    log_px_given_z(x [B, D], z [k, B, L]) -> [k, B] (Bernoulli or Gaussian, as the model)."""
    variables = {"params": params}

    def encode(x):
        return model.apply(variables, x, method="encode")

    def log_px_given_z(x, z):
        out = model.apply(variables, z, method="decode")
        if model.decoder == "bernoulli":
            return bernoulli_log_likelihood(logits=out, x=x)
        mean, logvar = out
        return diag_gaussian_log_density(x=x, mean=mean, logvar=logvar)

    return encode, log_px_given_z


def log_weights(
    encode: Callable, log_px_given_z: Callable, x: jax.Array, rng: jax.Array, k: int
) -> dict[str, jax.Array]:
    """k reparameterized samples per row of x [B, D] and their log importance weights.

    Returns {"log_w", "log_px_z": [k, B]; "mean", "logvar": [B, L]; "z": [k, B, L]}.
    """
    mean, logvar = encode(x)
    z, _ = sample_latent(rng, mean, logvar, k)
    log_px_z = log_px_given_z(x, z)
    log_q = diag_gaussian_log_density(x=z, mean=mean, logvar=logvar)
    log_w = log_px_z + standard_normal_log_density(z) - log_q
    return {"log_w": log_w, "log_px_z": log_px_z, "mean": mean, "logvar": logvar, "z": z}


def elbo_terms(
    parts: dict[str, jax.Array], *, kl: str = "analytic"
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(elbo, reconstruction E log p(x|z), kl) [B] from `log_weights`' output (module docstring)."""
    recon = jnp.mean(parts["log_px_z"], axis=0)
    if kl == "analytic":
        kl_value = gaussian_kl(mean=parts["mean"], logvar=parts["logvar"], reduce=False)
    elif kl == "mc":
        kl_value = recon - jnp.mean(parts["log_w"], axis=0)
    else:
        raise ValueError(f"kl must be one of {KL_ESTIMATORS}, got {kl!r}")
    return recon - kl_value, recon, kl_value


def bound(
    encode: Callable,
    log_px_given_z: Callable,
    x: jax.Array,
    rng: jax.Array,
    *,
    kind: str = "elbo",
    k: int = 1,
    kl: str = "analytic",
) -> dict[str, jax.Array]:
    """The per-example bound [B] ("bound") with "recon" and "kl" [B] (the ELBO's terms; for the
    IWAE bound they describe the same samples). kind: "elbo" (k samples averaged) or "iwae"."""
    if kind not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {kind!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    parts = log_weights(encode, log_px_given_z, x, rng, k)
    elbo, recon, kl_value = elbo_terms(parts, kl=kl)
    value = elbo if kind == "elbo" else log_mean_exp(parts["log_w"], axis=0)
    return {"bound": value, "recon": recon, "kl": kl_value}


def _masked_mean(v: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(v * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def vae_objective(
    model: nn.Module, *, kind: str = "elbo", k: int = 1, kl: str = "analytic"
) -> Callable[..., tuple[jax.Array, dict[str, jax.Array]]]:
    """`(params, batch, rng) -> (loss, metrics)`: loss = -(masked mean bound), in nats per
    example; metrics {"bound", "recon", "kl"} are masked means. VAE training is kind="elbo",
    k=1; IWAE training is kind="iwae" with k samples (Burda et al. train with k = 5 and 50)."""

    def fn(params, batch, rng):
        encode, log_px_given_z = model_fns(model, params)
        out = bound(encode, log_px_given_z, batch["x"], rng, kind=kind, k=k, kl=kl)
        mask = batch.get("mask", jnp.ones(batch["x"].shape[:1], batch["x"].dtype))
        metrics = {name: _masked_mean(v, mask) for name, v in out.items()}
        return -metrics["bound"], metrics

    return fn


def engine_loss(objective: Callable) -> Callable[..., Any]:
    """An objective `(params, batch, rng) -> (loss, metrics)` as the engine's loss
    `(params, extra, batch, rng) -> (loss, (metrics, extra))` (extra passes through)."""

    def fn(params, extra, batch, rng):
        loss, metrics = objective(params, batch, rng)
        return loss, (metrics, extra)

    return fn


def vae_eval(model: nn.Module, *, ks: tuple[int, ...] = (1,), seed: int = 0) -> Callable:
    """Jitted `(params, extra, batch) -> {"elbo": sum, "iwae_<k>": sum per k, "count": n}` over
    the valid rows, for `dl.train.step.evaluate`. The noise is fixed (PRNGKey(seed)), so the
    same parameters always score the same; each batch's rows draw independent samples."""
    key = jax.random.PRNGKey(seed)

    @jax.jit
    def fn(params, extra, batch):
        del extra
        encode, log_px_given_z = model_fns(model, params)
        mask = batch["mask"]
        x = batch["x"]
        out = {"elbo": jnp.sum(bound(encode, log_px_given_z, x, key)["bound"] * mask)}
        for k in ks:
            b = bound(encode, log_px_given_z, x, jax.random.fold_in(key, k), kind="iwae", k=k)
            out[f"iwae_{k}"] = jnp.sum(b["bound"] * mask)
        out["count"] = jnp.sum(mask)
        return out

    return fn
