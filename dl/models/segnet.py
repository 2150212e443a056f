"""Encoder-decoder nets for semantic segmentation, NHWC: one encoder, three decoders.

The encoder is `len(widths)` blocks of 3x3 'SAME' conv -> batch norm (optional) -> ReLU -> 2x2
max pool (stride 2, floor: a 21-pixel axis pools to 10) that remembers its argmax indices. The
decoder mirrors it: at each level, deepest first, the features are upsampled to the size the
encoder had before that pool, then a 3x3 conv -> batch norm -> ReLU maps them to the width of the
level above (the first block's width at the top); a 1x1 conv gives the per-pixel logits. The
decoders differ only in the upsampling:

* "deconv": a learned 4x4 transposed convolution, stride 2, padding 1 (output 2n, plus
  `output_padding` 1 where the pooled axis was odd), as the deconvolution layers of Noh, Hong &
  Han 2015 ("Learning deconvolution network for semantic segmentation") and the learned
  upsampling of FCN;
* "unpool": max unpooling to the encoder's argmax positions (zeros elsewhere), SegNet's
  (Badrinarayanan, Kendall & Cipolla 2017, sec. 3), no upsampling parameters;
* "bilinear": fixed bilinear interpolation (`jax.image.resize`), as FCN's (Long, Shelhamer &
  Darrell 2015) bilinear-initialized upsampling, no upsampling parameters.

None of the decoders concatenates encoder features (no U-Net/FCN-8s skips): only SegNet's pooling
indices cross from encoder to decoder, which is the comparison the SegNet paper makes.

x: [*batch, H, W, C] -> logits [*batch, H, W, classes] for any H, W (odd sizes included).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from dl.nn.conv import Conv, ConvTranspose
from dl.nn.norm import BatchNorm
from dl.nn.pool import max_pool_with_argmax, max_unpool

DECODERS = ("deconv", "unpool", "bilinear")


class Encoder(nn.Module):
    """Conv blocks with 2x2 max pools. x: [*batch, H, W, C] -> (features [*batch, H / 2^L,
    W / 2^L, widths[-1]], per block (indices [*batch, h, w, width] of the pool, (H_l, W_l) the
    size before it))."""

    widths: Sequence[int] = (16, 32, 64)
    batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False):
        skips = []
        for i, w in enumerate(self.widths):
            x = Conv(w, 3, padding="SAME", use_bias=not self.batch_norm, name=f"conv{i}")(x)
            if self.batch_norm:
                x = BatchNorm(name=f"bn{i}")(x, train=train)
            x = nn.relu(x)
            size = x.shape[-3:-1]
            x, idx = max_pool_with_argmax(x, 2)
            skips.append((idx, size))
        return x, skips


class SegmentationNet(nn.Module):
    """`Encoder` + a mirrored decoder (module docstring). x: [*batch, H, W, C] -> logits
    [*batch, H, W, classes].

    Attributes:
      decoder: one of `DECODERS`.
      widths: encoder widths, top to bottom; the decoder's are the same in reverse.
      classes: output classes per pixel (11 for `dl.data.scenes`).
      batch_norm: batch norm after every 3x3 conv (statistics in the "batch_stats" collection).
    """

    decoder: str = "unpool"
    widths: Sequence[int] = (16, 32, 64)
    classes: int = 11
    batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder!r}; valid: {', '.join(DECODERS)}")
        x, skips = Encoder(self.widths, self.batch_norm, name="encoder")(x, train=train)
        outs = list(self.widths[:-1])[::-1] + [self.widths[0]]
        for level, ((idx, size), out) in enumerate(zip(skips[::-1], outs)):
            x = self._upsample(x, idx, size, level)
            x = Conv(out, 3, padding="SAME", use_bias=not self.batch_norm, name=f"dec{level}")(x)
            if self.batch_norm:
                x = BatchNorm(name=f"dec_bn{level}")(x, train=train)
            x = nn.relu(x)
        return Conv(self.classes, 1, name="classifier")(x)

    def _upsample(self, x: jax.Array, idx: jax.Array, size: tuple[int, int], level: int):
        if self.decoder == "unpool":
            return max_unpool(x, idx, size)
        if self.decoder == "bilinear":
            return jax.image.resize(x, (*x.shape[:-3], *size, x.shape[-1]), "bilinear")
        extra = tuple(s - 2 * n for s, n in zip(size, x.shape[-3:-1]))  # 0 or 1 per axis
        return ConvTranspose(
            x.shape[-1], 4, strides=2, padding=1, output_padding=extra, name=f"up{level}"
        )(x)
