"""Supervised training in one call: initialize from a sample, place on the mesh, run the loop.

The pieces stay separate (`TrainState.create`, `jit_train_step`, `train`); this only composes
them in the order every supervised experiment needs, so experiments read as model + data + bar.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax

from dl.train.loop import train
from dl.train.mesh import make_mesh, replicate, shard_batch
from dl.train.state import TrainState, param_count
from dl.train.step import evaluate, jit_train_step


def init_state(
    model: nn.Module, tx: optax.GradientTransformation, sample_x: np.ndarray, *, seed: int
) -> TrainState:
    """Initializes `model` on `sample_x` ([batch, ...]); collections other than params (batch
    statistics) go to `state.extra`. Shapes are checked first with `jax.eval_shape`."""
    init_rng, dropout_rng, state_rng = jax.random.split(jax.random.PRNGKey(seed), 3)
    init = jax.jit(functools.partial(model.init, train=False))
    rngs = {"params": init_rng, "dropout": dropout_rng}
    jax.eval_shape(init, rngs, sample_x)  # fails fast on shape errors, before allocating
    variables = dict(init(rngs, sample_x))
    params = variables.pop("params")
    return TrainState.create(
        apply_fn=model.apply, params=params, tx=tx, rng=state_rng, extra=variables
    )


def fit(
    state: TrainState,
    *,
    loss_fn: Callable,
    eval_fn: Callable,
    train_loader: Any,
    val_batches: Callable[[], Iterable[dict]],
    num_steps: int,
    workdir: str,
    eval_every: int,
    monitor: str = "val_accuracy",
    mode: str = "max",
    patience: int = 0,
    checkpoint_every: int = 0,
    resume: bool = False,
    callbacks=(),
    log_every: int = 50,
    progress: bool = True,
    desc: str = "train",
) -> tuple[TrainState, list[dict[str, Any]], dict[str, Any]]:
    """Data-parallel training over all devices.

    Args:
      loss_fn: `(params, extra, batch, rng) -> (loss, (metrics, extra))`.
      eval_fn: jitted `(params, extra, batch) -> sums` (see `dl.train.step.evaluate`).
      train_loader: has `.batch(step) -> host batch` (e.g. `dl.data.Loader`).
      val_batches: `() -> iterable of host batches` for validation.
    Returns:
      as `dl.train.loop.train`; `summary["param_count"]` is added and `summary["evaluate"]` is a
      function `(params, batches) -> means` for test-set evaluation on the same mesh.
    """
    mesh = make_mesh()
    shard = functools.partial(shard_batch, mesh=mesh)
    state = replicate(state, mesh)

    def run_eval(s: TrainState) -> dict[str, float]:
        return {f"val_{k}": v for k, v in evaluate(eval_fn, s, val_batches(), shard=shard).items()}

    state, history, summary = train(
        state,
        train_step=jit_train_step(loss_fn),
        batch_fn=train_loader.batch,
        num_steps=num_steps,
        workdir=workdir,
        eval_fn=run_eval,
        eval_every=eval_every,
        monitor=monitor,
        mode=mode,
        patience=patience,
        checkpoint_every=checkpoint_every,
        resume=resume,
        callbacks=callbacks,
        shard=shard,
        log_every=log_every,
        progress=progress,
        desc=desc,
    )
    summary["param_count"] = param_count(state.params)

    def evaluate_params(params: Any, batches: Iterable[dict]) -> dict[str, float]:
        return evaluate(eval_fn, state.replace(params=params), batches, shard=shard)

    summary["evaluate"] = evaluate_params
    return state, history, summary
