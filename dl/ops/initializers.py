"""Weight initializers written from their papers' formulas.

Every public name is a *factory* returning a flax-compatible initializer
``init(key, shape, dtype=jnp.float32) -> Array``, so it plugs in as
``nn.Dense(..., kernel_init=glorot_uniform())`` exactly like ``flax.linen.initializers``.

Fan convention (the same as jax, Keras and PyTorch): the last axis is the output axis.

* Dense kernel ``[in, out]``: ``fan_in = in``, ``fan_out = out``.
* Conv kernel ``[*window, in_channels, out_channels]`` (flax's HWIO): with
  ``receptive_field = prod(window)``, ``fan_in = receptive_field * in_channels`` (= prod of all
  axes but the last) and ``fan_out = receptive_field * out_channels``.

Normal-distribution initializers here draw an untruncated Gaussian as in the papers; flax's
defaults for ``lecun_normal``/``he_normal`` draw a truncated normal rescaled to the same
variance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import jax
import jax.numpy as jnp

Array = jax.Array


class Initializer(Protocol):
    def __call__(self, key: Array, shape: Sequence[int], dtype=jnp.float32) -> Array: ...


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a kernel shape ``[*window, in, out]`` (see module docstring)."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"fan-based initializers need a kernel shape [..., in, out], got {shape}")
    receptive_field = math.prod(shape[:-2])
    return receptive_field * shape[-2], receptive_field * shape[-1]


def _uniform(limit_fn: Callable[[int, int], float]) -> Initializer:
    """U[-a, a] with ``a = limit_fn(fan_in, fan_out)``; its variance is a^2 / 3."""

    def init(key, shape, dtype=jnp.float32):
        limit = limit_fn(*fans(shape))
        return jax.random.uniform(key, tuple(shape), dtype, minval=-limit, maxval=limit)

    return init


def _normal(std_fn: Callable[[int, int], float]) -> Initializer:
    """N(0, s^2) with ``s = std_fn(fan_in, fan_out)``."""

    def init(key, shape, dtype=jnp.float32):
        return std_fn(*fans(shape)) * jax.random.normal(key, tuple(shape), dtype)

    return init


def glorot_uniform(gain: float = 1.0) -> Initializer:
    """Glorot & Bengio (2010) "normalized initialization", eq. 16:
    ``U[-a, a]`` with ``a = gain * sqrt(6 / (fan_in + fan_out))``, i.e. variance
    ``gain^2 * 2 / (fan_in + fan_out)``. ``gain`` scales for the nonlinearity (1 for tanh/linear).
    """
    return _uniform(lambda fi, fo: gain * math.sqrt(6.0 / (fi + fo)))


def glorot_normal(gain: float = 1.0) -> Initializer:
    """Gaussian with the Glorot variance: ``N(0, gain^2 * 2 / (fan_in + fan_out))``."""
    return _normal(lambda fi, fo: gain * math.sqrt(2.0 / (fi + fo)))


def standard_uniform() -> Initializer:
    """Glorot & Bengio (2010) eq. 1, the then-"standard" heuristic:
    ``U[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` (variance ``1 / (3 fan_in)``)."""
    return _uniform(lambda fi, fo: 1.0 / math.sqrt(fi))


def he_normal() -> Initializer:
    """He et al. (2015) eq. 10 for ReLU layers: ``N(0, 2 / fan_in)``."""
    return _normal(lambda fi, fo: math.sqrt(2.0 / fi))


def he_uniform() -> Initializer:
    """Uniform with the He variance ``2 / fan_in``: ``U[-sqrt(6/fan_in), sqrt(6/fan_in)]``."""
    return _uniform(lambda fi, fo: math.sqrt(6.0 / fi))


def lecun_normal() -> Initializer:
    """LeCun et al. (1998, "Efficient BackProp", sec. 4.6): ``N(0, 1 / fan_in)``."""
    return _normal(lambda fi, fo: math.sqrt(1.0 / fi))


def lecun_uniform() -> Initializer:
    """Uniform with the LeCun variance ``1 / fan_in``: ``U[-sqrt(3/fan_in), sqrt(3/fan_in)]``."""
    return _uniform(lambda fi, fo: math.sqrt(3.0 / fi))


def scaled_normal(std: float = 0.01) -> Initializer:
    """``N(0, std^2)`` independent of the fans (the small random init of early papers)."""

    def init(key, shape, dtype=jnp.float32):
        return std * jax.random.normal(key, tuple(shape), dtype)

    return init


def orthogonal(gain: float = 1.0) -> Initializer:
    """Random orthogonal matrix times ``gain`` (Saxe, McClelland & Ganguli 2014).

    The kernel is viewed as a matrix ``[fan_in, out]`` (all axes but the last flattened into
    rows). A tall matrix (rows >= columns) gets orthonormal columns, ``W^T W = gain^2 I``; a wide
    one gets orthonormal rows, ``W W^T = gain^2 I``.

    Sampled as the Q factor of the QR decomposition of a Gaussian matrix, with each column of Q
    multiplied by the sign of the matching diagonal entry of R. Without that fix Q is not
    uniformly (Haar) distributed, because QR routines return R with a fixed diagonal sign
    convention (Mezzadri 2007).
    """

    def init(key, shape, dtype=jnp.float32):
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(f"orthogonal needs at least 2 dimensions, got {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        # QR wants float32 or float64; half precisions are cast at the end.
        compute = jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32
        a = jax.random.normal(key, (max(rows, cols), min(rows, cols)), compute)
        q, r = jnp.linalg.qr(a)
        q = q * jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(compute)
        if rows < cols:
            q = q.T
        return (gain * q).reshape(shape).astype(dtype)

    return init


def forget_gate_bias(hidden_size: int, value: float = 1.0) -> Initializer:
    """LSTM bias ``[4 * hidden_size]`` that is zero except the forget-gate block, set to ``value``.

    Gate order along the bias is ``(i, f, g, o)``: input, forget, cell candidate, output (the
    PyTorch/cuDNN order), so the forget block is ``[hidden_size : 2 * hidden_size]``. A positive
    forget bias keeps the cell state early in training (Gers, Schmidhuber & Cummins 2000;
    Jozefowicz, Zaremba & Sutskever 2015 recommend 1).
    """

    def init(key, shape, dtype=jnp.float32):
        del key  # deterministic
        if tuple(shape) != (4 * hidden_size,):
            raise ValueError(f"LSTM bias shape must be ({4 * hidden_size},), got {tuple(shape)}")
        bias = jnp.zeros((4, hidden_size), dtype).at[1].set(value)
        return bias.reshape(-1)

    return init


INITIALIZERS: dict[str, Callable[..., Initializer]] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "standard_uniform": standard_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "orthogonal": orthogonal,
    "scaled_normal": scaled_normal,
    "forget_gate_bias": forget_gate_bias,
}


def get_initializer(name: str, **kwargs) -> Initializer:
    """Builds the named initializer, e.g. ``get_initializer("orthogonal", gain=2 ** 0.5)``.

    Raises ValueError listing the valid names.
    """
    try:
        factory = INITIALIZERS[name]
    except KeyError:
        raise ValueError(
            f"unknown initializer {name!r}; valid names: {', '.join(sorted(INITIALIZERS))}"
        ) from None
    return factory(**kwargs)
