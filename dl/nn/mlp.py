"""The multilayer perceptron (Rumelhart, Hinton & Williams 1986) with the modern options.

    x -> [Dense -> Norm? -> act -> Dropout?] x len(hidden) -> Dense(out)

With `residual=True` each hidden block whose input and output widths agree adds its input
(He et al. 2016); with `norm="layer"` the block is pre-normed, x + f(LN(x)), the form that keeps
very deep stacks trainable (used in `vanishing_gradients`).
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import flax.linen as nn
import jax

from dl.ops.activations import get_activation
from dl.ops.initializers import get_initializer


class MLP(nn.Module):
    """x: [batch, in] -> logits: [batch, out].

    Attributes:
      hidden: widths of the hidden layers.
      out: output width (classes).
      activation: a name in `dl.ops.activations.ACTIVATIONS`.
      dropout: inverted-dropout rate after each hidden activation (Srivastava et al. 2014).
      norm: None, "batch" (Ioffe & Szegedy 2015) or "layer" (Ba et al. 2016).
      residual: add the block input where widths agree.
      kernel_init: a name in `dl.ops.initializers.INITIALIZERS`, e.g. "glorot_uniform".
      input_dropout: dropout rate on the inputs (0.2 in Srivastava et al. 2014).
    """

    hidden: Sequence[int]
    out: int
    activation: str = "relu"
    dropout: float = 0.0
    norm: str | None = None
    residual: bool = False
    kernel_init: str = "lecun_normal"
    input_dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if self.norm not in (None, "batch", "layer"):
            raise ValueError(f"norm must be None, 'batch' or 'layer', got {self.norm!r}")
        # Dense maps the last axis of any rank, so an image batch [B, H, W, C] would run and be
        # wrong; the checks cost nothing under jit/vmap (static shapes, at trace time).
        chex.assert_rank(x, 2, custom_message="MLP input x: [batch, in]")
        batch = x.shape[0]
        act = get_activation(self.activation)
        init = get_initializer(self.kernel_init)
        x = nn.Dropout(self.input_dropout, deterministic=not train)(x)
        for i, width in enumerate(self.hidden):
            skip = x
            if self.residual and self.norm == "layer" and x.shape[-1] == width:
                h = nn.LayerNorm(name=f"norm_{i}")(x)
                h = act(nn.Dense(width, kernel_init=init, name=f"dense_{i}")(h))
            else:
                h = nn.Dense(width, kernel_init=init, name=f"dense_{i}")(x)
                if self.norm == "batch":
                    h = nn.BatchNorm(use_running_average=not train, name=f"norm_{i}")(h)
                elif self.norm == "layer":
                    h = nn.LayerNorm(name=f"norm_{i}")(h)
                h = act(h)
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
            x = skip + h if self.residual and skip.shape[-1] == width else h
        logits = nn.Dense(self.out, kernel_init=init, name="head")(x)
        chex.assert_shape(logits, (batch, self.out))
        return logits
