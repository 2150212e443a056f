"""Full-batch minimization with optax's L-BFGS (Nocedal 1980; Liu & Nocedal 1989), run to a
gradient tolerance inside one `lax.while_loop`, so it jits and vmaps over problems.

optax gives the L-BFGS transformation and its zoom line search; the stopping loop around it is
what every full-batch fit needs, so it lives here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax


def minimize_lbfgs(
    f: Callable[[Any], jax.Array], init: Any, *, max_iter: int, tol: float
) -> tuple[Any, jax.Array]:
    """Minimizes the scalar `f(params)` from the pytree `init` until ||grad f|| <= tol (the
    gradient at the last accepted point) or `max_iter` iterations.

    Returns (params, iterations: [] int32). Each iteration reuses the value and gradient that the
    line search already computed at the accepted point (`optax.value_and_grad_from_state`).
    """
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(f)

    def body(carry):
        params, state, it, _ = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=f)
        return optax.apply_updates(params, updates), state, it + 1, optax.tree.norm(grad)

    def cond(carry):
        return (carry[2] < max_iter) & (carry[3] > tol)

    carry = (init, opt.init(init), jnp.zeros((), jnp.int32), jnp.array(jnp.inf, jnp.float32))
    params, _, it, _ = jax.lax.while_loop(cond, body, carry)
    return params, it
