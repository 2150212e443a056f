"""Gradient checking: compare `jax.grad` against central finite differences in float64.

Use it to test hand-written derivatives (`custom_jvp`/`custom_vjp` rules, closed-form gradients
of losses) at small parameter sizes: the finite differences cost two evaluations of `f` per
parameter coordinate, batched with `vmap` into one compiled call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

PyTree = Any


def _float64_leaf(x: Any, *, require_floating: bool) -> Any:
    """float64 copy of a floating array leaf; other leaves pass through (or fail, for params)."""
    if isinstance(x, (float, np.floating)) or (
        hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)
    ):
        return jnp.asarray(x, dtype=jnp.float64)
    if require_floating:
        raise TypeError(f"gradcheck needs floating parameters, got a leaf of type {type(x)}")
    return x


def _relative_error(g_ad: np.ndarray, g_fd: np.ndarray) -> float:
    tiny = np.finfo(np.float64).tiny
    num = np.linalg.norm(g_ad - g_fd)
    den = max(np.linalg.norm(g_ad) + np.linalg.norm(g_fd), tiny)
    return float(num / den)


def gradcheck(
    f: Callable[..., jax.Array], params: PyTree, *args: Any, eps: float = 1e-6, **kwargs: Any
) -> PyTree:
    """Relative error between `jax.grad(f)` and central differences, per leaf of `params`.

    Everything runs with 64-bit types enabled: floating leaves of `params`, `args` and `kwargs`
    are cast to float64 (integer leaves such as labels or PRNG keys are left alone), and the
    central difference (f(x + eps e_i) - f(x - eps e_i)) / (2 eps) is taken for every coordinate
    i of the flattened parameters, all coordinates in one `jit(vmap(...))` call. Its truncation
    error is O(eps^2) and its rounding error about 1e-16 |f| / eps, so a correct gradient gives
    errors near 1e-9 or below with the default eps, and a wrong one gives errors of order 1.

    Args:
      f: maps (params, *args, **kwargs) to a scalar; must be traceable with `vmap` and should
        not force float32 internally (that defeats the float64 check).
      params: pytree of floating arrays (small: the cost grows with the number of entries).
      *args, **kwargs: passed to `f` unchanged apart from the float64 cast.
      eps: step of the central difference.

    Returns:
      A pytree with the structure of `params` holding, per leaf, the Python float
      ||g_ad - g_fd|| / max(||g_ad|| + ||g_fd||, tiny), which lies in [0, 1].
    """
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda x: _float64_leaf(x, require_floating=True), params)
        args64, kwargs64 = jax.tree.map(
            lambda x: _float64_leaf(x, require_floating=False), (args, kwargs)
        )
        flat, unravel = ravel_pytree(params64)

        def f_flat(x: jax.Array) -> jax.Array:
            out = jnp.asarray(f(unravel(x), *args64, **kwargs64))
            if out.shape != ():
                raise ValueError(f"gradcheck needs f to return a scalar, got shape {out.shape}")
            return out.astype(jnp.float64)

        def central_difference(direction: jax.Array) -> jax.Array:
            step = eps * direction
            return (f_flat(flat + step) - f_flat(flat - step)) / (2.0 * eps)

        g_ad = jax.jit(jax.grad(f_flat))(flat)
        basis = jnp.eye(flat.size, dtype=jnp.float64)
        g_fd = jax.jit(jax.vmap(central_difference))(basis)
        errors = jax.tree.map(
            lambda a, b: _relative_error(np.asarray(a), np.asarray(b)),
            unravel(g_ad),
            unravel(g_fd),
        )
    return errors


def assert_gradcheck(
    f: Callable[..., jax.Array],
    params: PyTree,
    *args: Any,
    tol: float = 1e-6,
    eps: float = 1e-6,
    **kwargs: Any,
) -> None:
    """Raise AssertionError, naming the worst leaf, if any relative error of `gradcheck` > tol.

    Arguments as in `gradcheck`; `tol` and `eps` are consumed here, so `f` cannot take keyword
    arguments with those names.
    """
    errors = gradcheck(f, params, *args, eps=eps, **kwargs)
    leaves = jax.tree_util.tree_flatten_with_path(errors)[0]
    # NaN counts as a failure and as the worst error.
    failing = sorted(
        ((jax.tree_util.keystr(path), err) for path, err in leaves if not err <= tol),
        key=lambda item: -item[1] if item[1] == item[1] else -np.inf,
    )
    if failing:
        worst_path, worst_err = failing[0]
        listing = ", ".join(f"{path or '<root>'}: {err:.3g}" for path, err in failing)
        raise AssertionError(
            f"gradient check failed (tol={tol:g}); worst leaf {worst_path or '<root>'} has "
            f"relative error {worst_err:.3g}; failing leaves: {listing}"
        )
