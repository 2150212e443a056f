"""Convolutional layers, channels-last (NHWC images, [batch, time, features] sequences).

* `Conv`: N-d convolution (LeCun et al. 1989, 1998) with stride, padding, dilation and groups,
  over `dl.ops.conv.conv` (XLA's convolution, whole or over batch slices, or the im2col GEMM of
  Chellapilla, Puri & Simard 2006, or XLA's forward with an im2col weight gradient; by default
  the one measured fastest).
* `ConvTranspose`: the transposed convolution defined as `torch.nn.ConvTranspose2d`, with
  `output_padding` (Zeiler et al. 2010; Dumoulin & Visin 2016; the DCGAN generator of
  Radford, Metz & Chintala 2016 is a stack of them).
* `SequenceConv`: 1-D convolution over padded sequences with their lengths (Kalchbrenner,
  Grefenstette & Blunsom 2014): padded steps neither leak into real ones nor produce outputs.

All take any leading batch shape ([*batch, *spatial, C]) and work under `vmap` and `jit`.

Initialization defaults to PyTorch's ("torch"): weights and biases U(-1/sqrt(fan_in),
1/sqrt(fan_in)), which is `kaiming_uniform_(a=sqrt(5))` for the weight; for `Conv`, fan_in =
prod(window) * C / G (the same as `dl.ops.initializers.standard_uniform`); for
`ConvTranspose`, fan_in is torch's: prod(window) * O / G, from its weight's second axis. Any
name in `dl.ops.initializers.INITIALIZERS` or an initializer callable may replace it, e.g.
`kernel_init=scaled_normal(0.02)` with `bias_init="zeros"` for DCGAN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.ops.conv import conv, conv_transpose
from dl.ops.im2col import Padding
from dl.ops.initializers import get_initializer

Init = str | Callable


def _window(kernel_size: int | Sequence[int]) -> tuple[int, ...]:
    """An int is a square 2-D window (like torch's Conv2d); a sequence gives one size per axis."""
    return (kernel_size,) * 2 if isinstance(kernel_size, int) else tuple(kernel_size)


def _torch_uniform(fan_in: int) -> Callable:
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, tuple(shape), dtype, minval=-bound, maxval=bound)

    return init


def _resolve(init: Init, fan_in: int) -> Callable:
    if callable(init):
        return init
    if init == "torch":
        return _torch_uniform(fan_in)
    if init == "zeros":
        return nn.initializers.zeros
    return get_initializer(init)


class Conv(nn.Module):
    """x: [*batch, *spatial, C] -> [*batch, *out_spatial, features].

    y = conv(x, kernel) + bias with kernel [*kernel_size, C / G, features] (HWIO) and bias
    [features]; output sizes floor((in + lo + hi - dilation (k - 1) - 1) / stride) + 1.

    Attributes:
      features: output channels O.
      kernel_size: an int (a square 2-D window) or one size per spatial axis, e.g. (5,) for 1-D.
      strides, dilation: an int or one per spatial axis.
      padding: 'VALID' (the default, as torch's padding=0), 'SAME', an int, or per axis an int
        or a (lo, hi) pair (`dl.ops.im2col.conv_padding`).
      feature_group_count: G, grouped convolution (G = C: depthwise); C and O multiples of G.
      use_bias: add a learned bias per output channel.
      kernel_init, bias_init: "torch" (module docstring), "zeros", a name in
        `dl.ops.initializers.INITIALIZERS`, or a callable `init(key, shape, dtype)`.
      impl: "auto" | "xla" | "xla_split" | "im2col" | "im2col_vjp" (`dl.ops.conv`); the same
        values and gradients. "auto" is the one measured fastest on the backend (BENCHMARKS.md,
        "conv"): "xla_split" (XLA's convolution over one batch slice per CPU thread) on CPU,
        "xla" elsewhere. "im2col_vjp" is reverse-mode only.
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Padding = "VALID"
    dilation: int | Sequence[int] = 1
    feature_group_count: int = 1
    use_bias: bool = True
    kernel_init: Init = "torch"
    bias_init: Init = "torch"
    impl: str = "auto"
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        window = _window(self.kernel_size)
        g = self.feature_group_count
        if x.shape[-1] % g or self.features % g:
            raise ValueError(
                f"in ({x.shape[-1]}) and out ({self.features}) channels must be multiples of "
                f"feature_group_count={g}"
            )
        fan_in = math.prod(window) * x.shape[-1] // g
        shape = (*window, x.shape[-1] // g, self.features)
        kernel = self.param("kernel", _resolve(self.kernel_init, fan_in), shape, self.param_dtype)
        y = conv(
            x,
            kernel,
            strides=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            feature_group_count=g,
            impl=self.impl,
        )
        if self.use_bias:
            init = _resolve(self.bias_init, fan_in)
            y = y + self.param("bias", init, (self.features,), self.param_dtype)
        return y


class ConvTranspose(nn.Module):
    """x: [*batch, *spatial, C] -> [*batch, *out_spatial, features], as torch.nn.ConvTranspose2d.

    Output size per axis: (in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding
    + 1. The kernel is [*kernel_size, C, features / G]: torch's weight [C, features / G, kh, kw]
    moved channels-last, unflipped (`kernel = w.permute(2, 3, 0, 1)`), so weights copy across.

    Attributes:
      features: output channels O.
      kernel_size, strides, dilation: as in `Conv`.
      padding: an int or one per axis, symmetric (torch's `padding`: it crops the full output).
      output_padding: an int or one per axis, added at the end of each axis; each must be
        smaller than that axis' stride or dilation.
      feature_group_count: G; C and O multiples of G.
      use_bias, kernel_init, bias_init, param_dtype: as in `Conv` ("torch" uses torch's fan_in
        for transposed convolutions, prod(window) * O / G).
      impl: "adjoint" or "xla", how `dl.ops.conv.conv_transpose` takes gradients ("xla" for
        forward-mode differentiation).
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: int | Sequence[int] = 0
    output_padding: int | Sequence[int] = 0
    dilation: int | Sequence[int] = 1
    feature_group_count: int = 1
    use_bias: bool = True
    kernel_init: Init = "torch"
    bias_init: Init = "torch"
    param_dtype: jnp.dtype = jnp.float32
    impl: str = "adjoint"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        window = _window(self.kernel_size)
        g = self.feature_group_count
        if x.shape[-1] % g or self.features % g:
            raise ValueError(
                f"in ({x.shape[-1]}) and out ({self.features}) channels must be multiples of "
                f"feature_group_count={g}"
            )
        fan_in = math.prod(window) * self.features // g
        shape = (*window, x.shape[-1], self.features // g)
        kernel = self.param("kernel", _resolve(self.kernel_init, fan_in), shape, self.param_dtype)
        y = conv_transpose(
            x,
            kernel,
            strides=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            output_padding=self.output_padding,
            feature_group_count=g,
            impl=self.impl,
        )
        if self.use_bias:
            init = _resolve(self.bias_init, fan_in)
            y = y + self.param("bias", init, (self.features,), self.param_dtype)
        return y


def sequence_padding(padding: str | int | tuple[int, int], kernel_size: int, dilation: int):
    """(lo, hi) time padding of `SequenceConv`, independent of the padded length.

    'SAME': the stride-1 split of dilation * (k - 1) (extra step at the end; with stride s the
    output has ceil(L / s) steps); 'VALID': none; 'WIDE': dilation * (k - 1) on both sides, the
    "wide" convolution of Kalchbrenner et al. 2014 (L + dilation * (k - 1) outputs); 'CAUSAL':
    all of it before, so output t sees inputs up to t only; an int p: (p, p); or a pair.
    """
    span = dilation * (kernel_size - 1)
    if isinstance(padding, str):
        table = {
            "SAME": (span // 2, span - span // 2),
            "VALID": (0, 0),
            "WIDE": (span, span),
            "CAUSAL": (span, 0),
        }
        if padding.upper() not in table:
            raise ValueError(f"padding must be one of {sorted(table)}, an int or a pair")
        return table[padding.upper()]
    if isinstance(padding, int):
        return padding, padding
    lo, hi = padding
    return int(lo), int(hi)


class SequenceConv(nn.Module):
    """(x: [*batch, time, in], lengths: [*batch] or None) -> (y: [*batch, time', features],
    out_lengths: [*batch]).

    A 1-D convolution over time (Kalchbrenner, Grefenstette & Blunsom 2014, "A convolutional
    neural network for modelling sentences", sec. 2) for right-padded batches of sequences:
    steps t >= length are zeroed before the convolution, so each sequence sees exactly the zero
    padding it would see alone, and outputs at steps t >= out_length are zero (no bias there).
    So a sequence's outputs do not depend on how far its batch is padded, and equal
    `torch.nn.functional.conv1d` on that sequence alone (with the same explicit padding).

    out_length = max(0, floor((length + lo + hi - dilation (k - 1) - 1) / stride) + 1), with
    (lo, hi) from `sequence_padding` (which never depends on the padded length).

    Attributes:
      features: output channels.
      kernel_size: window length k (time steps).
      strides, dilation: ints.
      padding: 'SAME' (default), 'VALID', 'WIDE', 'CAUSAL', an int or (lo, hi); see
        `sequence_padding`.
      feature_group_count, use_bias, kernel_init, bias_init, impl, param_dtype: as in `Conv`.
    """

    features: int
    kernel_size: int
    strides: int = 1
    padding: str | int | tuple[int, int] = "SAME"
    dilation: int = 1
    feature_group_count: int = 1
    use_bias: bool = True
    kernel_init: Init = "torch"
    bias_init: Init = "torch"
    impl: str = "auto"
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, lengths: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        batch, t = x.shape[:-2], x.shape[-2]
        if lengths is None:
            lengths = jnp.full(batch, t, jnp.int32)
        if lengths.shape != batch:
            raise ValueError(f"lengths must have the batch shape {batch}, got {lengths.shape}")
        lo, hi = sequence_padding(self.padding, self.kernel_size, self.dilation)
        steps = jnp.arange(t)
        x = jnp.where((steps < lengths[..., None])[..., None], x, jnp.zeros((), x.dtype))
        y = Conv(
            self.features,
            (self.kernel_size,),
            strides=self.strides,
            padding=((lo, hi),),
            dilation=self.dilation,
            feature_group_count=self.feature_group_count,
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            impl=self.impl,
            param_dtype=self.param_dtype,
            name="conv",
        )(x)
        span = self.dilation * (self.kernel_size - 1)
        out_lengths = jnp.maximum((lengths + lo + hi - span - 1) // self.strides + 1, 0)
        out_lengths = jnp.minimum(out_lengths, y.shape[-2]).astype(lengths.dtype)
        keep = jnp.arange(y.shape[-2]) < out_lengths[..., None]
        return jnp.where(keep[..., None], y, jnp.zeros((), y.dtype)), out_lengths
