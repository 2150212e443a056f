"""2-D Gaussian mixtures for mode-collapse studies and the VEEGAN sample-quality protocol.

Mixtures (the ring of Metz et al. 2017, "Unrolled GANs", fig. 2; the ring and the grid of
Srivastava et al. 2017, "VEEGAN", Section 5.1):
- ring: 8 equally weighted isotropic Gaussians with means on a circle of radius 2 at angles
  2 pi k / 8, standard deviation 0.02;
- grid: 25 equally weighted isotropic Gaussians with means on the grid {-4, -2, 0, 2, 4}^2
  (spacing 2), standard deviation 0.02. These values were not checked against the papers'
  text offline (some later papers use 0.05 for the grid); the std is a parameter everywhere.

Protocol (VEEGAN, after Metz et al.): draw 2,500 samples from the trained generator; a sample is
*high quality* when it lies within 3 standard deviations (Euclidean distance <= 3 std) of its
nearest mode mean; a mode is *captured* when at least `min_count` high-quality samples have it
as their nearest mode. VEEGAN reports the number of captured modes and the percentage of
high-quality samples. Their text does not state a `min_count` that we could verify offline; the
default here is 1 (any high-quality sample captures its mode), the literal reading. It is
lenient: a diffuse generator that has learned nothing hits modes by chance (measured in
`experiments/gan_mixtures`: 4.6 of 8 ring modes "captured" at 0.3% high-quality samples), so
that experiment asks for 20 of 2,500 samples (a perfect generator puts 312 on each ring mode and
100 on each grid mode).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

RING_RADIUS = 2.0
GRID_SPACING = 2.0
MIXTURE_STD = 0.02


def ring_means(num_modes: int = 8, radius: float = RING_RADIUS) -> np.ndarray:
    """[num_modes, 2] means on a circle, the first at angle 0."""
    angles = 2 * np.pi * np.arange(num_modes) / num_modes
    return (radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)).astype(np.float32)


def grid_means(side: int = 5, spacing: float = GRID_SPACING) -> np.ndarray:
    """[side^2, 2] means on a square grid centred at 0 ({-4, -2, 0, 2, 4}^2 by default),
    row-major in (x, y)."""
    ticks = spacing * (np.arange(side) - (side - 1) / 2)
    xx, yy = np.meshgrid(ticks, ticks, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)


MIXTURES = {"ring": ring_means, "grid": grid_means}


def mixture_means(name: str) -> np.ndarray:
    if name not in MIXTURES:
        raise ValueError(f"unknown mixture {name!r}; valid: {', '.join(MIXTURES)}")
    return MIXTURES[name]()


def sample_mixture(
    key: jax.Array, means: jax.Array, num: int, std: float = MIXTURE_STD
) -> jax.Array:
    """[num, 2] samples of the equally weighted mixture of N(means[k], std^2 I): a uniform
    component per sample, then Gaussian noise. Traceable (use inside a jitted step)."""
    k_mode, k_noise = jax.random.split(key)
    means = jnp.asarray(means)
    idx = jax.random.randint(k_mode, (num,), 0, means.shape[0])
    noise = jax.random.normal(k_noise, (num, means.shape[1]), means.dtype)
    return means[idx] + std * noise


class ModeScore(NamedTuple):
    """modes: number of captured modes; high_quality: fraction of samples within `threshold`
    std of their nearest mode; counts: [K] high-quality samples per mode."""

    modes: jax.Array
    high_quality: jax.Array
    counts: jax.Array


def score_modes(
    samples: jax.Array,
    means: jax.Array,
    std: float = MIXTURE_STD,
    *,
    threshold: float = 3.0,
    min_count: int = 1,
) -> ModeScore:
    """The VEEGAN protocol (module docstring) for [N, 2] samples and [K, 2] mode means.
    Traceable and `vmap`-able over a leading seed axis of `samples`; non-finite samples count
    as low quality."""
    samples, means = jnp.asarray(samples), jnp.asarray(means)
    d2 = jnp.sum(jnp.square(samples[:, None, :] - means[None, :, :]), axis=-1)  # [N, K]
    nearest = jnp.argmin(d2, axis=1)
    good = jnp.min(d2, axis=1) <= (threshold * std) ** 2  # False for NaN
    counts = jnp.zeros(means.shape[0], jnp.int32).at[nearest].add(good.astype(jnp.int32))
    modes = jnp.sum(counts >= min_count)
    return ModeScore(modes=modes, high_quality=jnp.mean(good.astype(jnp.float32)), counts=counts)
