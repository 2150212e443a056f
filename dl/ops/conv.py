"""N-d convolution and transposed convolution, channels-last, in four interchangeable forms.

`conv(x, kernel, impl=...)` computes the same cross-correlation four ways:

* "xla": `lax.conv_general_dilated`, differentiated by XLA's own rules (the weight gradient is
  another convolution, with the batch as the contracted feature axis; the input gradient is a
  convolution of the output gradient with the flipped kernel).
* "xla_split": XLA's convolution forward, but its derivatives (a `jax.custom_jvp`, so forward
  and reverse mode both work) taken through the convolution applied to `split_parts()` slices of
  the batch, one per CPU thread: the input gradient is that many transposed convolutions
  (concatenated) and the weight gradient that many weight-gradient convolutions (summed).
  XLA's CPU runtime (jaxlib 0.10, YNNPACK fusions) ran each whole convolution on about one
  thread; independent slices run side by side. Splitting the forward too measured slower.
* "im2col": patches + one GEMM (Chellapilla, Puri & Simard 2006; `dl.ops.im2col`), differentiated
  through the GEMM. It holds all N * H' * W' patch rows at once (25x the input for a 5x5
  kernel): 2-5x slower than "xla" on the 32 -> 64 layer of BENCHMARKS.md ("conv"), but faster
  on LeNet-5's few-channel layers ("cnn_step").
* "im2col_vjp": XLA's forward convolution and input gradient, but the weight gradient as the
  GEMM of the im2col formulation, dW = patches^T @ dY, accumulated over chunks of the batch so
  that only one chunk's patches (a few MiB) exist at a time. A `jax.custom_vjp`: reverse mode
  only -- `jax.grad` (also of a gradient) works, `jax.jvp`/`jax.linearize`/`jax.jacfwd` raise.
* "auto" (the default) is "xla_split" on a single CPU device and "xla" elsewhere (several CPU
  devices, GPU, TPU): on the 2-core CPU, "xla_split" measured the same forward, 1.1-1.4x faster
  forward + gradients on the issue's 5x5 32 -> 64 layer, and no slower on the other layers
  tried; "im2col_vjp" lost to it (BENCHMARKS.md, "conv"). Off CPU (cuDNN, TPU) nothing was
  measured, and XLA's convolutions fill the device anyway.

`conv_transpose(x, kernel, impl=...)` computes its forward as one lhs-dilated convolution;
* "xla" differentiates it by XLA's rules, whose weight gradient XLA:CPU runs about 20x slower
  than torch's (7x7x128 -> 14x14x64, stride 2, batch 64: 189 ms against 11 ms; BENCHMARKS.md,
  "gan_step");
* "adjoint" (the default) takes the gradients from conv_transpose being the adjoint of a
  strided `conv`: y = A^T x with A = conv(., kernel^T), so dx = A g, one strided convolution,
  and d kernel^T is that convolution's weight gradient (a `jax.custom_vjp`: reverse mode only,
  as "im2col_vjp").

Shapes: x is [*batch, *spatial, C] with any number of leading batch axes (flattened into one
for XLA and restored; none at all is one unbatched example); kernel is [*window, C / G, O]
(HWIO for images) for `conv` and [*window, C, O / G] for `conv_transpose`.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from dl.ops.im2col import Padding, as_tuple, conv_im2col, conv_padding, im2col

IMPLS = ("xla", "xla_split", "im2col", "im2col_vjp")
TRANSPOSE_IMPLS = ("adjoint", "xla")
# Rows of patches per chunk in the "im2col_vjp" weight gradient, in bytes: a few MiB keeps one
# chunk's patches and their GEMM panels in the last-level cache of a small CPU.
WEIGHT_GRAD_CHUNK_BYTES = 4 * 2**20


class ConvConfig(NamedTuple):
    """Static, hashable settings of one convolution (explicit per-side padding)."""

    strides: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    feature_group_count: int


def dimension_numbers(n: int) -> lax.ConvDimensionNumbers:
    """Channels-last specs for `n` spatial axes: lhs [N, *spatial, C], rhs [*window, I, O],
    out [N, *spatial, O] (NHWC / HWIO / NHWC for n = 2)."""
    spatial = tuple(range(1, n + 1))
    return lax.ConvDimensionNumbers(
        lhs_spec=(0, n + 1, *spatial),
        rhs_spec=(n + 1, n, *range(n)),
        out_spec=(0, n + 1, *spatial),
    )


def _flatten_batch(x: jax.Array, n_spatial: int) -> tuple[jax.Array, tuple[int, ...]]:
    """[*batch, *spatial, C] -> ([prod(batch), *spatial, C], batch); no batch axes -> one."""
    batch = x.shape[: x.ndim - n_spatial - 1]
    if x.ndim < n_spatial + 1:
        raise ValueError(
            f"a {n_spatial}-D convolution needs x: [*batch, *spatial, C], got {x.shape}"
        )
    return x.reshape(math.prod(batch), *x.shape[len(batch) :]), batch


def _xla_conv(x: jax.Array, kernel: jax.Array, cfg: ConvConfig) -> jax.Array:
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=cfg.strides,
        padding=cfg.padding,
        rhs_dilation=cfg.dilation,
        dimension_numbers=dimension_numbers(len(cfg.strides)),
        feature_group_count=cfg.feature_group_count,
    )


def im2col_weight_grad(
    x: jax.Array,
    g: jax.Array,
    window: Sequence[int],
    cfg: ConvConfig,
    *,
    chunk_bytes: int = WEIGHT_GRAD_CHUNK_BYTES,
) -> jax.Array:
    """dL/dkernel = sum over rows of patches(x)^T @ dL/dy, chunk by chunk over the batch.

    Args:
      x: [N, *spatial, C] the convolution's input.
      g: [N, *out_spatial, O] the gradient with respect to its output.
      window, cfg: the convolution's window and settings.
      chunk_bytes: the patches of one chunk of images take at most about this much memory (at
        least one image per chunk); chunks are made as even as possible and the batch is
        zero-padded to a whole number of them (zero images add nothing to the sum).

    Returns:
      [*window, C / G, O], the gradient of an HWIO kernel.
    """
    n, c, o = x.shape[0], x.shape[-1], g.shape[-1]
    k, grp = math.prod(window), cfg.feature_group_count
    rows_per_image = math.prod(g.shape[1:-1])
    most = max(1, min(n, chunk_bytes // max(1, rows_per_image * k * c * x.dtype.itemsize)))
    steps = -(-n // most)
    chunk = -(-n // steps)  # as even as possible: fewer than `steps` zero images of padding
    pad = steps * chunk - n
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
        g = jnp.concatenate([g, jnp.zeros((pad, *g.shape[1:]), g.dtype)])
    xs = x.reshape(steps, chunk, *x.shape[1:])
    gs = g.reshape(steps, chunk * rows_per_image, o)

    def body(acc, xg):
        xc, gc = xg
        p = im2col(xc, window, strides=cfg.strides, padding=cfg.padding, dilation=cfg.dilation)
        p = p.reshape(-1, k, grp, c // grp)
        gc = gc.reshape(-1, grp, o // grp)
        return acc + jnp.einsum("mkgc,mgo->kcgo", p, gc), None

    acc0 = jnp.zeros((k, c // grp, grp, o // grp), jnp.result_type(x, g))
    if steps == 1:
        acc, _ = body(acc0, (xs[0], gs[0]))
    else:
        acc, _ = lax.scan(body, acc0, (xs, gs))
    return acc.reshape(*window, c // grp, o)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_im2col_vjp(x: jax.Array, kernel: jax.Array, cfg: ConvConfig) -> jax.Array:
    return _xla_conv(x, kernel, cfg)


def _im2col_vjp_fwd(x, kernel, cfg):
    return _xla_conv(x, kernel, cfg), (x, kernel)


def _im2col_vjp_bwd(cfg, res, g):
    x, kernel = res
    # XLA's own input gradient: a convolution of g with the flipped kernel.
    _, pullback = jax.vjp(lambda x: _xla_conv(x, kernel, cfg), x)
    (dx,) = pullback(g)
    dw = im2col_weight_grad(x, g, kernel.shape[:-2], cfg).astype(kernel.dtype)
    return dx, dw


_conv_im2col_vjp.defvjp(_im2col_vjp_fwd, _im2col_vjp_bwd)


def split_parts() -> int:
    """Batch slices of "xla_split": the CPUs this process may run on (XLA's CPU thread count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _xla_split_conv(x: jax.Array, kernel: jax.Array, cfg: ConvConfig, parts: int) -> jax.Array:
    """XLA's convolution over `parts` contiguous slices of the batch (sizes differing by at most
    one), concatenated: independent convolutions the runtime can run side by side, and so are
    their transposes."""
    n = x.shape[0]
    parts = max(1, min(parts, n))
    if parts == 1:
        return _xla_conv(x, kernel, cfg)
    bounds = [n * i // parts for i in range(parts + 1)]
    return jnp.concatenate([_xla_conv(x[a:b], kernel, cfg) for a, b in itertools.pairwise(bounds)])


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _conv_split_grads(x: jax.Array, kernel: jax.Array, cfg: ConvConfig, parts: int) -> jax.Array:
    """One XLA convolution forward; derivatives through `_xla_split_conv`."""
    return _xla_conv(x, kernel, cfg)


def _conv_split_grads_jvp(cfg, parts, primals, tangents):
    # The tangent is linear in (dx, dW); reverse mode transposes each split convolution on its
    # own, so the input and weight gradients come out as `parts` independent convolutions each
    # (the weight gradient's summed). Symbolic zeros skip the unneeded one, e.g. dx of data.
    (x, kernel), (dx, dkernel) = primals, tangents
    terms = []
    if not isinstance(dx, SymbolicZero):
        terms.append(_xla_split_conv(dx, kernel, cfg, parts))
    if not isinstance(dkernel, SymbolicZero):
        terms.append(_xla_split_conv(x, dkernel, cfg, parts))
    y = _xla_conv(x, kernel, cfg)
    return y, functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)


_conv_split_grads.defjvp(_conv_split_grads_jvp, symbolic_zeros=True)


def resolve_impl(impl: str) -> str:
    """The impl that `conv` runs for `impl` ("auto" resolved; see the module docstring)."""
    if impl == "auto":
        # With several CPU devices (data parallel over simulated devices) the devices already
        # use the threads, and slicing a sharded batch would move data between them.
        one_cpu = jax.default_backend() == "cpu" and jax.local_device_count() == 1
        return "xla_split" if one_cpu else "xla"
    if impl not in IMPLS:
        raise ValueError(f"impl must be 'auto' or one of {IMPLS}, got {impl!r}")
    return impl


def conv(
    x: jax.Array,
    kernel: jax.Array,
    *,
    strides: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] = 1,
    feature_group_count: int = 1,
    impl: str = "auto",
) -> jax.Array:
    """Cross-correlation y[n, p, o] = sum_{k, c} x_pad[n, p * stride + k * dilation, c] w[k, c, o]
    (what `torch.nn.functional.conv2d` computes, in channels-last layout), no bias.

    Args:
      x: [*batch, *spatial, C].
      kernel: [*window, C / G, O]; its rank fixes the number of spatial axes (HWIO: 2-D).
      strides, dilation: ints or one per spatial axis (`rhs_dilation`: the kernel's taps spread
        `dilation` apart; Yu & Koltun 2016).
      padding: 'SAME', 'VALID', an int, or per axis an int or a (lo, hi) pair
        (`dl.ops.im2col.conv_padding`).
      feature_group_count: G, grouped convolution; C and O must be multiples of G.
      impl: "auto", "xla", "xla_split", "im2col" or "im2col_vjp" (module docstring); all give
        the same values and gradients.

    Returns:
      [*batch, *out_spatial, O], out = floor((in + lo + hi - dilation (k - 1) - 1) / stride) + 1.
    """
    impl = resolve_impl(impl)
    window = kernel.shape[:-2]
    n = len(window)
    if x.shape[-1] != kernel.shape[-2] * feature_group_count:
        raise ValueError(
            f"x has {x.shape[-1]} channels; kernel {kernel.shape} with feature_group_count="
            f"{feature_group_count} needs {kernel.shape[-2] * feature_group_count}"
        )
    flat, batch = _flatten_batch(x, n)
    strides, dilation = as_tuple(strides, n, "strides"), as_tuple(dilation, n, "dilation")
    pads = conv_padding(
        padding, window, strides=strides, dilation=dilation, spatial_shape=flat.shape[1:-1]
    )
    cfg = ConvConfig(strides, pads, dilation, feature_group_count)
    if impl == "xla":
        y = _xla_conv(flat, kernel, cfg)
    elif impl == "xla_split":
        y = _conv_split_grads(flat, kernel, cfg, split_parts())
    elif impl == "im2col":
        y = conv_im2col(
            flat,
            kernel,
            strides=strides,
            padding=pads,
            dilation=dilation,
            feature_group_count=feature_group_count,
        )
    else:
        y = _conv_im2col_vjp(flat, kernel, cfg)
    return y.reshape(*batch, *y.shape[1:])


def conv_transpose_output_shape(
    spatial_shape: Sequence[int],
    window: Sequence[int],
    *,
    strides: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    output_padding: int | Sequence[int] = 0,
) -> tuple[int, ...]:
    """(in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1 per axis: the
    size `torch.nn.ConvTranspose2d` gives."""
    n = len(window)
    s, p, d, op = (
        as_tuple(v, n, name)
        for v, name in (
            (strides, "strides"),
            (padding, "padding"),
            (dilation, "dilation"),
            (output_padding, "output_padding"),
        )
    )
    return tuple(
        (i - 1) * s_ - 2 * p_ + d_ * (k - 1) + op_ + 1
        for i, k, s_, p_, d_, op_ in zip(spatial_shape, window, s, p, d, op)
    )


def conv_transpose(
    x: jax.Array,
    kernel: jax.Array,
    *,
    strides: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    output_padding: int | Sequence[int] = 0,
    feature_group_count: int = 1,
    impl: str = "adjoint",
) -> jax.Array:
    """Transposed ("fractionally strided", "deconvolution") convolution, defined exactly as
    `torch.nn.functional.conv_transpose2d`: the adjoint of `conv` with the same stride, padding
    and dilation, i.e. y[n, p, o] = sum over (q, k) with q * stride - padding + k * dilation = p of
    x[n, q, c] w[k, c, o] (Zeiler et al. 2010; Dumoulin & Visin 2016 for the arithmetic).

    Computed as a convolution of x dilated by the stride (`lhs_dilation`) with the spatially
    flipped kernel, padded by dilation * (k - 1) - padding before and that plus output_padding
    after (negative amounts crop).

    Args:
      x: [*batch, *spatial, C].
      kernel: [*window, C, O / G]: torch's ConvTranspose weight [C, O / G, *window] moved to
        channels-last, not flipped (`kernel = w_torch.transpose(2, 3, 0, 1)` in 2-D).
      strides, padding, dilation: ints or one per axis, as torch's (padding is symmetric).
      output_padding: extra size added to one side of the output (to pick among the input sizes
        that a strided `conv` maps to the same output size); torch requires it to be smaller than
        the stride or the dilation.
      feature_group_count: G; C and O must be multiples of G.
      impl: "adjoint" (the default; module docstring) or "xla"; the same values and gradients.

    Returns:
      [*batch, *out_spatial, O] with `conv_transpose_output_shape` sizes.
    """
    window = kernel.shape[:-2]
    n, c, g = len(window), kernel.shape[-2], feature_group_count
    if x.shape[-1] != c or c % g:
        raise ValueError(
            f"x has {x.shape[-1]} channels; kernel {kernel.shape} needs {c}, a multiple of "
            f"feature_group_count={g}"
        )
    s, p, d, op = (
        as_tuple(v, n, name)
        for v, name in (
            (strides, "strides"),
            (padding, "padding"),
            (dilation, "dilation"),
            (output_padding, "output_padding"),
        )
    )
    for s_, d_, op_ in zip(s, d, op):
        if not (0 <= op_ < max(s_, d_)):
            raise ValueError(
                f"output_padding {op} must be >= 0 and smaller than the stride {s} or the "
                f"dilation {d} on every axis (as in torch)"
            )
    flat, batch = _flatten_batch(x, n)
    cfg = TransposeConfig(s, p, d, op, g)
    if impl == "xla":
        y = _xla_conv_transpose(flat, kernel, cfg)
    elif impl == "adjoint":
        y = _conv_transpose_adjoint(flat, kernel, cfg)
    else:
        raise ValueError(f"impl must be one of {TRANSPOSE_IMPLS}, got {impl!r}")
    return y.reshape(*batch, *y.shape[1:])


class TransposeConfig(NamedTuple):
    """Static, hashable settings of one transposed convolution (per axis, as torch's)."""

    strides: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    output_padding: tuple[int, ...]
    feature_group_count: int


def _xla_conv_transpose(flat: jax.Array, kernel: jax.Array, cfg: TransposeConfig) -> jax.Array:
    """The lhs-dilated convolution of `conv_transpose`'s docstring; flat [N, *spatial, C]."""
    s, p, d, op, g = cfg
    window = kernel.shape[:-2]
    n, c = len(window), kernel.shape[-2]
    # Grouped: torch's weight groups its input channels, [G * C/G, O/G]; lax wants [C/G, G * O/G].
    o_group = kernel.shape[-1]
    w = jnp.flip(kernel, axis=tuple(range(n)))
    w = w.reshape(*window, g, c // g, o_group)
    w = jnp.moveaxis(w, n, n + 1).reshape(*window, c // g, g * o_group)
    lo = [d_ * (k - 1) - p_ for k, p_, d_ in zip(window, p, d)]
    hi = [lo_ + op_ for lo_, op_ in zip(lo, op)]
    # lax.conv_general_dilated rejects negative padding: pad by the non-negative part, then crop.
    y = lax.conv_general_dilated(
        flat,
        w,
        window_strides=(1,) * n,
        padding=[(max(a, 0), max(b, 0)) for a, b in zip(lo, hi)],
        lhs_dilation=s,
        rhs_dilation=d,
        dimension_numbers=dimension_numbers(n),
        feature_group_count=g,
    )
    crop = tuple(
        slice(max(-a, 0), y.shape[1 + i] - max(-b, 0)) for i, (a, b) in enumerate(zip(lo, hi))
    )
    return y[(slice(None), *crop, slice(None))]


def _adjoint_conv(g: jax.Array, kernel_t: jax.Array, cfg: TransposeConfig, spatial) -> jax.Array:
    """The strided `conv` whose adjoint `conv_transpose` is: g [N, *out_spatial, O], kernel_t
    [*window, O / G, C] -> [N, *spatial, C] (cropped: with output_padding >= stride, possible
    when dilation > stride, the conv reaches past the transposed conv's input)."""
    conf = ConvConfig(
        cfg.strides, tuple((q, q) for q in cfg.padding), cfg.dilation, cfg.feature_group_count
    )
    z = _xla_conv(g, kernel_t, conf)
    return z[(slice(None), *(slice(0, m) for m in spatial), slice(None))]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_transpose_adjoint(x: jax.Array, kernel: jax.Array, cfg: TransposeConfig) -> jax.Array:
    return _xla_conv_transpose(x, kernel, cfg)


def _conv_transpose_adjoint_fwd(x, kernel, cfg):
    return _xla_conv_transpose(x, kernel, cfg), (x, kernel)


def _conv_transpose_adjoint_bwd(cfg, res, g):
    # y = A^T x with A = conv(., kernel^T) strided, so <g, y> = <A g, x>: dx = A g (a strided
    # conv), and d kernel^T is the conv's weight gradient of input g against cotangent x.
    x, kernel = res
    spatial = x.shape[1:-1]
    dx, vjp = jax.vjp(lambda kt: _adjoint_conv(g, kt, cfg, spatial), jnp.swapaxes(kernel, -1, -2))
    (dkt,) = vjp(x)
    return dx.astype(x.dtype), jnp.swapaxes(dkt, -1, -2).astype(kernel.dtype)


_conv_transpose_adjoint.defvjp(_conv_transpose_adjoint_fwd, _conv_transpose_adjoint_bwd)
