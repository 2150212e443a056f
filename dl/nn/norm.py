"""Batch normalization and channel dropout for conv nets, NHWC.

* `BatchNorm` (Ioffe & Szegedy 2015): `torch.nn.BatchNorm2d` in channels-last, statistics over
  every axis but the last (batch and space for [N, H, W, C]; batch for [N, C]).
* `SpatialDropout` (Tompson et al. 2015, "SpatialDropout"; `torch.nn.Dropout2d`): drops whole
  feature maps, since neighbouring pixels of one map are too correlated for per-pixel dropout
  to regularize.

Both take `train` as a keyword, as `dl.nn.mlp.MLP` does, so that `dl.objectives.classification`
runs them unchanged: `train=True` normalizes with the batch statistics and, when applied with
`mutable=["batch_stats"]`, updates the running averages, which live in the `batch_stats`
collection and hence in `TrainState.extra` (`dl.train.supervised.init_state`); the loss returns
them as its `new_extra` and `train_step` stores them. `train=False` uses the running averages.

Momentum conventions. Flax (and this module) decays the running average by `momentum`,

    running <- momentum * running + (1 - momentum) * batch,

PyTorch weights the new batch by its `momentum`, so `momentum = 1 - torch_momentum` (PyTorch's
default 0.1 is our default 0.9; flax's `nn.BatchNorm` defaults to 0.99). PyTorch's running
variance accumulates the UNBIASED batch variance, var * n / (n - 1), with n the number of values
per channel (N*H*W), while it normalizes with the biased one; `unbiased_running_var=True` (the
default) does the same, so values and running statistics equal `BatchNorm2d`'s. Flax's
`nn.BatchNorm` accumulates the biased variance (`unbiased_running_var=False`); after T steps
from var = 1 on batches of a fixed n the two running variances are related exactly by

    torch_var - (1 - m)^T = n / (n - 1) * (flax_var - momentum^T),   m = 1 - momentum,

and the running means agree.

Data parallelism: under `jit` with the batch sharded over the mesh's `data` axis
(`dl.train.mesh`), `jnp.mean` over the batch axis is already the global-batch mean (XLA inserts
the all-reduce), so 1 and N devices compute the same statistics; there is no `axis_name`
because nothing here runs under `pmap` or `shard_map`.

Speed: in train mode the standardization (x - mean) / sqrt(var + eps) has a hand-written
gradient (`standardize`, a `jax.custom_vjp`), dx = (g - mean(g) - xhat * mean(g * xhat)) / sigma,
two reductions and one elementwise pass. `python -m benchmarks.gan_step` measured the DCGAN
step 62.5 -> 59.3 ms with it (BENCHMARKS.md; the layer alone, in a one-off probe not kept in the
repository, 1.7-4.6x faster). `fused=False` keeps autodiff, which forward mode (`jax.jvp`) needs.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def _statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and biased variance over all but the last axis (two-pass, float32)."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    return mean, jnp.mean(jnp.square(x - mean), axes)  # two-pass: no E[x^2] - E[x]^2 loss


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def standardize(x: jax.Array, epsilon: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """x [..., C] -> (xhat = (x - mean) / sqrt(var + epsilon), mean [C], var [C]), the statistics
    over every axis but the last; reverse-mode gradients in closed form (module docstring)."""
    return _standardize_fwd(x, epsilon)[0]


def _standardize_fwd(x, epsilon):
    mean, var = _statistics(x)
    inv = lax.rsqrt(var + epsilon)
    xhat = (x - mean) * inv
    return (xhat, mean, var), (xhat, inv)


def _standardize_bwd(epsilon, res, cotangents):
    del epsilon
    xhat, inv = res
    g, g_mean, g_var = cotangents
    axes = tuple(range(xhat.ndim - 1))
    n = math.prod(xhat.shape[:-1])
    dx = inv * (g - jnp.mean(g, axes) - xhat * jnp.mean(g * xhat, axes))
    # The statistics' own paths (the running averages; usually zero): d mean / dx = 1 / n and
    # d var / dx = 2 (x - mean) / n = 2 xhat / (inv n).
    dx = dx + (g_mean + g_var * (2.0 / inv) * xhat) / n
    return (dx,)


standardize.defvjp(_standardize_fwd, _standardize_bwd)


class BatchNorm(nn.Module):
    """x: [..., C] -> [..., C], statistics per channel over every other axis.

    Train: y = (x - mean_B) / sqrt(var_B + eps) * scale + bias with the batch's mean and biased
    variance (two-pass, in float32); eval: the running averages instead.

    Attributes:
      momentum: decay of the running averages (flax's convention; 1 - PyTorch's momentum).
      epsilon: added to the variance (PyTorch's and flax's 1e-5).
      use_scale, use_bias: learn the affine scale (init 1) and bias (init 0) per channel.
      unbiased_running_var: accumulate var * n / (n - 1) (PyTorch) rather than var (flax).
      fused: train-mode gradients from `standardize`'s closed form (faster, reverse mode only);
        False: autodiff of the same formulas (needed for `jax.jvp`).
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    unbiased_running_var: bool = True
    fused: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        c = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (c,), jnp.float32)
        xf = x.astype(jnp.float32)
        if train:
            n = math.prod(x.shape[:-1])
            if n < 2:
                raise ValueError(f"batch norm needs more than 1 value per channel, got {x.shape}")
            if self.fused:
                y, mean, var = standardize(xf, self.epsilon)
            else:
                mean, var = _statistics(xf)
                y = (xf - mean) * lax.rsqrt(var + self.epsilon)
            if not self.is_initializing():  # as flax: init leaves the statistics at 0 and 1
                acc = var * (n / (n - 1)) if self.unbiased_running_var else var
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1.0 - m) * mean
                ra_var.value = m * ra_var.value + (1.0 - m) * acc
        else:
            y = (xf - ra_mean.value) * lax.rsqrt(ra_var.value + self.epsilon)
        if self.use_scale:
            y = y * self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        return y.astype(x.dtype)


class SpatialDropout(nn.Module):
    """x: [..., H, W, C] -> [..., H, W, C]; while training, each (example, channel) map is zeroed
    with probability `rate` and the kept ones scaled by 1 / (1 - rate) (inverted dropout), as
    `torch.nn.Dropout2d` in channels-last. Needs a "dropout" rng when `train`; identity otherwise.
    """

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if x.ndim < 3:
            raise ValueError(f"SpatialDropout expects [..., H, W, C], got shape {x.shape}")
        spatial = (x.ndim - 3, x.ndim - 2)  # one draw shared by every pixel of a map
        return nn.Dropout(self.rate, broadcast_dims=spatial, deterministic=not train)(x)
