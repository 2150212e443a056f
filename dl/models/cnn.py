"""Convolutional classifiers for 28x28 digits, NHWC: LeNet-5 and the MNIST benchmark CNN.

* `LeNet5` (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document
  recognition", sec. II.B, Fig. 2): 32x32 input, C1 6@5x5 -> S2 2x2 -> C3 16@5x5 -> S4 2x2 ->
  C5 120@5x5 -> F6 84 -> 10. Where this differs from the paper, and why:
  - pixels in [0, 1] are mapped to the paper's input levels, background -0.1 and foreground
    1.175 ("the mean input roughly 0, and the variance roughly 1", sec. II.B), which keeps the
    tanh units off saturation (`paper_input=False` keeps them as they are);
  - the 28x28 digit is padded with the background level by 2 pixels on every side to 32x32, as
    the paper centres the MNIST digits in a 32x32 field (so C1 sees 'VALID' 5x5 windows of the
    padded image, and the stroke ends reach the centre of C3's receptive fields);
  - S2 and S4 are plain 2x2 average pools with no parameters: the paper's subsampling units
    multiply the 4-pixel sum by a trainable coefficient and add a trainable bias before the
    squashing; the next layer's weights and biases absorb both, up to the nonlinearity;
  - C3 connects every S2 map to every C3 map (16 * (6 * 25 + 1) = 2,416 parameters) instead of
    the paper's sparse table (Table I, 1,516 parameters), which the paper used to break symmetry
    and save computation; random initialization breaks the symmetry anyway;
  - the output is a linear layer of 10 logits trained with cross-entropy instead of the paper's
    Euclidean RBF units with hand-drawn 7x12 targets and its MAP criterion;
  - the squashing is the paper's A tanh(S a) with A = 1.7159, S = 2/3 (Appendix A) by default
    ("scaled_tanh"); "tanh" and "relu" are the options.
  Parameters: C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850 = 61,706.
* `MnistCNN`: two 5x5 'SAME' convolutions (32, 64 maps), each ReLU + 2x2 max pool, then dense
  1024 + ReLU (+ dropout) and 10 logits: the model of TensorFlow's "Deep MNIST for experts"
  tutorial, the usual MNIST CNN benchmark. 832 + 51,264 + 3,212,288 + 10,250 = 3,274,634
  parameters without batch norm. `features` gives the 1024 penultimate activations (transfer
  learning, FID-style statistics).

Both take x: [*batch, 28, 28, 1] with any number of leading batch axes and return logits
[*batch, 10]; `train` is a keyword as in `dl.nn.mlp.MLP`, so `dl.objectives.classification`
runs them unchanged (batch statistics ride in `state.extra`).
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.nn.conv import Conv
from dl.nn.norm import BatchNorm, SpatialDropout
from dl.nn.pool import avg_pool, max_pool
from dl.ops.activations import get_activation

IMAGE = (28, 28, 1)  # the MNIST digit both models take


def _check_image(x: jax.Array, who: str) -> tuple[int, ...]:
    chex.assert_shape(x, (..., *IMAGE), custom_message=f"{who} input x: [*batch, 28, 28, 1]")
    return x.shape[:-3]


class LeNet5(nn.Module):
    """LeNet-5 (module docstring). x: [*batch, 28, 28, 1] -> logits [*batch, 10].

    Attributes:
      activation: "scaled_tanh" (the paper's), "tanh" or "relu", after C1, C3, C5 and F6.
      paper_input: map pixels x in [0, 1] to 1.275 x - 0.1 (background -0.1, ink 1.175).
      classes: output units.
      conv_impl: `dl.nn.conv.Conv`'s impl ("xla" | "im2col" | "im2col_vjp"); same values.
    """

    activation: str = "scaled_tanh"
    paper_input: bool = True
    classes: int = 10
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train  # no dropout or batch norm: the signature matches the other models
        batch = _check_image(x, "LeNet5")
        act = get_activation(self.activation)
        lead = [(0, 0)] * len(batch)
        background = -0.1 if self.paper_input else 0.0
        if self.paper_input:
            x = x * (1.175 - background) + background
        # the 32x32 field of the paper, filled with the background level
        x = jnp.pad(x, [*lead, (2, 2), (2, 2), (0, 0)], constant_values=background)
        x = act(Conv(6, 5, impl=self.conv_impl, name="c1")(x))  # [*, 28, 28, 6]
        x = avg_pool(x, 2)  # S2: [*, 14, 14, 6]
        x = act(Conv(16, 5, impl=self.conv_impl, name="c3")(x))  # [*, 10, 10, 16]
        x = avg_pool(x, 2)  # S4: [*, 5, 5, 16]
        x = act(Conv(120, 5, impl=self.conv_impl, name="c5")(x))  # [*, 1, 1, 120]
        x = x.reshape(*batch, 120)
        x = act(nn.Dense(84, name="f6")(x))
        logits = nn.Dense(self.classes, name="output")(x)
        chex.assert_shape(logits, (*batch, self.classes))
        return logits


class MnistCNN(nn.Module):
    """The MNIST benchmark CNN (module docstring). x: [*batch, 28, 28, 1] -> logits [*batch, 10],
    or the penultimate features [*batch, hidden] with `return_features=True` (or `features`).

    conv 5x5 32 -> [BN] -> ReLU -> max pool 2 -> conv 5x5 64 -> [BN] -> ReLU -> max pool 2 ->
    [spatial dropout] -> flatten 7*7*64 -> dense hidden -> [BN] -> ReLU -> [dropout] -> dense 10.

    Attributes:
      channels: maps of the two convolutions.
      hidden: width of the dense layer (the features' width).
      classes: output units.
      batch_norm: `dl.nn.norm.BatchNorm` before each ReLU (Ioffe & Szegedy 2015); the conv and
        dense layers before it then have no bias (BN's shift replaces it).
      dropout: inverted-dropout rate on the hidden features, train only (the tutorial's 0.5).
      spatial_dropout: `SpatialDropout` rate on the second pool's maps, train only.
      conv_impl: `dl.nn.conv.Conv`'s impl ("xla" | "im2col" | "im2col_vjp"); same values.
      readout: how the last maps reach the dense layer. "flatten" (the benchmark's 7*7*maps
        vector: each dense weight is tied to one position) or "global_max" (the maximum of each
        map over all positions, Lin et al. 2014's global pooling: a shift of the input moves the
        maps, not their maxima, so the readout is shift-invariant up to border effects). With
        "global_max" the input may be any [*batch, H, W, 1] (e.g. a 60x60 canvas) and
        `channels` any number of conv + pool stages.
    """

    channels: tuple[int, int] = (32, 64)
    hidden: int = 1024
    classes: int = 10
    batch_norm: bool = False
    dropout: float = 0.0
    spatial_dropout: float = 0.0
    conv_impl: str = "xla"
    readout: str = "flatten"

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, return_features: bool = False
    ) -> jax.Array:
        if self.readout == "global_max":  # any image size: the readout forgets positions
            chex.assert_shape(x, (..., None, None, 1), custom_message="MnistCNN x: [*b, H, W, 1]")
            batch = x.shape[:-3]
        else:
            batch = _check_image(x, "MnistCNN")
        bias = not self.batch_norm
        for i, c in enumerate(self.channels):
            x = Conv(c, 5, padding="SAME", use_bias=bias, impl=self.conv_impl, name=f"conv_{i}")(x)
            if self.batch_norm:
                x = BatchNorm(name=f"bn_{i}")(x, train=train)
            x = max_pool(nn.relu(x), 2)
        if self.spatial_dropout:
            x = SpatialDropout(self.spatial_dropout)(x, train=train)
        if self.readout == "global_max":
            x = x.max(axis=(-3, -2))  # [*batch, channels[-1]]
        elif self.readout == "flatten":
            x = x.reshape(*batch, -1)  # [*batch, 7 * 7 * channels[-1]]
        else:
            raise ValueError(f"readout must be 'flatten' or 'global_max', got {self.readout!r}")
        x = nn.Dense(self.hidden, use_bias=bias, name="dense")(x)
        if self.batch_norm:
            x = BatchNorm(name="bn_dense")(x, train=train)
        x = nn.relu(x)
        chex.assert_shape(x, (*batch, self.hidden))
        if return_features:
            return x
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        logits = nn.Dense(self.classes, name="head")(x)
        chex.assert_shape(logits, (*batch, self.classes))
        return logits

    def features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """x: [*batch, 28, 28, 1] -> the ReLU'd dense features [*batch, hidden] (before dropout):
        `model.apply(variables, x, method="features")`."""
        return self(x, train=train, return_features=True)


# Builders by name (DESIGN.md: one explicit registry).
CNNS: dict[str, type[nn.Module]] = {"lenet5": LeNet5, "mnist_cnn": MnistCNN}


def get_cnn(name: str, **kwargs) -> nn.Module:
    """The model registered under `name` in `CNNS`, built with `kwargs`."""
    if name not in CNNS:
        raise ValueError(f"unknown CNN {name!r}; valid names: {', '.join(CNNS)}")
    return CNNS[name](**kwargs)
