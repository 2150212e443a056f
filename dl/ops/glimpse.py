"""The retina of Mnih, Heess, Graves & Kavukcuoglu 2014 ("Recurrent models of visual attention",
sec. 3.1): k square patches centred on one location, of sides base, 2 base, ..., 2^(k-1) base,
each shrunk to base x base by averaging 2^j x 2^j blocks, so near pixels are seen sharply and far
ones coarsely. Pure `jnp`, jittable and `vmap`-able, differentiable w.r.t. the image.

Coordinates: a location l = (row, column) in [-1, 1]^2, (-1, -1) the top-left corner of the image
and (1, 1) the bottom-right, becomes the pixel centre c = (l + 1) / 2 * (H, W). A patch of side s
covers the integer rows floor(c_row) - s // 2, ..., floor(c_row) - s // 2 + s - 1 (columns
alike); pixels outside the image read 0 (zero padding). The crop is an integer
`lax.dynamic_slice` of the zero-padded image, so the patch has no gradient w.r.t. l: a sampled
location is trained by REINFORCE, not by backprop (the paper's reason for the policy gradient).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def patch_sizes(base: int, scales: int) -> tuple[int, ...]:
    """Sides of the k = `scales` patches: base * 2^j, j = 0..k-1."""
    if base < 1 or scales < 1:
        raise ValueError(f"base and scales must be >= 1, got {base}, {scales}")
    return tuple(base * 2**j for j in range(scales))


def top_left(loc: jax.Array, size: int, shape: tuple[int, int]) -> jax.Array:
    """Integer (row, column) [..., 2] of the top-left pixel of the side-`size` patch at `loc`."""
    extent = jnp.asarray(shape, loc.dtype)
    centre = (loc + 1.0) / 2.0 * extent
    return jnp.floor(centre).astype(jnp.int32) - size // 2


def crop(image: jax.Array, loc: jax.Array, size: int) -> jax.Array:
    """image [H, W, C], loc [2] in [-1, 1] -> the zero-padded patch [size, size, C] at `loc`.

    Locations outside [-1, 1] are clipped to it first."""
    h, w, c = image.shape
    loc = jnp.clip(loc, -1.0, 1.0)
    padded = jnp.pad(image, ((size, size), (size, size), (0, 0)))
    r, q = top_left(loc, size, (h, w)) + size  # into the padded image; always in range
    return jax.lax.dynamic_slice(padded, (r, q, 0), (size, size, c))


def shrink(patch: jax.Array, base: int) -> jax.Array:
    """[s, s, C] -> [base, base, C] by the mean of each (s/base)^2 block; s a multiple of base."""
    s, _, c = patch.shape
    f = s // base
    if f * base != s:
        raise ValueError(f"patch side {s} is not a multiple of base {base}")
    return patch.reshape(base, f, base, f, c).mean(axis=(1, 3))


def retina(image: jax.Array, loc: jax.Array, *, base: int = 8, scales: int = 3) -> jax.Array:
    """image [H, W, C], loc [2] -> the glimpse [scales, base, base, C]: patch j has side
    base * 2^j, shrunk to base x base (module docstring)."""
    return jnp.stack([shrink(crop(image, loc, s), base) for s in patch_sizes(base, scales)])


def retina_batch(
    images: jax.Array, locs: jax.Array, *, base: int = 8, scales: int = 3
) -> jax.Array:
    """images [B, H, W, C], locs [B, 2] -> glimpses [B, scales, base, base, C]."""
    return jax.vmap(lambda x, l: retina(x, l, base=base, scales=scales))(images, locs)
