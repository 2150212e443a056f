"""Nonlinear least squares by Levenberg-Marquardt (Levenberg 1944; Marquardt 1963).

Not an optax transformation: the method needs the residuals themselves, not just the gradient
of their sum of squares, so it takes a residual function and the data and runs its own loop
(one `lax.scan`, so it jits and vmaps over initializations). Solving the damped normal
equations squares J's condition number, so fits that must go far below float32 rounding run
under ``jax.enable_x64``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def levenberg_marquardt(
    params: Any, residual: Callable[..., jax.Array], x: jax.Array, y: jax.Array, *, steps: int
) -> tuple[Any, jax.Array]:
    """`steps` Levenberg-Marquardt iterations (Levenberg 1944; Marquardt 1963) on
    sum_i residual(params, x_i, y_i)^2: the damped Gauss-Newton step
    d = -(J^T J + mu I)^{-1} J^T r, kept only if it lowers the loss (so the loss never rises);
    mu /= 3 after a kept step and mu *= 2 after a rejected one, starting from 1e-3 times the mean
    squared column norm of J.

    params: any pytree, p scalars in all. residual: (params, x_i, y_i) -> scalar;
    x, y: [m, ...]. J [m, p] is built one example at a time (vmap of grad), never as a
    [p, m, ...] tangent batch. With m < p the equal step -J^T (J J^T + mu I)^{-1} r
    (push-through identity) needs only an m x m solve. Parameters no residual depends on (e.g.
    masked units) have zero columns in J and get d = 0.
    Returns (params, mean squared residual before each step [steps]).
    """
    flat, unravel = ravel_pytree(params)
    m, p = x.shape[0], flat.shape[0]

    def res(q):
        return jax.vmap(residual, in_axes=(None, 0, 0))(unravel(q), x, y)

    def jacobian(q):
        rows = jax.vmap(jax.grad(residual), in_axes=(None, 0, 0))(unravel(q), x, y)
        return jax.vmap(lambda row: ravel_pytree(row)[0])(rows)  # [m, p]

    def step(carry, _):
        q, mu = carry
        r, jac = res(q), jacobian(q)
        if m < p:
            d = -jac.T @ jnp.linalg.solve(jac @ jac.T + mu * jnp.eye(m, dtype=r.dtype), r)
        else:
            d = -jnp.linalg.solve(jac.T @ jac + mu * jnp.eye(p, dtype=r.dtype), jac.T @ r)
        loss = jnp.sum(jnp.square(r))
        better = jnp.sum(jnp.square(res(q + d))) < loss
        return (jnp.where(better, q + d, q), jnp.where(better, mu / 3.0, mu * 2.0)), loss / m

    mu = 1e-3 * jnp.mean(jnp.sum(jnp.square(jacobian(flat)), axis=0))
    (flat, _), losses = jax.lax.scan(step, (flat, mu), None, length=steps)
    return unravel(flat), losses
