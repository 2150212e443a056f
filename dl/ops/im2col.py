"""Convolution as one matrix product over extracted patches ("im2col"; Chellapilla, Puri &
Simard 2006, "High performance convolutional neural networks for document processing").

Every output position's receptive field is unrolled into a row of a matrix, so that the whole
convolution becomes one GEMM:

    patches = im2col(x):  [N, *out_spatial, prod(window) * C]     (rows: N * H' * W')
    y = patches @ kernel.reshape(prod(window) * C, O):  [N, *out_spatial, O]

Layouts are channels-last throughout: images NHWC (sequences NWC, volumes NDHWC), kernels HWIO
(flax's), so a row of `patches` is ordered (window offsets row-major, then channels), exactly
the order of `kernel.reshape(-1, O)`. The same helpers normalise the padding conventions of
PyTorch and XLA into explicit per-side pairs (`conv_padding`) and give output sizes
(`conv_output_shape`), for `dl.ops.conv` and the layers in `dl.nn.conv`.

The price is memory: `patches` is prod(window) times the size of the input (25x for a 5x5
kernel). Its autodiff gradients are the two GEMMs of the backward pass plus, for the input,
the adjoint of patch extraction (col2im: pads and adds).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

# 'SAME', 'VALID' (any case), an int p (p on both sides of every spatial axis), or one entry per
# spatial axis, each an int p (both sides) or a pair (lo, hi) -- PyTorch's `padding=` plus
# per-side pairs as in `torch.nn.functional.pad`.
Padding = str | int | Sequence[int | tuple[int, int]]


def as_tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """An int repeated n times, or a length-n sequence of ints, as a tuple (else ValueError)."""
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"{name} needs {n} entries (one per spatial axis), got {value}")
    return value


def conv_padding(
    padding: Padding,
    window: Sequence[int],
    *,
    strides: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
    spatial_shape: Sequence[int] | None = None,
) -> tuple[tuple[int, int], ...]:
    """Explicit (lo, hi) padding per spatial axis.

    'VALID' is no padding. 'SAME' is XLA's (and TensorFlow's): output size ceil(in / stride),
    the total padding max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0) split with the
    extra element at the end; it needs `spatial_shape` when a stride exceeds 1 (the split
    depends on the input size), and otherwise equals PyTorch's padding='same'.
    """
    n = len(window)
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return ((0, 0),) * n
        if mode != "SAME":
            raise ValueError(f"padding string must be 'SAME' or 'VALID', got {padding!r}")
        strides = as_tuple(strides, n, "strides")
        if spatial_shape is None:
            if any(s != 1 for s in strides):
                raise ValueError("padding='SAME' with strides > 1 needs the input's spatial shape")
            spatial_shape = (1,) * n  # stride 1: the padding does not depend on the size
        eff = [(k - 1) * d + 1 for k, d in zip(window, as_tuple(dilation, n, "dilation"))]
        return tuple(lax.padtype_to_pads(tuple(spatial_shape), eff, strides, "SAME"))
    if isinstance(padding, int):
        return ((padding, padding),) * n
    padding = tuple(padding)
    if len(padding) != n:
        raise ValueError(f"padding needs {n} entries (one per spatial axis), got {padding}")
    pairs = []
    for p in padding:
        if isinstance(p, int):
            pairs.append((p, p))
        else:
            lo, hi = p
            pairs.append((int(lo), int(hi)))
    return tuple(pairs)


def conv_output_shape(
    spatial_shape: Sequence[int],
    window: Sequence[int],
    *,
    strides: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] = 1,
) -> tuple[int, ...]:
    """floor((in + lo + hi - dilation * (k - 1) - 1) / stride) + 1 per spatial axis (the size of
    `torch.nn.functional.conv2d`'s output); ValueError if any is below 1."""
    n = len(window)
    strides, dilation = as_tuple(strides, n, "strides"), as_tuple(dilation, n, "dilation")
    pads = conv_padding(
        padding, window, strides=strides, dilation=dilation, spatial_shape=spatial_shape
    )
    out = tuple(
        (size + lo + hi - d * (k - 1) - 1) // s + 1
        for size, k, s, d, (lo, hi) in zip(spatial_shape, window, strides, dilation, pads)
    )
    if any(o < 1 for o in out):
        raise ValueError(
            f"input {tuple(spatial_shape)} is smaller than the dilated window {tuple(window)} "
            f"(dilation {dilation}, padding {pads}): output {out}"
        )
    return out


def im2col(
    x: jax.Array,
    window: Sequence[int],
    *,
    strides: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] = 1,
) -> jax.Array:
    """Patches of every output position, one row each.

    Args:
      x: [N, *spatial, C] (NHWC for images, NWC for sequences).
      window: kernel size per spatial axis, e.g. (kh, kw).
      strides, padding, dilation: as in `conv_output_shape`; zero padding.

    Returns:
      [N, *out_spatial, prod(window) * C], where entry [n, *p, (offset, c)] is
      x_padded[n, *(p * stride + offset * dilation), c] with the window offsets row-major and
      channels fastest: the order of an HWIO kernel's `reshape(-1, out_channels)`.
    """
    n = len(window)
    if x.ndim != n + 2:
        raise ValueError(f"im2col of a {n}-D window needs x: [N, *spatial, C], got {x.shape}")
    strides, dilation = as_tuple(strides, n, "strides"), as_tuple(dilation, n, "dilation")
    spatial = x.shape[1:-1]
    pads = conv_padding(padding, window, strides=strides, dilation=dilation, spatial_shape=spatial)
    out = conv_output_shape(spatial, window, strides=strides, padding=pads, dilation=dilation)
    # lax.pad, unlike jnp.pad, accepts negative widths (cropping), as explicit padding may ask.
    config = [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)]
    xp = lax.pad(x, jnp.zeros((), x.dtype), config)
    cols = []
    for offsets in itertools.product(*(range(k) for k in window)):
        start = [o * d for o, d in zip(offsets, dilation)]
        limit = [b + (m - 1) * s + 1 for b, m, s in zip(start, out, strides)]
        cols.append(
            lax.slice(xp, (0, *start, 0), (x.shape[0], *limit, x.shape[-1]), (1, *strides, 1))
        )
    patches = jnp.stack(cols, axis=-2)  # [N, *out, prod(window), C]
    return patches.reshape(x.shape[0], *out, math.prod(window) * x.shape[-1])


def patch_matmul(patches: jax.Array, kernel: jax.Array, feature_group_count: int = 1) -> jax.Array:
    """[..., prod(window) * C] patches times an HWIO kernel [*window, C / G, O] -> [..., O].

    With G = feature_group_count > 1, input channels and outputs split into G groups and group g's
    outputs see group g's channels only (Krizhevsky et al. 2012's two-GPU AlexNet; G = C is a
    depthwise convolution): one batched GEMM over the groups.
    """
    *window, c_group, o = kernel.shape
    k = math.prod(window)
    g = feature_group_count
    if patches.shape[-1] != k * c_group * g or o % g:
        raise ValueError(
            f"patches [..., {patches.shape[-1]}] do not fit kernel {kernel.shape} with "
            f"feature_group_count={g}"
        )
    if g == 1:
        return patches @ kernel.reshape(k * c_group, o)
    lead = patches.shape[:-1]
    p = patches.reshape(*lead, k, g, c_group)
    w = kernel.reshape(k, c_group, g, o // g)
    return jnp.einsum("...kgc,kcgo->...go", p, w).reshape(*lead, o)


def conv_im2col(
    x: jax.Array,
    kernel: jax.Array,
    *,
    strides: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    feature_group_count: int = 1,
) -> jax.Array:
    """Cross-correlation (what deep-learning libraries call convolution) by im2col + one GEMM.

    Args:
      x: [N, *spatial, C] channels-last input.
      kernel: [*window, C / feature_group_count, O] (HWIO for images).
      strides, padding, dilation: per spatial axis, as in `conv_output_shape`.
      feature_group_count: grouped convolution (see `patch_matmul`).

    Returns:
      [N, *out_spatial, O], equal to `lax.conv_general_dilated` with the same arguments.
    """
    window = kernel.shape[:-2]
    patches = im2col(x, window, strides=strides, padding=padding, dilation=dilation)
    return patch_matmul(patches, kernel, feature_group_count)
