"""Seeds of one model trained at once on a data generator: fresh batches every step, drawn from
`fold_in(data_key, step)` inside the jitted loop, so the data are a function of the step alone
and a resumed run sees the same batches (the adding and copy-memory problems; any task whose
training set is a sampler rather than a dataset).

Built on `dl.train.sweep`: `init_models` draws the `vmap`-ed initializations and
`train_chunked` runs the steps in chunks with progress, metrics.jsonl, evaluation and
checkpoints between chunks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dl import optim
from dl.train.sweep import ChunkedResult, init_models, train_chunked

# draw(key) -> (inputs, targets): one training batch.
Draw = Callable[[jax.Array], tuple[Any, Any]]
# objective(model outputs, targets) -> (loss [], metrics {name: []}).
Objective = Callable[[Any, Any], tuple[jax.Array, dict[str, jax.Array]]]


def clipped_adam(hparams: dict[str, Any]) -> optax.GradientTransformation:
    """Adam at rate `hparams["lr"]` after global-norm clipping at `hparams["clip"]` (Pascanu et
    al. 2013); both may be traced, one value per vmapped seed."""
    return optax.chain(optim.clip_by_global_norm(hparams["clip"]), optim.adam(hparams["lr"]))


def generated_loss(model: nn.Module, draw: Draw, data_key: jax.Array, objective: Objective):
    """sweep-style factory: hparams -> loss_fn(params, extra, batch {"step": []}, rng) that draws
    its batch from `fold_in(data_key, batch["step"])`."""

    def factory(hparams):
        del hparams

        def loss_fn(params, extra, batch, rng):
            del rng
            x, y = draw(jax.random.fold_in(data_key, batch["step"]))
            loss, metrics = objective(model.apply({"params": params}, x), y)
            return loss, (metrics, extra)

        return loss_fn

    return factory


def train_seeds(
    model: nn.Module,
    sample: jax.Array,
    *,
    model_keys: jax.Array,
    data_key: jax.Array,
    draw: Draw,
    objective: Objective,
    evaluate: Callable[[Any], dict[str, jax.Array]],
    learning_rate: float,
    clip_norm: float,
    num_steps: int,
    chunk_steps: int,
    workdir: str,
    name: str,
    labels: dict[str, Any] | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress: bool = True,
) -> tuple[dict[str, jax.Array], ChunkedResult]:
    """Trains len(model_keys) copies of `model` (initialized on `sample`) with `clipped_adam` on
    batches from `draw`; returns (evaluate(initial params), the `train_chunked` result).

    `evaluate(stacked params [n, ...]) -> {name: [n]}` runs after every chunk (and once before
    training, the first return value); metrics.jsonl rows are appended under `labels`.
    """

    def init_fn(key, hparams):
        del hparams
        return model.init(key, sample)["params"]

    n = model_keys.shape[0]
    hparams = {
        "lr": jnp.full((n,), learning_rate, jnp.float32),
        "clip": jnp.full((n,), clip_norm, jnp.float32),
    }
    params, step_keys = jax.jit(functools.partial(init_models, init_fn=init_fn))(
        model_keys, hparams
    )
    initial = evaluate(params)
    result = train_chunked(
        params,
        step_keys,
        hparams,
        {"step": jnp.arange(num_steps, dtype=jnp.int32)},
        make_loss=generated_loss(model, draw, data_key, objective),
        make_tx=clipped_adam,
        num_steps=num_steps,
        chunk_steps=chunk_steps,
        workdir=workdir,
        eval_fn=evaluate,
        labels=labels,
        checkpoint_every=checkpoint_every,
        resume=resume,
        append=True,
        name=name,
        progress=progress,
    )
    return initial, result
