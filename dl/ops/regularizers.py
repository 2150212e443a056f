"""Weight penalties, dropout and max-norm projection on flax parameter trees.

Which leaves are "weights": a leaf is a weight iff the last key on its path is ``"kernel"``
(Dense/Conv/recurrent matrices) or ``"embedding"`` (``nn.Embed``). Everything else is left
alone: biases, and the ``"scale"``/``"bias"`` of BatchNorm/LayerNorm, whose decay would fight
the normalization rather than limit capacity. :func:`is_weight` is that rule as a predicate, to
reuse e.g. as an ``optax.masked`` mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
PyTree = Any

WEIGHT_NAMES = frozenset({"kernel", "embedding"})


def _key_name(key: Any) -> Any:
    """The plain name of one path entry (DictKey, GetAttrKey, SequenceKey or a raw string)."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return getattr(key, attr)
    return key


def is_weight(path: Sequence[Any], leaf: Any = None) -> bool:
    """True iff the leaf at ``path`` is a kernel or an embedding table (see module docstring).

    path: a jax tree path (as given by ``jax.tree_util.tree_map_with_path``) or a tuple of
    names such as ``("params", "Dense_0", "kernel")``. ``leaf`` is accepted for the
    ``(path, leaf)`` calling convention and ignored.
    """
    del leaf
    return len(path) > 0 and _key_name(path[-1]) in WEIGHT_NAMES


def _weights(params: PyTree) -> list[Array]:
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return [jnp.asarray(leaf) for path, leaf in flat if is_weight(path)]


def _sum_over_weights(params: PyTree, per_leaf) -> Array:
    weights = _weights(params)
    # One accumulator dtype for all leaves: strict promotion forbids adding e.g. bf16 to f32.
    acc = jnp.float64 if any(w.dtype == jnp.float64 for w in weights) else jnp.float32
    total = jnp.zeros((), acc)
    for w in weights:
        total = total + jnp.sum(per_leaf(w.astype(acc)))
    return total


def l2_penalty(params: PyTree) -> Array:
    """``1/2 * sum_w w^2`` over the weights, so that its gradient is the weights themselves
    (weight decay ``lambda * w`` from ``lambda * l2_penalty``). Returns a float32 scalar
    (float64 if any weight is float64)."""
    return 0.5 * _sum_over_weights(params, jnp.square)


def l1_penalty(params: PyTree) -> Array:
    """``sum_w |w|`` over the weights (Tibshirani 1996's lasso penalty). Dtype as l2_penalty."""
    return _sum_over_weights(params, jnp.abs)


def dropout(x: Array, *, rate: float, rng: Array | None, deterministic: bool = False) -> Array:
    """Inverted dropout (Hinton et al. 2012; Srivastava et al. 2014).

    Each unit of ``x`` is zeroed with probability ``rate`` and the kept ones are scaled by
    ``1 / (1 - rate)``, so ``E[dropout(x)] = x`` and evaluation needs no rescaling (the paper
    instead scales the weights by ``p = 1 - rate`` at test time; the two are equivalent).

    x: any shape. rate: a Python float in [0, 1] (static: it selects the code path).
    rng: a PRNG key, needed unless the call is the identity.
    ``deterministic=True`` or ``rate == 0`` returns ``x``; ``rate == 1`` returns zeros.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"dropout rate must be in [0, 1], got {rate}")
    if deterministic or rate == 0.0:
        return x
    if rate == 1.0:
        # 1 / (1 - rate) is undefined; every unit is dropped.
        return jnp.zeros_like(x)
    if rng is None:
        raise ValueError("dropout needs an rng key when deterministic=False and 0 < rate")
    keep = jax.random.bernoulli(rng, 1.0 - rate, jnp.shape(x))
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def _project_columns(kernel: Array, limit: float) -> Array:
    # The incoming weights of output unit j are kernel[..., j]: every axis but the last.
    norms = jnp.sqrt(jnp.sum(jnp.square(kernel), axis=tuple(range(kernel.ndim - 1)), keepdims=True))
    too_long = norms > limit
    # The safe denominator keeps zero columns (norm 0) free of 0/0 in the unused branch.
    scale = jnp.where(too_long, limit / jnp.where(too_long, norms, 1.0), 1.0)
    return kernel * scale.astype(kernel.dtype)


def max_norm(params: PyTree, *, max_norm: float) -> PyTree:
    """Max-norm constraint (Srivastava et al. 2014, sec. 5.1): projects each hidden unit's
    incoming weight vector onto the ball ``||w|| <= max_norm``.

    Applied to every ``"kernel"`` leaf ``[*window, in, out]``: column ``kernel[..., j]`` (all
    axes but the last) is scaled by ``max_norm / ||column||`` when longer than ``max_norm`` and
    left bit-for-bit unchanged otherwise. Embedding tables, biases and normalization parameters
    are returned unchanged (an embedding row is not a unit's incoming weights). Pure: call it on
    the params after each optimizer update.
    """
    limit = max_norm

    def project(path, leaf):
        if len(path) > 0 and _key_name(path[-1]) == "kernel":
            return _project_columns(leaf, limit)
        return leaf

    return jax.tree_util.tree_map_with_path(project, params)
