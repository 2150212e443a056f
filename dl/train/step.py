"""The pure training step and the pure evaluation step.

A loss function has the signature

    loss_fn(params, extra, batch, rng) -> (loss, (metrics, new_extra))

where `batch` carries a `mask` of valid rows and `metrics` is a dict of scalars. `train_step` is
jitted once at the call site with the state donated (`jit_train_step`), static settings bound by
`functools.partial`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import optax

from dl.train.state import TrainState

LossFn = Callable[..., tuple[jax.Array, tuple[dict[str, jax.Array], dict[str, Any]]]]


def train_step(
    state: TrainState, batch: dict[str, jax.Array], *, loss_fn: LossFn
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One gradient step. Returns the new state and loss, metrics and the norms of gradients,
    parameters and updates (big_vision logs the same three to catch divergence early)."""
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, (metrics, extra)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.extra, batch, rng
    )
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        **metrics,
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),
        "param_norm": optax.tree.norm(params),
        "update_norm": optax.tree.norm(updates),
    }
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, extra=extra)
    return new_state, metrics


def jit_train_step(loss_fn: LossFn) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
    """`train_step` with `loss_fn` bound, jitted once, with the incoming state donated."""
    return jax.jit(functools.partial(train_step, loss_fn=loss_fn), donate_argnums=0)


def evaluate(
    eval_fn: Callable[..., dict[str, jax.Array]],
    state: TrainState,
    batches,
    *,
    shard: Callable[[dict], dict] | None = None,
) -> dict[str, float]:
    """Exact dataset means from a jitted `eval_fn(params, extra, batch) -> {name: sum, "count": n}`.

    `eval_fn` returns *sums* over the valid (mask == 1) rows of a batch so that padded final
    batches and any batch size give the same means.
    """
    totals: dict[str, Any] = {}
    for batch in batches:
        if shard is not None:
            batch = shard(batch)
        out = eval_fn(state.params, state.extra, batch)
        totals = out if not totals else jax.tree.map(lambda a, b: a + b, totals, out)
    totals = jax.device_get(totals)
    count = float(totals.pop("count"))
    return {k: float(v) / count for k, v in totals.items()}
