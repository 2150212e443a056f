"""Activation functions written from their formulas in `jnp`.

Elementwise activations map `x: [...]` to an array of the same shape and dtype. `softmax` and
`log_softmax` normalise along one axis. Every function is safe under `jit`, `vmap` and `grad`,
including at extreme inputs (|x| around 1e4), where a naive formula overflows.

Sparsemax (Martins & Astudillo, 2016) lives in `dl.ops.sparsemax`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def sigmoid(x: Array) -> Array:
    """Logistic function 1 / (1 + exp(-x)), elementwise.

    Both branches are written with exp(-|x|) <= 1, so neither the value nor its derivative ever
    evaluates exp of a large positive number (which would give inf and, in `grad`, inf * 0 = nan).
    """
    e = jnp.exp(-jnp.abs(x))
    return jnp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def tanh(x: Array) -> Array:
    """Hyperbolic tangent, elementwise (XLA's primitive: accurate near 0, saturates cleanly)."""
    return jnp.tanh(x)


def scaled_tanh(x: Array) -> Array:
    """LeCun et al. 1998, Appendix A: 1.7159 tanh(2x/3), so that f(+-1) = +-1 and the gain at 0
    is about 1.14 (LeNet-5's and Ciresan et al. 2010's units)."""
    return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


def relu(x: Array) -> Array:
    """Rectified linear unit max(x, 0); its derivative at exactly 0 is taken to be 0.

    `jnp.where` rather than `jnp.maximum`, whose derivative at a tie is 1/2.
    """
    return jnp.where(x > 0, x, 0.0)


def leaky_relu(x: Array, negative_slope: float = 0.01) -> Array:
    """x for x >= 0 and negative_slope * x below (Maas et al., 2013)."""
    return jnp.where(x >= 0, x, negative_slope * x)


def elu(x: Array, alpha: float = 1.0) -> Array:
    """Exponential linear unit (Clevert et al., 2016): x for x > 0, alpha * (exp(x) - 1) below.

    The exponential sees x clamped to <= 0 so that the unused branch never overflows (its inf
    would turn into nan in the gradient of `jnp.where`); the clamp is a `where`, not `minimum`,
    whose derivative at the tie x = 0 is 1/2 and would halve elu'(0) = alpha. expm1 keeps
    precision near 0.
    """
    negative_part = jnp.where(x > 0, 0.0, x)
    return jnp.where(x > 0, x, alpha * jnp.expm1(negative_part))


def softplus(x: Array) -> Array:
    """log(1 + exp(x)), elementwise, without overflow.

    For x > 0 it is x + log1p(exp(-x)), otherwise log1p(exp(x)): each branch only ever
    exponentiates a non-positive number. Each branch sees x clamped to its own side with `where`,
    so the unused one stays finite under `grad`, and at x = 0 the derivative is exactly
    sigmoid(0) = 1/2 (the form max(x, 0) + log1p(exp(-|x|)) gets 0 there, from the derivatives
    jax assigns to max and |x| at their kinks).
    """
    positive = jnp.where(x > 0, x, 0.0)
    negative = jnp.where(x > 0, 0.0, x)
    return jnp.where(x > 0, positive + jnp.log1p(jnp.exp(-positive)), jnp.log1p(jnp.exp(negative)))


def softsign(x: Array) -> Array:
    """x / (1 + |x|), elementwise."""
    return x / (1.0 + jnp.abs(x))


def identity(x: Array) -> Array:
    """The linear activation: returns x unchanged."""
    return x


def _shifted(x: Array, axis: int) -> Array:
    """x minus its maximum along `axis` (Goodfellow et al., 2016, Sec. 4.1).

    Softmax is invariant to adding a constant along `axis`, so the shift changes nothing but
    keeps every exponent <= 0. The maximum is a constant for differentiation (invariance again),
    which also avoids splitting a gradient between tied maxima. A row that is entirely -inf has
    no finite maximum; shifting it by 0 leaves the -inf entries as they are.
    """
    m = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    return x - jnp.where(jnp.isfinite(m), m, 0.0)


def softmax(x: Array, axis: int = -1) -> Array:
    """Normalised exponential exp(x_i) / sum_j exp(x_j) along `axis`.

    Args:
      x: [..., K, ...] logits; entries may be -inf (masked out), as long as each slice along
        `axis` has at least one finite entry.
      axis: the axis that sums to one.

    Returns:
      Probabilities with the shape and dtype of `x`.
    """
    e = jnp.exp(_shifted(x, axis))
    return e / jnp.sum(e, axis=axis, keepdims=True)


def log_softmax(x: Array, axis: int = -1) -> Array:
    """log(softmax(x)) computed as (x - m) - log(sum exp(x - m)), finite for finite logits.

    Unlike log(softmax(x)), this stays finite (and exact) for entries whose probability
    underflows to 0, e.g. x = [0, -1e4].

    Args:
      x: [..., K, ...] logits.
      axis: the axis being normalised.

    Returns:
      Log-probabilities with the shape and dtype of `x`.
    """
    s = _shifted(x, axis)
    return s - jnp.log(jnp.sum(jnp.exp(s), axis=axis, keepdims=True))


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "sigmoid": sigmoid,
    "tanh": tanh,
    "scaled_tanh": scaled_tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "softplus": softplus,
    "softsign": softsign,
    "identity": identity,
}


def get_activation(name: str) -> Callable[[Array], Array]:
    """The elementwise activation registered under `name` in `ACTIVATIONS`."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; valid names: {', '.join(sorted(ACTIVATIONS))}"
        ) from None
