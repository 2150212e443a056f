"""TrainState: everything a run needs to continue, as one pytree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


class TrainState(flax.struct.PyTreeNode):
    """step: [] int32; params/opt_state: pytrees; rng: [2] uint32 base key (the step's key is
    `fold_in(rng, step)`, so it never needs updating); extra: non-trained collections such as
    `{"batch_stats": ...}`. `apply_fn` and `tx` are static: they are code, not state, and are never
    checkpointed."""

    step: jax.Array
    params: Any
    opt_state: optax.OptState
    rng: jax.Array
    extra: dict[str, Any]
    apply_fn: Callable[..., Any] = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

    @classmethod
    def create(
        cls,
        *,
        apply_fn: Callable[..., Any],
        params: Any,
        tx: optax.GradientTransformation,
        rng: jax.Array,
        extra: dict[str, Any] | None = None,
    ) -> TrainState:
        # Copy every leaf once: optimizers may alias one zeros buffer in two slots (optax's adam
        # does), and a donated step must not receive the same buffer twice.
        opt_state = jax.tree.map(jnp.array, tx.init(params))
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=opt_state,
            rng=rng,
            extra=extra or {},
            apply_fn=apply_fn,
            tx=tx,
        )


def param_count(params: Any) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
