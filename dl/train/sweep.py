"""Train many models at once: `vmap` over models of a `lax.scan` over the engine's step.

One sweep trains `n` models that differ in their PRNG key (initialization, dropout) and in
hyperparameters given as arrays, all in one jitted call that compiles once: a hyperparameter
search or a deep ensemble costs one compilation and one dispatch, not `n` of each.

Hyperparameters reach the model as traced values, so two factories take them:

    make_loss(hparams) -> loss_fn(params, extra, batch, rng) -> (loss, (metrics, new_extra))
    make_tx(hparams)   -> optax.GradientTransformation

e.g. ``make_tx = lambda hp: dl.optim.sgd(hp["learning_rate"])``: the `dl.optim` transforms accept
a traced scalar learning rate (as does ``optax.inject_hyperparams``). Each model is then trained
by the very step the engine uses (`dl.train.step.train_step`), so a sweep equals `n` separate
runs of that step up to float reassociation. Models have no mutable collections (the engine's
`extra` starts empty), so batch-norm statistics are not swept.

The batch schedule is a pytree whose leaves have a leading [num_steps] axis: shared by every
model (``batch_axis=None``: same data order) or [n, num_steps, ...] (``batch_axis=0``: one order
per model). A schedule can hold indices rather than examples when `make_loss` gathers from a
dataset it closes over, which keeps per-model schedules small.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from dl.train.state import TrainState
from dl.train.step import train_step

Params = Any
InitFn = Callable[[jax.Array, Any], Params]
LossFactory = Callable[[Any], Callable[..., Any]]
TxFactory = Callable[[Any], Any]


class SweepResult(NamedTuple):
    """params: the trained parameters, each leaf [n, ...] (or [...] for `train_one`);
    metrics: the engine's per-step metrics (loss, grad/param/update norms, the loss's own),
    each [n, num_steps] (or [num_steps])."""

    params: Params
    metrics: dict[str, jax.Array]


def init_model(key: jax.Array, hparams: Any, *, init_fn: InitFn) -> tuple[Params, jax.Array]:
    """One model's initial parameters and its step key base: `key` ([2] uint32) is split into
    the init key, given to `init_fn(init_key, hparams) -> params`, and the step key."""
    init_key, step_key = jax.random.split(key)
    return init_fn(init_key, hparams), step_key


def train_from(
    params: Params,
    step_key: jax.Array,
    hparams: Any,
    batches: Any,
    *,
    make_loss: LossFactory,
    make_tx: TxFactory,
) -> SweepResult:
    """Trains one model from `params` for `num_steps` = the leading axis of `batches` by
    `lax.scan` of the engine's `train_step` (step t sees `batches[t]` and the dropout key
    `fold_in(step_key, t)`, exactly as the engine's loop would)."""
    state = TrainState.create(apply_fn=None, params=params, tx=make_tx(hparams), rng=step_key)
    state, metrics = jax.lax.scan(
        functools.partial(train_step, loss_fn=make_loss(hparams)), state, batches
    )
    return SweepResult(state.params, metrics)


def train_one(
    key: jax.Array,
    hparams: Any,
    batches: Any,
    *,
    init_fn: InitFn,
    make_loss: LossFactory,
    make_tx: TxFactory,
) -> SweepResult:
    """Initializes and trains one model: `init_model` then `train_from`."""
    params, step_key = init_model(key, hparams, init_fn=init_fn)
    return train_from(params, step_key, hparams, batches, make_loss=make_loss, make_tx=make_tx)


def sweep(
    keys: jax.Array,
    hparams: Any,
    batches: Any,
    *,
    init_fn: InitFn,
    make_loss: LossFactory,
    make_tx: TxFactory,
    batch_axis: int | None = None,
) -> SweepResult:
    """Trains `n` models at once; model i gets exactly what `train_one(keys[i], hparams_i,
    batches_i)` computes.

    Initialization runs as a `lax.map` (a loop inside the jitted program) rather than a `vmap`:
    it runs once, and XLA on CPU compiles vmapped threefry draws several times slower than one
    model's; training, which runs every step, is the `vmap`.

    Args:
      keys: [n, 2] uint32, one PRNG key per model.
      hparams: a pytree whose leaves are [n] (one value per model).
      batches: the schedule, leaves [num_steps, ...] (`batch_axis=None`, shared) or
        [n, num_steps, ...] (`batch_axis=0`, one per model).
    Returns:
      `SweepResult` with params leaves [n, ...] and metrics [n, num_steps].
    """
    params, step_keys = jax.lax.map(
        lambda args: init_model(*args, init_fn=init_fn), (keys, hparams)
    )
    train = functools.partial(train_from, make_loss=make_loss, make_tx=make_tx)
    return jax.vmap(train, in_axes=(0, 0, 0, batch_axis))(params, step_keys, hparams, batches)


def jit_sweep(
    *, init_fn: InitFn, make_loss: LossFactory, make_tx: TxFactory, batch_axis: int | None = None
) -> Callable[[jax.Array, Any, Any], SweepResult]:
    """`sweep` with the factories bound, jitted: `(keys, hparams, batches) -> SweepResult`.
    New hyperparameter values or keys of the same shapes reuse the compiled sweep."""
    return jax.jit(
        functools.partial(
            sweep, init_fn=init_fn, make_loss=make_loss, make_tx=make_tx, batch_axis=batch_axis
        )
    )


def jit_train_one(
    *, init_fn: InitFn, make_loss: LossFactory, make_tx: TxFactory
) -> Callable[[jax.Array, Any, Any], SweepResult]:
    """`train_one` jitted: one model per call (the sequential baseline a sweep replaces)."""
    return jax.jit(
        functools.partial(train_one, init_fn=init_fn, make_loss=make_loss, make_tx=make_tx)
    )


def stack_batches(batch_fn: Callable[[int], Any], num_steps: int) -> Any:
    """The schedule `batch_fn(0), ..., batch_fn(num_steps - 1)` stacked on a new leading axis
    (e.g. `batch_fn = dl.data.Loader(...).batch`): leaves [num_steps, ...] numpy arrays."""
    steps = [batch_fn(t) for t in range(num_steps)]
    return jax.tree.map(lambda *leaves: np.stack(leaves), *steps)


def model_slice(tree: Any, i: int) -> Any:
    """Model i's slice of a pytree whose leaves are [n, ...]."""
    return jax.tree.map(lambda a: a[i], tree)


def compile_timed(jitted: Callable, *args) -> tuple[Callable, float]:
    """(`jitted` compiled ahead of time for `args`, wall-clock seconds the compilation took)."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start


def time_against_sequential(
    swept: Callable,
    one: Callable,
    keys: jax.Array,
    hparams: Any,
    batches: Any,
    *,
    batch_axis: int | None = None,
    repeats: int = 5,
) -> dict[str, Any]:
    """Wall-clock seconds of one sweep call over `n` models against `n` sequential runs of one
    model (each waited for before the next starts, as a loop over configurations would).

    `swept` and `one` are compiled `jit_sweep` / `jit_train_one` (see `compile_timed`), so no
    compilation is timed. After one warm-up call of each, repeats are interleaved so that
    background load hits both alike; medians are reported.

    Returns: {"sweep_s", "sequential_s", "speedup" = sequential_s / sweep_s, "sweep_runs_s",
    "sequential_runs_s" (every repeat)}.
    """
    per_model = [
        (
            keys[i],
            model_slice(hparams, i),
            batches if batch_axis is None else model_slice(batches, i),
        )
        for i in range(keys.shape[0])
    ]

    def run_sweep():
        jax.block_until_ready(swept(keys, hparams, batches))

    def run_sequential():
        for args in per_model:
            jax.block_until_ready(one(*args))

    run_sweep()  # warm-up: first-call allocations are not the steady state
    run_sequential()
    sweep_runs, seq_runs = [], []
    for _ in range(repeats):
        for fn, runs in ((run_sweep, sweep_runs), (run_sequential, seq_runs)):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
    sweep_s, seq_s = statistics.median(sweep_runs), statistics.median(seq_runs)
    return {
        "sweep_s": sweep_s,
        "sequential_s": seq_s,
        "speedup": seq_s / sweep_s,
        "sweep_runs_s": sweep_runs,
        "sequential_runs_s": seq_runs,
    }
