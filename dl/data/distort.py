"""Ciresan et al. (2010)'s digit distortions, fast on a batch: affine (rotation and independent
horizontal/vertical scaling) composed with Simard et al. (2003)'s elastic field, one bilinear
pass per image, as pure `jax` functions of (key, image).

`dl.data.augment.elastic` smooths each field with a separable `conv_general_dilated`; under
`vmap` on CPU that lowers to a slow batched convolution (about 0.9 s for 128 MNIST fields on a
busy 2-core machine). Here the same zero-padded, normalized Gaussian smoothing is two small dense
matrix products, G_y u G_x^T (G banded with the truncated taps), which `vmap` turns into one
batched matmul: equal to `augment.gaussian_smooth` to float rounding, and some 100x faster
there. Sampling is `augment.resample` (bilinear, zero outside).

`with_distortion` wraps an engine loss as `augment.with_augmentation` does: the key is
fold_in(step rng, DISTORT_STREAM), so the distorted batch is a pure function of (seed, step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dl.data.augment import _gaussian_taps, _grid, resample

DISTORT_STREAM = 0x646973


def smoothing_matrix(n: int, sigma: float, *, truncate: float = 4.0) -> np.ndarray:
    """[n, n] float32 M with (M v) = the zero-padded Gaussian smoothing of v divided by that of
    ones (`augment.gaussian_smooth` along one axis)."""
    taps = _gaussian_taps(sigma, truncate, n)
    r = len(taps) // 2
    m = np.zeros((n, n))
    for i in range(n):
        for j in range(max(0, i - r), min(n, i + r + 1)):
            m[i, j] = taps[j - i + r]
    return (m / m.sum(axis=1, keepdims=True)).astype(np.float32)


def smooth(u: jax.Array, sigma: float, *, truncate: float = 4.0) -> jax.Array:
    """u [H, W] smoothed as `augment.gaussian_smooth(u, sigma)`, by two matmuls."""
    h, w = u.shape
    my = jnp.asarray(smoothing_matrix(h, sigma, truncate=truncate))
    mx = jnp.asarray(smoothing_matrix(w, sigma, truncate=truncate))
    return my @ u @ mx.T


def distort(
    image: jax.Array,
    *,
    degrees: jax.Array | float = 0.0,
    scale: tuple[Any, Any] = (1.0, 1.0),
    noise: jax.Array | None = None,
    alpha: float = 0.0,
    sigma: float = 6.0,
) -> jax.Array:
    """One deterministic distortion; image [H, W, C] -> [H, W, C].

    out[p] = image[c + R(degrees) diag(1 / scale) (p - c) + alpha smooth(noise)[p]], bilinear,
    c the centre. The rotation is counter-clockwise as displayed (`augment.rotation_coords`);
    scale (sy, sx) > 1 enlarges the digit along rows / columns.

    Args:
      noise: [2, H, W] U[-1, 1] numbers for the elastic field (None or alpha = 0: no field).
    """
    h, w = image.shape[:2]
    theta = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    g = _grid(h, w)
    y, x = (g[0] - cy) / scale[0], (g[1] - cx) / scale[1]
    coords = jnp.stack([cos * y + sin * x + cy, cos * x - sin * y + cx])
    if alpha and noise is not None:
        coords = coords + alpha * jnp.stack([smooth(noise[0], sigma), smooth(noise[1], sigma)])
    return resample(image, coords)


def random_distort(
    key: jax.Array,
    image: jax.Array,
    *,
    max_degrees: float = 0.0,
    max_scale: float = 0.0,
    alpha: float = 0.0,
    sigma: float = 6.0,
) -> jax.Array:
    """`distort` with degrees U[-max_degrees, max_degrees], each scale 1 + U[-max_scale,
    max_scale] (independently for rows and columns) and a fresh elastic field; [H, W, C]."""
    h, w = image.shape[:2]
    u = jax.random.uniform(key, (3 + 2 * h * w,), jnp.float32, -1.0, 1.0)
    return distort(
        image,
        degrees=max_degrees * u[0],
        scale=(1.0 + max_scale * u[1], 1.0 + max_scale * u[2]),
        noise=u[3:].reshape(2, h, w),
        alpha=alpha,
        sigma=sigma,
    )


def distort_batch(x: jax.Array, key: jax.Array, **kwargs) -> jax.Array:
    """`random_distort` of every image of x [B, H, W, C] with keys split(key, B)."""
    if x.ndim != 4:
        raise ValueError(f"distort_batch expects [B, H, W, C], got shape {x.shape}")
    keys = jax.random.split(key, x.shape[0])
    return jax.vmap(lambda k, im: random_distort(k, im, **kwargs))(keys, x)


def with_distortion(loss_fn: Callable[..., Any], **kwargs) -> Callable[..., Any]:
    """An engine loss `(params, extra, batch, rng) -> ...` that sees batch["x"] distorted by
    `distort_batch(x, fold_in(rng, DISTORT_STREAM), **kwargs)`; fresh at each step, and a pure
    function of (seed, step) since the engine's rng is fold_in(state.rng, step)."""

    def fn(params, extra, batch, rng):
        key = jax.random.fold_in(rng, DISTORT_STREAM)
        return loss_fn(params, extra, {**batch, "x": distort_batch(batch["x"], key, **kwargs)}, rng)

    return fn
