"""Max and average pooling, max pooling with argmax indices, and max unpooling, all NHWC.

Every function takes `x: [..., H, W, C]` with any number of leading batch axes (none, one, or
several, and any under `vmap`) and pools the two spatial axes H and W. Windows, strides and
padding follow `torch.nn.functional.{max,avg}_pool2d`:

    padding = "VALID" | "SAME" | p | (ph, pw) | ((top, bottom), (left, right))

An integer `p` pads p on every side (PyTorch's `padding=p`); "SAME" pads as TensorFlow/XLA
(`lax.padtype_to_pads`: ceil(H / s) outputs, the odd pixel at the bottom/right). `ceil_mode`
is PyTorch's: the output size rounds up, and the extra window must start inside the input or
its left padding. Max pooling pads with -inf (never chosen); average pooling pads with zeros and
divides by the window's count of padded-input positions (`count_include_pad=True`, PyTorch's
default) or of real positions only (`count_include_pad=False`).

`max_pool_with_argmax` and `max_unpool` are SegNet's (Badrinarayanan, Kendall & Cipolla 2017)
encoder-to-decoder skip: the encoder remembers where each maximum came from, and the decoder
scatters its features back to those positions. Indices are flat positions in each channel's
unpadded H*W plane, `row * W + col`, exactly as `max_pool2d(return_indices=True)`.

Tie rule (equal to PyTorch's CPU and CUDA kernels): the index is the FIRST maximum in the
window's scan order, rows top to bottom and, within a row, columns left to right; padding never
wins, even against a real -inf. A window containing NaN returns NaN with the index of its LAST
NaN (PyTorch's kernels test `val > max || isnan(val)`). The gradient of the values flows to the
chosen index only (overlapping windows that choose the same pixel add their gradients), as
PyTorch's `max_pool2d` backward does; `max_pool`'s own gradient is XLA's select-and-scatter,
which picks one pixel per window too (the first maximum on CPU, tested against PyTorch).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    t = (int(v), int(v)) if isinstance(v, int | np.integer) else tuple(int(a) for a in v)
    if len(t) != 2 or min(t) < 1:
        raise ValueError(f"{name} must be a positive int or a pair of them, got {v!r}")
    return t


def _geometry(
    size: tuple[int, int],
    window: tuple[int, int],
    strides: tuple[int, int],
    padding: Padding,
    ceil_mode: bool,
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Per spatial axis: the explicit (lo, hi) padding, the extra ceil-mode padding on the hi
    side (not counted by `count_include_pad`), and the output size."""
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID', an int or pairs, got {padding!r}")
        pads = list(lax.padtype_to_pads(size, window, strides, padding))
    elif isinstance(padding, int | np.integer):
        pads = [(int(padding), int(padding))] * 2
    else:
        pads = [(int(p), int(p)) if isinstance(p, int | np.integer) else tuple(p) for p in padding]
    if len(pads) != 2 or any(len(p) != 2 or min(p) < 0 for p in pads):
        raise ValueError(f"padding must give two non-negative (lo, hi) pairs, got {padding!r}")
    extra, out = [], []
    for n, k, s, (lo, hi) in zip(size, window, strides, pads):
        span = n + lo + hi - k
        if span < 0:
            raise ValueError(f"window {window} is larger than the padded input {size} + {pads}")
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= n + lo:  # PyTorch: the last window starts inside
            o -= 1
        extra.append(max(0, (o - 1) * s + k - (n + lo + hi)))
        out.append(o)
    return pads, extra, out


def _windows(size, window, strides, pads, out):
    """Static tables over [Ho, Wo, kh*kw] in scan order: whether each window position is a real
    pixel, and its flat index row * W + col (undefined where padding)."""
    axes = []
    for n, k, s, (lo, _), o in zip(size, window, strides, pads, out):
        pos = (np.arange(o)[:, None] * s - lo + np.arange(k)[None, :]).astype(np.int32)  # [o, k]
        axes.append((pos, (pos >= 0) & (pos < n)))
    (ry, vy), (rx, vx) = axes
    valid = vy[:, None, :, None] & vx[None, :, None, :]  # [Ho, Wo, kh, kw]
    flat = ry[:, None, :, None] * np.int32(size[1]) + rx[None, :, None, :]
    shape = (out[0], out[1], window[0] * window[1])
    if not valid.reshape(shape).any(-1).all():
        raise ValueError(f"padding {pads} leaves a window of size {window} with no input pixel")
    return valid.reshape(shape), flat.reshape(shape).astype(np.int32)


def _pad_value(dtype) -> float | int:
    return -jnp.inf if jnp.issubdtype(dtype, jnp.floating) else int(jnp.iinfo(dtype).min)


def max_pool(
    x: jax.Array,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
    *,
    ceil_mode: bool = False,
) -> jax.Array:
    """Max pooling, `torch.nn.functional.max_pool2d` in NHWC.

    Args:
      x: [..., H, W, C].
      window: (kh, kw) or an int.
      strides: (sh, sw) or an int; defaults to `window` (PyTorch's default).
      padding: see the module docstring; padded pixels are -inf.
      ceil_mode: round the output size up (PyTorch's `ceil_mode`).
    Returns:
      [..., Ho, Wo, C].
    """
    window = _pair(window, "window")
    strides = window if strides is None else _pair(strides, "strides")
    pads, extra, _ = _geometry(x.shape[-3:-1], window, strides, padding, ceil_mode)
    lead = x.ndim - 3
    full = [(0, 0)] * lead + [(lo, hi + e) for (lo, hi), e in zip(pads, extra)] + [(0, 0)]
    return lax.reduce_window(
        x,
        np.array(_pad_value(x.dtype), x.dtype),  # concrete: lax picks its max monoid
        lax.max,
        (1,) * lead + window + (1,),
        (1,) * lead + strides + (1,),
        full,
    )


def avg_pool(
    x: jax.Array,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
    *,
    count_include_pad: bool = True,
    ceil_mode: bool = False,
) -> jax.Array:
    """Average pooling, `torch.nn.functional.avg_pool2d` in NHWC.

    The divisor of each window is its number of positions inside the explicitly padded input
    (`count_include_pad=True`, PyTorch's default, which also applies to "SAME") or inside the
    input itself (`False`); positions added only by `ceil_mode` never count, as in PyTorch.

    Args:
      x: [..., H, W, C] floating.
      window, strides, padding, ceil_mode: as `max_pool`.
      count_include_pad: whether padded zeros count in the divisor.
    Returns:
      [..., Ho, Wo, C].
    """
    window = _pair(window, "window")
    strides = window if strides is None else _pair(strides, "strides")
    size = x.shape[-3:-1]
    pads, extra, out = _geometry(size, window, strides, padding, ceil_mode)
    lead = x.ndim - 3
    full = [(lo, hi + e) for (lo, hi), e in zip(pads, extra)]
    total = lax.reduce_window(
        x,
        np.array(0, x.dtype),
        lax.add,
        (1,) * lead + window + (1,),
        (1,) * lead + strides + (1,),
        [(0, 0)] * lead + full + [(0, 0)],
    )
    # The divisor depends on shapes only: count the ones of a static indicator with numpy.
    counted = [
        np.ones(n + lo + hi) if count_include_pad else np.pad(np.ones(n), (lo, hi))
        for n, (lo, hi) in zip(size, pads)
    ]
    count = []
    for c, k, s, o, e in zip(counted, window, strides, out, extra):
        c = np.pad(c, (0, e))
        count.append(np.array([c[i * s : i * s + k].sum() for i in range(o)]))
    divisor = np.outer(count[0], count[1])[:, :, None].astype(np.dtype(x.dtype))
    return total / divisor


def max_pool_with_argmax(
    x: jax.Array,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
    *,
    ceil_mode: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Max pooling that also returns where each maximum is: `max_pool2d(return_indices=True)`.

    The window's kh*kw shifted strided views of the padded input are stacked in scan order, so
    the tie rule (module docstring) is explicit rather than left to a backend's reduction order;
    the values are gathered at the chosen position, so their gradient reaches that pixel only.
    Costs kh*kw/(sh*sw) times the input in memory (1x for 2x2 stride 2).

    Args:
      x: [..., H, W, C].
      window, strides, padding, ceil_mode: as `max_pool`.
    Returns:
      values: [..., Ho, Wo, C], equal to `max_pool(x, ...)`.
      indices: [..., Ho, Wo, C] int32, flat positions `row * W + col` in each [H, W] plane.
    """
    window = _pair(window, "window")
    strides = window if strides is None else _pair(strides, "strides")
    size = x.shape[-3:-1]
    pads, extra, out = _geometry(size, window, strides, padding, ceil_mode)
    valid, flat = _windows(size, window, strides, pads, out)
    h, w = x.ndim - 3, x.ndim - 2
    xp = jnp.pad(
        x,
        [(0, 0)] * h + [(lo, hi + e) for (lo, hi), e in zip(pads, extra)] + [(0, 0)],
        constant_values=_pad_value(x.dtype),
    )
    views = []
    for i in range(window[0]):
        rows = lax.slice_in_dim(xp, i, i + strides[0] * (out[0] - 1) + 1, strides[0], axis=h)
        for j in range(window[1]):
            views.append(
                lax.slice_in_dim(rows, j, j + strides[1] * (out[1] - 1) + 1, strides[1], axis=w)
            )
    patches = jnp.stack(views, axis=-2)  # [..., Ho, Wo, K, C], K in scan order
    valid_k = valid[:, :, :, None]  # [Ho, Wo, K, 1]
    top = jnp.max(patches, axis=-2, keepdims=True)  # NaN propagates
    first = jnp.argmax(valid_k & (patches == top), axis=-2)  # bool argmax: first True
    nans = valid_k & jnp.isnan(patches) if jnp.issubdtype(x.dtype, jnp.floating) else None
    if nans is not None:
        last_nan = valid.shape[-1] - 1 - jnp.argmax(jnp.flip(nans, axis=-2), axis=-2)
        first = jnp.where(jnp.any(nans, axis=-2), last_nan, first)
    k = first.astype(jnp.int32)  # [..., Ho, Wo, C]
    values = jnp.take_along_axis(patches, k[..., None, :], axis=-2)[..., 0, :]
    flat_b = jnp.broadcast_to(jnp.asarray(flat)[..., None], patches.shape)
    indices = jnp.take_along_axis(flat_b, k[..., None, :], axis=-2)[..., 0, :]
    return values, indices


def unpool_size(
    pooled: Sequence[int],
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> tuple[int, int]:
    """PyTorch's default `max_unpool2d` output size: (Ho - 1) * s - 2 p + k per axis."""
    window = _pair(window, "window")
    strides = window if strides is None else _pair(strides, "strides")
    pad = (int(padding),) * 2 if isinstance(padding, int | np.integer) else tuple(padding)
    return tuple((o - 1) * s - 2 * p + k for o, s, p, k in zip(pooled, strides, pad, window))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _scatter_rows(v: jax.Array, i: jax.Array, size: int) -> jax.Array:
    """[R, M] values written at columns [R, M] of R zero rows of length `size`."""
    rows = jnp.arange(v.shape[0], dtype=jnp.int32)[:, None]
    return jnp.zeros((v.shape[0], size), v.dtype).at[rows, i].set(v, mode="drop")


def _scatter_rows_fwd(v, i, size):
    return _scatter_rows(v, i, size), i


def _scatter_rows_bwd(size, i, g):
    # PyTorch's max_unpool2d backward: every input gathers the gradient at its index, shared
    # indices included (JAX's own scatter rule would credit only the write that was kept).
    valid = (i >= 0) & (i < size)
    got = jnp.take_along_axis(g, jnp.clip(i, 0, size - 1), axis=1)
    return jnp.where(valid, got, jnp.zeros_like(got)), None


_scatter_rows.defvjp(_scatter_rows_fwd, _scatter_rows_bwd)


def max_unpool(values: jax.Array, indices: jax.Array, output_size: Sequence[int]) -> jax.Array:
    """Scatters `values` to `indices` in zero planes: `torch.nn.functional.max_unpool2d`.

    The decoder half of SegNet's pooling (Badrinarayanan et al. 2017): `values` are usually
    decoder features of the pooled shape, `indices` the encoder's `max_pool_with_argmax`
    indices. Positions no window chose are 0. With overlapping windows two outputs may share an
    index; the values written there are then equal when they come from the same max pool, and
    otherwise one of them is kept (which one is unspecified, as in PyTorch on CUDA). The gradient
    with respect to `values` gathers the output gradient at `indices`, shared ones included, as
    PyTorch's (reverse mode only: a `custom_vjp`).

    Args:
      values: [..., Ho, Wo, C].
      indices: [..., Ho, Wo, C] integer, flat positions in [0, H*W).
      output_size: (H, W), e.g. the encoder input's or `unpool_size(...)`.
    Returns:
      [..., H, W, C].
    """
    if values.shape != indices.shape:
        raise ValueError(f"values {values.shape} and indices {indices.shape} differ in shape")
    hw = tuple(int(n) for n in output_size)
    lead, (ho, wo, c) = values.shape[:-3], values.shape[-3:]
    v = jnp.moveaxis(values.reshape(-1, ho * wo, c), -1, 1).reshape(-1, ho * wo)  # [N*C, Ho*Wo]
    i = jnp.moveaxis(indices.reshape(-1, ho * wo, c), -1, 1).reshape(-1, ho * wo)
    out = _scatter_rows(v, i.astype(jnp.int32), math.prod(hw))
    return jnp.moveaxis(out.reshape(-1, c, *hw), 1, -1).reshape(*lead, *hw, c)
