"""The plain deep MLPs of Ciresan, Meier, Gambardella & Schmidhuber (2010), "Deep, big, simple
neural nets excel on handwritten digit recognition", Neural Computation 22(12).

x: [*batch, 28, 28, 1] -> flatten 784 -> [Dense -> A tanh(S a)] x len(hidden) -> Dense 10.
The squashing is the scaled hyperbolic tangent y(a) = A tanh(B a) with A = 1.7159, B = 2/3
(the paper's section 2, after LeCun et al. 1998); weights start uniform in [-0.05, 0.05] (the
paper's initialization) and biases at 0. The paper trains the output with softmax +
cross-entropy on 10 units; so do we (`dl.objectives.classification`).
Their widths (Table 1): 1000-500, 1500-1000-500, 2000-1500-1000-500, 2500-2000-1500-1000-500.
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.ops.activations import get_activation

IMAGE = (28, 28, 1)

# Table 1 of the paper: hidden widths by row.
TABLE_1: dict[int, tuple[int, ...]] = {
    1: (1000, 500),
    2: (1500, 1000, 500),
    3: (2000, 1500, 1000, 500),
    4: (2500, 2000, 1500, 1000, 500),
}


class CiresanMLP(nn.Module):
    """x: [*batch, 28, 28, 1] -> logits [*batch, classes] (module docstring).

    Attributes:
      hidden: hidden widths (a row of `TABLE_1`).
      classes: output units.
      activation: "scaled_tanh" (the paper's) or a name in `dl.ops.activations.ACTIVATIONS`.
      init_scale: weights start U[-init_scale, init_scale] (paper: 0.05).
    """

    hidden: Sequence[int]
    classes: int = 10
    activation: str = "scaled_tanh"
    init_scale: float = 0.05

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train  # no dropout or batch norm: the paper's nets are plain
        chex.assert_shape(x, (..., *IMAGE), custom_message="CiresanMLP x: [*batch, 28, 28, 1]")
        batch = x.shape[:-3]
        act = get_activation(self.activation)
        init = nn.initializers.uniform(2.0 * self.init_scale)  # U[0, 2s), shifted below

        def kernel_init(key, shape, dtype=jnp.float32):
            return init(key, shape, dtype) - self.init_scale

        x = x.reshape(*batch, -1)
        for i, width in enumerate(self.hidden):
            x = act(nn.Dense(width, kernel_init=kernel_init, name=f"dense_{i}")(x))
        logits = nn.Dense(self.classes, kernel_init=kernel_init, name="head")(x)
        chex.assert_shape(logits, (*batch, self.classes))
        return logits
