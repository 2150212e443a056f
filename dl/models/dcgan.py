"""Convolutional GANs for 28x28 digits, NHWC: the DCGAN pair and the CycleGAN pair.

* `Generator`, `Discriminator`: DCGAN (Radford, Metz & Chintala 2016, "Unsupervised
  representation learning with deep convolutional generative adversarial networks", sec. 3 and
  Fig. 1) sized for MNIST: G maps z -> dense -> 7x7 maps -> stride-2 transposed convolutions ->
  14x14 -> 28x28, batch norm and ReLU in between, tanh (or sigmoid) out; D is stride-2
  convolutions (no pooling) with leaky ReLU 0.2 and batch norm after all but the first, then one
  logit. Weights N(0, 0.02) as in the paper, biases 0.
  Conditional (Mirza & Osindero 2014, "Conditional generative adversarial nets", sec. 4.1):
  with `classes > 0` G takes the one-hot label concatenated to z; D takes it either as 10 extra
  constant input planes (`conditioning="concat"`, the paper's "y fed into both the
  discriminator and generator as additional input layer") or by projection (`"projection"`,
  Miyato & Koyama 2018: logit = w . h + embed(y) . h on D's last features h).
* `CycleGenerator`, `PatchDiscriminator`: CycleGAN (Zhu, Park, Isola & Efros 2017, "Unpaired
  image-to-image translation using cycle-consistent adversarial networks", sec. 4 and appendix
  7.2) shrunk to 28x28: G is conv 7x7 -> two stride-2 convs to 7x7 -> residual blocks ->
  transposed convs back to 28x28 -> conv 7x7 -> tanh, instance norm throughout (no running
  statistics: `extra` stays empty); D is a PatchGAN of stride-2 4x4 convs giving one logit per
  overlapping patch ([*batch, 7, 7]). One departure: the paper's G is fully convolutional, so
  each output pixel sees a bounded window and cannot move content across the image; for
  geometric translations (the 90-degree rotation of `experiments/cyclegan_digits.py`) G's 7x7
  bottleneck can pass through a dense layer (`global_mixing=True`), which lets any position
  reach any other.

All take x: [*batch, 28, 28, 1] (or z: [*batch, latent]) with any leading batch axes and a
`train` keyword like `dl.models.cnn`; batch statistics live in the `batch_stats` collection
(`TrainState.extra`).
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.nn.conv import Conv, ConvTranspose
from dl.nn.norm import BatchNorm
from dl.ops.initializers import scaled_normal

IMAGE = (28, 28, 1)
_W = scaled_normal(0.02)  # DCGAN's N(0, 0.02) weights (sec. 4)


def _one_hot(y: jax.Array | None, classes: int, batch: tuple, dtype) -> jax.Array:
    if y is None:
        raise ValueError(f"a conditional model (classes={classes}) needs labels y: [*batch]")
    chex.assert_shape(y, batch, custom_message="labels y: [*batch]")
    return jax.nn.one_hot(y, classes, dtype=dtype)


class Generator(nn.Module):
    """DCGAN generator (module docstring). z: [*batch, latent] (+ y: [*batch] int labels when
    classes > 0) -> images [*batch, 28, 28, 1] in (-1, 1) (tanh) or (0, 1) (sigmoid).

    [z; onehot(y)] -> dense 7*7*c0 -> BN -> ReLU -> convT 4x4/2 c1 -> BN -> ReLU -> 14x14 ->
    convT 4x4/2 1 -> 28x28 -> output.

    Attributes:
      channels: maps at 7x7 and at 14x14 (the paper's widths halve as resolution doubles).
      classes: 0 = unconditional; else the number of labels concatenated (one-hot) to z.
      output: "tanh" (the paper's, data scaled to [-1, 1]) or "sigmoid" (data in [0, 1]).
    """

    channels: tuple[int, int] = (128, 64)
    classes: int = 0
    output: str = "tanh"

    @nn.compact
    def __call__(self, z: jax.Array, y: jax.Array | None = None, *, train: bool = False):
        batch = z.shape[:-1]
        if self.classes:
            z = jnp.concatenate([z, _one_hot(y, self.classes, batch, z.dtype)], axis=-1)
        c0, c1 = self.channels
        h = nn.Dense(7 * 7 * c0, use_bias=False, kernel_init=_W, name="project")(z)
        h = nn.relu(BatchNorm(name="bn_project")(h, train=train))
        h = h.reshape(*batch, 7, 7, c0)
        h = ConvTranspose(c1, 4, strides=2, padding=1, use_bias=False, kernel_init=_W, name="up_0")(
            h
        )  # [*, 14, 14, c1]
        h = nn.relu(BatchNorm(name="bn_up_0")(h, train=train))
        h = ConvTranspose(
            1, 4, strides=2, padding=1, kernel_init=_W, bias_init="zeros", name="up_1"
        )(h)  # [*, 28, 28, 1]
        chex.assert_shape(h, (*batch, *IMAGE))
        if self.output == "tanh":
            return jnp.tanh(h)
        if self.output == "sigmoid":
            return nn.sigmoid(h)
        raise ValueError(f"output must be 'tanh' or 'sigmoid', got {self.output!r}")


class Discriminator(nn.Module):
    """DCGAN discriminator (module docstring). x: [*batch, 28, 28, 1] (+ y: [*batch] labels when
    classes > 0) -> logits [*batch] (log D / (1 - D)).

    x -> conv 4x4/2 c0 -> lrelu -> 14x14 -> conv 4x4/2 c1 -> [BN] -> lrelu -> 7x7 -> flatten ->
    dense 1 (+ projection).

    Attributes:
      channels: maps at 14x14 and 7x7.
      classes: 0 = unconditional; else the number of labels.
      conditioning: "concat" (one-hot label as `classes` constant input planes) or "projection"
        (logit += embed(y) . h, h the flattened 7x7 features).
      batch_norm: batch norm after the second conv (the paper: on every layer but D's input).
      slope: leaky ReLU slope (the paper's 0.2).
    """

    channels: tuple[int, int] = (64, 128)
    classes: int = 0
    conditioning: str = "concat"
    batch_norm: bool = True
    slope: float = 0.2

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array | None = None, *, train: bool = False):
        chex.assert_shape(x, (..., *IMAGE), custom_message="Discriminator x: [*batch, 28, 28, 1]")
        batch = x.shape[:-3]
        if self.conditioning not in ("concat", "projection"):
            raise ValueError(
                f"conditioning must be 'concat' or 'projection', got {self.conditioning!r}"
            )
        onehot = _one_hot(y, self.classes, batch, x.dtype) if self.classes else None
        if onehot is not None and self.conditioning == "concat":
            planes = jnp.broadcast_to(onehot[..., None, None, :], (*batch, 28, 28, self.classes))
            x = jnp.concatenate([x, planes], axis=-1)
        c0, c1 = self.channels
        h = Conv(c0, 4, strides=2, padding=1, kernel_init=_W, bias_init="zeros", name="conv_0")(x)
        h = nn.leaky_relu(h, self.slope)  # [*, 14, 14, c0]
        h = Conv(
            c1,
            4,
            strides=2,
            padding=1,
            use_bias=not self.batch_norm,
            kernel_init=_W,
            bias_init="zeros",
            name="conv_1",
        )(h)
        if self.batch_norm:
            h = BatchNorm(name="bn_1")(h, train=train)
        h = nn.leaky_relu(h, self.slope)  # [*, 7, 7, c1]
        h = h.reshape(*batch, 7 * 7 * c1)
        logit = nn.Dense(1, kernel_init=_W, name="head")(h)[..., 0]
        if onehot is not None and self.conditioning == "projection":
            embed = nn.Dense(7 * 7 * c1, use_bias=False, kernel_init=_W, name="embed")(onehot)
            logit = logit + jnp.sum(embed * h, axis=-1)
        chex.assert_shape(logit, batch)
        return logit


class _ResBlock(nn.Module):
    """x + IN(conv3x3(ReLU(IN(conv3x3(x))))), CycleGAN's residual block (appendix 7.2)."""

    features: int

    @nn.compact
    def __call__(self, x):
        h = Conv(self.features, 3, padding=1, kernel_init=_W, bias_init="zeros")(x)
        h = nn.relu(nn.InstanceNorm(use_scale=True, use_bias=True)(h))
        h = Conv(self.features, 3, padding=1, kernel_init=_W, bias_init="zeros")(h)
        return x + nn.InstanceNorm(use_scale=True, use_bias=True)(h)


class CycleGenerator(nn.Module):
    """CycleGAN generator for 28x28 (module docstring): x: [*batch, 28, 28, 1] in [-1, 1] ->
    [*batch, 28, 28, 1] in (-1, 1).

    conv 7x7 c -> IN -> ReLU -> conv 3x3/2 2c -> IN -> ReLU (14x14) -> conv 3x3/2 4c -> IN ->
    ReLU (7x7) -> [dense mixing] -> `blocks` residual blocks -> convT 3x3/2 2c -> IN -> ReLU ->
    convT 3x3/2 c -> IN -> ReLU -> conv 7x7 1 -> tanh.

    Attributes:
      features: c, the first conv's maps (the paper's 64; 2c and 4c after each downsampling).
      blocks: residual blocks at 7x7 (the paper's 6 at 128x128; fewer suffice at 7x7).
      global_mixing: a dense layer over the whole 7x7x4c bottleneck (module docstring: lets G
        move content across the image, as a rotation needs), added as a residual.
      mixing_width: width of that dense layer's hidden units.
    """

    features: int = 16
    blocks: int = 2
    global_mixing: bool = True
    mixing_width: int = 256

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train  # instance norm: the same in training and evaluation
        chex.assert_shape(x, (..., *IMAGE), custom_message="CycleGenerator x: [*batch, 28, 28, 1]")
        batch = x.shape[:-3]
        x = x.reshape(-1, *IMAGE)  # instance norm and convs on one flat batch axis
        c = self.features

        def norm_relu(h):
            return nn.relu(nn.InstanceNorm(use_scale=True, use_bias=True)(h))

        h = norm_relu(Conv(c, 7, padding=3, kernel_init=_W, bias_init="zeros")(x))
        h = norm_relu(Conv(2 * c, 3, strides=2, padding=1, kernel_init=_W, bias_init="zeros")(h))
        h = norm_relu(Conv(4 * c, 3, strides=2, padding=1, kernel_init=_W, bias_init="zeros")(h))
        if self.global_mixing:  # [n, 7, 7, 4c] -> dense -> back, as a residual
            flat = h.reshape(h.shape[0], -1)
            m = nn.relu(nn.Dense(self.mixing_width, kernel_init=_W, name="mix_in")(flat))
            m = nn.Dense(flat.shape[-1], kernel_init=_W, name="mix_out")(m)
            h = nn.relu(h + m.reshape(h.shape))
        for i in range(self.blocks):
            h = _ResBlock(4 * c, name=f"res_{i}")(h)
        for i, f in enumerate((2 * c, c)):  # 7 -> 14 -> 28: (in-1)*2 - 2 + 3 + 1
            h = ConvTranspose(
                f,
                3,
                strides=2,
                padding=1,
                output_padding=1,
                kernel_init=_W,
                bias_init="zeros",
                name=f"up_{i}",
            )(h)
            h = norm_relu(h)
        h = Conv(1, 7, padding=3, kernel_init=_W, bias_init="zeros", name="out")(h)
        return jnp.tanh(h).reshape(*batch, *IMAGE)


class PatchDiscriminator(nn.Module):
    """PatchGAN for 28x28 (module docstring): x: [*batch, 28, 28, 1] -> logits [*batch, 7, 7],
    one per overlapping patch (receptive field 26x26 pixels, centres 4 apart).

    conv 4x4/2 c -> lrelu (14x14) -> conv 4x4/2 2c -> IN -> lrelu (7x7) -> conv 3x3 2c -> IN ->
    lrelu -> conv 3x3 1.

    Attributes:
      features: c, the first conv's maps.
      slope: leaky ReLU slope (0.2, as the paper's).
    """

    features: int = 32
    slope: float = 0.2

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        chex.assert_shape(x, (..., *IMAGE), custom_message="PatchDiscriminator x: [*, 28, 28, 1]")
        batch = x.shape[:-3]
        h = x.reshape(-1, *IMAGE)
        c = self.features
        h = Conv(c, 4, strides=2, padding=1, kernel_init=_W, bias_init="zeros")(h)
        h = nn.leaky_relu(h, self.slope)
        for stride in (2, 1):
            pad, k = (1, 4) if stride == 2 else (1, 3)
            h = Conv(2 * c, k, strides=stride, padding=pad, kernel_init=_W, bias_init="zeros")(h)
            h = nn.leaky_relu(nn.InstanceNorm(use_scale=True, use_bias=True)(h), self.slope)
        h = Conv(1, 3, padding=1, kernel_init=_W, bias_init="zeros", name="out")(h)
        return h.reshape(*batch, 7, 7)
