"""Data augmentation on the device: pure `jax` functions of (key, image), jittable and `vmap`-able.

An image is [H, W, C] (channels last, as `dl.nn`); `augment_batch` maps `augment` over the
leading axis of a batch with one key per example, inside the jitted loss or train step, so that
augmentation costs no host time and shards with the batch. Given the same key every function
returns the same output, eagerly or under `jit`; in the engine the key is
`fold_in(fold_in(PRNGKey(seed), step), AUGMENT_STREAM)` (`with_augmentation`), so the
augmented batch at a step is a pure function of (seed, step) and resumed runs see the same one.

* `random_crop`: pad with zeros and crop at a uniform offset, i.e. a random integer shift
  (Krizhevsky et al. 2012 crop 224 of 256; CIFAR's pad-4-and-crop-32). Exact: no resampling.
* `random_flip`: horizontal mirror with probability p.
* `rotate`: rotation about the centre by bilinear resampling (`resample`).
* `elastic`: Simard, Steinkraus & Platt (2003) elastic distortion: a displacement field of
  per-pixel U[-1, 1] draws, smoothed by a Gaussian of std `sigma` pixels and scaled by `alpha`
  (their MNIST values: sigma = 4, alpha = 34); with affine distortions it is what let a plain
  MLP reach 0.35% MNIST error (Ciresan et al. 2010).

Resampling is `jax.scipy.ndimage.map_coordinates(order=1, mode="constant")`: bilinear, and
outside the image it interpolates towards `cval` (scipy's `mode="grid-constant"`). Rotations and
elastic fields are composed into one set of sampling coordinates, so `augment` interpolates at
most once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.ndimage import map_coordinates

# Folded into the step's key for augmentation, so its draws are independent of dropout's.
AUGMENT_STREAM = 0x617567


def _check(image: jax.Array) -> None:
    if image.ndim != 3:
        raise ValueError(f"expected one [H, W, C] image (vmap for batches), got {image.shape}")


def shift(image: jax.Array, dy: jax.Array | int, dx: jax.Array | int, *, fill=0.0) -> jax.Array:
    """out[i, j] = image[i - dy, j - dx], and `fill` where that is outside the image.

    Args:
      image: [H, W, C].
      dy, dx: integer shifts down and right (may be traced).
    Returns:
      [H, W, C].
    """
    _check(image)
    h, w = image.shape[:2]
    dy, dx = jnp.asarray(dy, jnp.int32), jnp.asarray(dx, jnp.int32)
    rows = jnp.arange(h, dtype=jnp.int32)[:, None, None] - dy
    cols = jnp.arange(w, dtype=jnp.int32)[None, :, None] - dx
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    rolled = jnp.roll(image, (dy, dx), axis=(0, 1))
    return jnp.where(inside, rolled, jnp.asarray(fill, image.dtype))


def random_crop(
    key: jax.Array, image: jax.Array, pad: int, size: tuple[int, int] | None = None
) -> jax.Array:
    """Pads `pad` zeros on every side and crops `size` at a uniformly random offset.

    Args:
      key: PRNG key.
      image: [H, W, C].
      pad: zeros added on each side; with `size=(H, W)` this is a random shift in [-pad, pad]^2.
      size: (h, w) of the crop; defaults to (H, W).
    Returns:
      [h, w, C].
    """
    _check(image)
    h, w = image.shape[:2]
    size = (h, w) if size is None else tuple(size)
    if not (0 < size[0] <= h + 2 * pad and 0 < size[1] <= w + 2 * pad):
        raise ValueError(f"crop {size} does not fit in {(h, w)} padded by {pad}")
    return _crop_at(image, pad, size, jax.random.uniform(key, (2,), jnp.float32))


def _crop_at(image: jax.Array, pad: int, size: tuple[int, int], u: jax.Array) -> jax.Array:
    """The crop of `random_crop` at offsets floor(u * (n + 1)) for u [2] in [0, 1)."""
    h, w, c = image.shape
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    n = jnp.array([h + 2 * pad - size[0], w + 2 * pad - size[1]], jnp.int32)
    offset = jnp.minimum(jnp.floor(u * (n + 1).astype(jnp.float32)).astype(jnp.int32), n)
    return lax.dynamic_slice(padded, (offset[0], offset[1], jnp.int32(0)), (*size, c))


def random_flip(key: jax.Array, image: jax.Array, p: float = 0.5) -> jax.Array:
    """image[:, ::-1] with probability p, else image. image: [H, W, C]."""
    _check(image)
    return jnp.where(jax.random.uniform(key, (), jnp.float32) < p, image[:, ::-1], image)


def resample(image: jax.Array, coords: jax.Array, *, cval: float = 0.0) -> jax.Array:
    """Bilinear samples: out[..., c] = image at (coords[0], coords[1]) (row, column; pixel
    centres at integers), interpolating towards `cval` outside (scipy's `grid-constant`).

    Args:
      image: [H, W, C].
      coords: [2, ...] float sampling positions.
    Returns:
      [..., C].
    """
    _check(image)
    ys, xs = coords[0], coords[1]

    def one(channel):
        return map_coordinates(channel, [ys, xs], order=1, mode="constant", cval=cval)

    return jax.vmap(one, in_axes=-1, out_axes=-1)(image)


def _grid(h: int, w: int) -> jax.Array:
    """[2, H, W] float32 pixel coordinates (row, column)."""
    return jnp.stack(jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")).astype(jnp.float32)


def rotation_coords(h: int, w: int, degrees: jax.Array | float) -> jax.Array:
    """[2, H, W] source coordinates of a rotation by `degrees` counter-clockwise (as displayed,
    rows downward; np.rot90's sense) about the centre ((H - 1) / 2, (W - 1) / 2)."""
    theta = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    g = _grid(h, w)
    y, x = g[0] - cy, g[1] - cx
    return jnp.stack([cos * y + sin * x + cy, cos * x - sin * y + cx])


def rotate(image: jax.Array, degrees: jax.Array | float, *, cval: float = 0.0) -> jax.Array:
    """Rotation by `degrees` counter-clockwise about the centre, bilinear; [H, W, C] -> same.
    0 degrees is the identity exactly, 90 is np.rot90 on a square image to float rounding."""
    _check(image)
    return resample(image, rotation_coords(*image.shape[:2], degrees), cval=cval)


def random_rotation(key: jax.Array, image: jax.Array, max_degrees: float) -> jax.Array:
    """`rotate` by an angle uniform in [-max_degrees, max_degrees]."""
    angle = jax.random.uniform(key, (), jnp.float32, -max_degrees, max_degrees)
    return rotate(image, angle)


def _gaussian_taps(sigma: float, truncate: float, n: int) -> np.ndarray:
    """1-D Gaussian of std `sigma` on [-r, r], r = int(truncate sigma + 0.5) as scipy's,
    clipped to n - 1: farther taps only ever meet zero padding."""
    r = min(int(truncate * sigma + 0.5), n - 1)
    k = np.arange(-r, r + 1, dtype=np.float64)
    return np.exp(-0.5 * (k / sigma) ** 2)


def _smooth_axis(u: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
    """Zero-padded 1-D convolution of u [H, W] along `axis` (one half of a separable conv)."""
    r = len(taps) // 2
    shape = (len(taps), 1) if axis == 0 else (1, len(taps))
    kernel = jnp.asarray(taps.reshape(*shape, 1, 1), jnp.float32)  # HWIO
    pads = [(r, r), (0, 0)] if axis == 0 else [(0, 0), (r, r)]
    out = lax.conv_general_dilated(
        u[None, :, :, None],
        kernel,
        (1, 1),
        pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,  # no TF32 on GPUs: fields are compared to 1e-6
    )
    return out[0, :, :, 0]


def gaussian_smooth(u: jax.Array, sigma: float, *, truncate: float = 4.0) -> jax.Array:
    """Normalized Gaussian smoothing of a field u [H, W]: the zero-padded separable convolution
    divided by that of ones, so that constants are preserved and the border of the field is not
    pulled towards 0 (as large sigma tends to the field's mean: a uniform translation).
    Equals scipy's `gaussian_filter(u, sigma, mode="constant", truncate=truncate)` divided by
    `gaussian_filter(ones, ...)`."""
    h, w = u.shape
    ty, tx = _gaussian_taps(sigma, truncate, h), _gaussian_taps(sigma, truncate, w)
    smoothed = _smooth_axis(_smooth_axis(u, ty, 0), tx, 1)

    def weight(taps, n):  # the ones' smoothing, per axis, in float64 numpy at trace time
        r = len(taps) // 2
        return np.convolve(np.ones(n), taps)[r : r + n]

    norm = np.outer(weight(ty, h), weight(tx, w)).astype(np.float32)
    return smoothed / norm


def elastic_field(
    key: jax.Array, shape: tuple[int, int], *, alpha: float, sigma: float
) -> jax.Array:
    """[2, H, W] displacements (rows, columns) of Simard et al. (2003): U[-1, 1] per pixel and
    component, `gaussian_smooth`ed with std `sigma` pixels, times `alpha` pixels."""
    return _field(jax.random.uniform(key, (2, *shape), jnp.float32, -1.0, 1.0), alpha, sigma)


def _field(u: jax.Array, alpha: float, sigma: float) -> jax.Array:
    return alpha * jnp.stack([gaussian_smooth(u[0], sigma), gaussian_smooth(u[1], sigma)])


def elastic(
    key: jax.Array, image: jax.Array, *, alpha: float = 34.0, sigma: float = 4.0
) -> jax.Array:
    """Elastic distortion: out[p] = image[p + field[p]] bilinear; [H, W, C] -> same."""
    _check(image)
    h, w = image.shape[:2]
    return resample(image, _grid(h, w) + elastic_field(key, (h, w), alpha=alpha, sigma=sigma))


def augment(
    key: jax.Array,
    image: jax.Array,
    *,
    crop_pad: int = 0,
    flip: bool = False,
    max_degrees: float = 0.0,
    elastic_alpha: float = 0.0,
    elastic_sigma: float = 4.0,
) -> jax.Array:
    """One example: rotation and elastic distortion (one bilinear pass), then a pad-and-crop
    shift, then a horizontal flip. Settings are static; a zero one skips its step, so the
    defaults are the identity. image: [H, W, C] -> [H, W, C].

    All randomness is one U[0, 1) draw from `key`: crop offsets, flip, angle, then (only with
    elastic) the field's 2 H W U[-1, 1] numbers as 2u - 1. One PRNG call compiles far faster on
    CPU than four, and each setting keeps its numbers whether or not the others are on."""
    _check(image)
    h, w = image.shape[:2]
    u = jax.random.uniform(key, (4 + (2 * h * w if elastic_alpha else 0),), jnp.float32)
    if max_degrees or elastic_alpha:
        coords = _grid(h, w)
        if max_degrees:
            coords = rotation_coords(h, w, max_degrees * (2.0 * u[3] - 1.0))
        if elastic_alpha:
            noise = 2.0 * u[4:].reshape(2, h, w) - 1.0
            coords = coords + _field(noise, elastic_alpha, elastic_sigma)
        image = resample(image, coords)
    if crop_pad:
        image = _crop_at(image, crop_pad, (h, w), u[:2])
    if flip:
        image = jnp.where(u[2] < 0.5, image[:, ::-1], image)
    return image


def augment_batch(batch: dict[str, jax.Array], key: jax.Array, *, field: str = "x", **kwargs):
    """`augment` of every example of `batch[field]` ([B, H, W, C]) with keys split(key, B); the
    other fields pass through. Use inside the jitted loss or step (`with_augmentation`)."""
    x = batch[field]
    if x.ndim != 4:
        raise ValueError(f"batch[{field!r}] must be [B, H, W, C], got shape {x.shape}")
    keys = jax.random.split(key, x.shape[0])
    return {**batch, field: jax.vmap(lambda k, im: augment(k, im, **kwargs))(keys, x)}


def with_augmentation(loss_fn: Callable[..., Any], **kwargs) -> Callable[..., Any]:
    """Wraps an engine loss `(params, extra, batch, rng) -> (loss, (metrics, extra))` so that it
    sees `augment_batch(batch, fold_in(rng, AUGMENT_STREAM), **kwargs)`. The engine's rng is
    `fold_in(state.rng, step)`, so the augmentation depends only on (seed, step)."""

    def fn(params, extra, batch, rng):
        batch = augment_batch(batch, jax.random.fold_in(rng, AUGMENT_STREAM), **kwargs)
        return loss_fn(params, extra, batch, rng)

    fn.__doc__ = f"{getattr(loss_fn, '__name__', 'loss_fn')} on augmented batches ({kwargs})"
    return fn
