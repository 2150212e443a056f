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
import json
import os
import shutil
import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from dl.train.checkpoint import Checkpointer
from dl.train.loop import _json_column, history_rows
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


def init_models(keys: jax.Array, hparams: Any, *, init_fn: InitFn) -> tuple[Params, jax.Array]:
    """`init_model` for each of `n` models, as a `lax.map`: (params leaves [n, ...], step keys
    [n, 2]). Traceable; `sweep` and `train_chunked` runs start from these."""
    return jax.lax.map(lambda args: init_model(*args, init_fn=init_fn), (keys, hparams))


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
    params, step_keys = init_models(keys, hparams, init_fn=init_fn)
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


# ---- Long sweeps: chunks with progress, metrics.jsonl, checkpoints and exact resume ----------


class ChunkedResult(NamedTuple):
    """What `train_chunked` returns.

    params: the final parameters, leaves [n, ...].
    steps: [C] ints, the step at the end of each chunk.
    history: {name: [n, C] float64}, one column per chunk: each engine metric's mean over the
      chunk's steps (NaN steps skipped), "nonfinite_steps" (steps with a non-finite metric) and
      `eval_fn`'s values; non-finite values are NaN. Read back from the rows that went to
      metrics.jsonl, so a resumed run returns the same history as an uninterrupted one.
    best_params, best_step [n], best {eval name: [n]}: per model, the parameters, step and
      evaluation at its best `monitor` value (initial parameters, step 0 and NaN until one is
      finite); None without `monitor`.
    """

    params: Params
    steps: np.ndarray
    history: dict[str, np.ndarray]
    best_params: Params | None
    best_step: np.ndarray | None
    best: dict[str, np.ndarray] | None


def init_states(params: Params, step_keys: jax.Array, hparams: Any, *, make_tx: TxFactory):
    """The stacked TrainStates of `n` models (leaves [n, ...]) with `tx=None`: a transform that
    closes over traced hyperparameters cannot cross a jit boundary, so every chunk rebuilds it."""

    def one(p, key, hp):
        return TrainState.create(apply_fn=None, params=p, tx=make_tx(hp), rng=key).replace(tx=None)

    return jax.vmap(one)(params, step_keys, hparams)


def train_chunk(
    state: TrainState,
    hparams: Any,
    batches: Any,
    *,
    make_loss: LossFactory,
    make_tx: TxFactory,
    batch_axis: int | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """`len(batches)` steps of every model (the scan of `train_from`, continued from `state`);
    returns the new stacked state and per-model summaries [n] of the chunk's metrics."""

    def one(state, hp, b):
        step = functools.partial(train_step, loss_fn=make_loss(hp))
        state, metrics = jax.lax.scan(step, state.replace(tx=make_tx(hp)), b)
        return state.replace(tx=None), metrics

    state, metrics = jax.vmap(one, in_axes=(0, 0, batch_axis))(state, hparams, batches)
    finite = functools.reduce(jnp.logical_and, [jnp.isfinite(m) for m in metrics.values()])
    summary = {k: jnp.nanmean(m, axis=1) for k, m in metrics.items()}
    summary["nonfinite_steps"] = jnp.sum(~finite, axis=1)
    return state, summary


@jax.jit
def _keep_better(better: jax.Array, new: Params, old: Params) -> Params:
    """Per model (leading axis), `new` where `better` [n] else `old`."""
    return jax.tree.map(
        lambda a, b: jnp.where(better.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old
    )


def _floats(values: list | None, n: int) -> np.ndarray:
    """JSON-ready values (None for non-finite) back to a float64 [n] array."""
    return np.array([np.nan if v is None else v for v in (values or [None] * n)], np.float64)


def _metrics_lines(path: str) -> list[str]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.readlines()


def _history(rows: list[dict], n: int, skip: set[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    steps = list(dict.fromkeys(r["step"] for r in rows))
    col = {s: c for c, s in enumerate(steps)}
    names = [k for k in (rows[0] if rows else {}) if k not in skip]
    history = {k: np.full((n, len(steps)), np.nan) for k in names}
    for r in rows:
        for k in names:
            history[k][r["model"], col[r["step"]]] = np.nan if r[k] is None else r[k]
    return np.asarray(steps, np.int64), history


def train_chunked(
    params: Params,
    step_keys: jax.Array,
    hparams: Any,
    batches: Any,
    *,
    make_loss: LossFactory,
    make_tx: TxFactory,
    num_steps: int,
    chunk_steps: int,
    workdir: str,
    batch_axis: int | None = None,
    eval_fn: Callable[[Params], dict[str, Any]] | None = None,
    monitor: str | None = None,
    mode: str = "max",
    labels: dict[str, Any] | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    append: bool = False,
    name: str = "sweep",
    progress: bool = True,
) -> ChunkedResult:
    """Trains `n` models as `vmap(train_from)` does, in chunks of `chunk_steps` steps: one jitted
    program (state donated) per chunk, with progress, metrics.jsonl rows, evaluation and
    checkpoints between chunks. For long sweeps, where one `jit_sweep` call would run for hours
    with no feedback and nothing saved.

    Step t uses `batches` step t and `fold_in(step_keys[i], t)`, so the final parameters equal
    `vmap(train_from)` over the same schedule (and `sweep`, starting from `init_models`) up to
    float reassociation (the programs compile differently; ~1 ulp per step on CPU). Chunks
    end at multiples of `chunk_steps`; a last partial chunk compiles a second program (no
    padding: padded steps would train). A model whose loss turns non-finite does NOT stop the
    sweep (unlike the engine's per-run guard): its rows record "nonfinite_steps" > 0 and null
    values, and the other models go on.

    Args:
      params, step_keys: the models' initial parameters (leaves [n, ...]) and step keys [n, 2],
        e.g. from `init_models`. They are copied, never donated.
      hparams: leaves [n]; `make_loss(hp)` and `make_tx(hp)` as for `sweep`.
      batches: the schedule (leaves [num_steps, ...], or [n, num_steps, ...] with
        `batch_axis=0`) or a function `(start, stop) -> the schedule of steps start..stop-1`
        (e.g. from `stack_batches`), which must be deterministic for exact resume.
      eval_fn: `params [n, ...] -> {name: [n] array}`, after every chunk.
      monitor, mode: keep each model's parameters at its best `eval_fn()[monitor]` ("max" or
        "min"; a later evaluation must be strictly better).
      labels: constants or per-model [n] values added to every row (see `history_rows`).
      checkpoint_every: save every this many chunks (and at the start and the end) to
        `workdir/checkpoints/<name>`; 0 saves only when `resume` is set (start and end).
      resume: continue from the newest readable checkpoint of `name` if there is one
        (`Checkpointer.restore_latest`: damaged ones are skipped, another config's raises
        CheckpointError). The rows written since it are replaced by their recomputation, so
        final parameters and metrics.jsonl are bit-identical to an uninterrupted run.
      append: add to metrics.jsonl rather than replace it (several sweeps of one experiment,
        run in the same order on resume).
      name: the sweep's checkpoint folder and progress-bar label.
    Rows: one per model per chunk, {"step", "model", **labels, **chunk means, **eval}.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if chunk_steps < 1:
        raise ValueError(f"chunk_steps must be >= 1, got {chunk_steps}")
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    ckpt_dir = os.path.join(workdir, "checkpoints", name)
    if not resume and os.path.isdir(ckpt_dir):
        shutil.rmtree(ckpt_dir)
    ckpt = Checkpointer(ckpt_dir) if (checkpoint_every or resume) else None

    def copy(tree):  # the first chunk donates the state: never the caller's buffers
        return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)

    hparams = jax.tree.map(jnp.asarray, hparams)
    state = jax.jit(functools.partial(init_states, make_tx=make_tx))(
        copy(params), copy(step_keys), hparams
    )
    n = int(state.step.shape[0])
    best_params = copy(state.params) if monitor else ()
    meta: dict[str, Any] = {
        "step": 0,
        "rows_before": len(_metrics_lines(metrics_path)) if append else 0,
        "rows": [],
        "best_step": [0] * n,
        "best": {},
    }
    restored = ckpt.restore_latest((state, best_params)) if resume else None
    if restored is not None:
        (state, best_params), meta, _ = restored
    kept = _metrics_lines(metrics_path)[: meta["rows_before"]]
    with open(metrics_path, "w") as f:  # drops rows computed after the checkpoint
        f.writelines(kept + [json.dumps(r, allow_nan=False) + "\n" for r in meta["rows"]])

    def save(step: int) -> None:
        meta["step"] = step
        ckpt.save(step, (state, best_params), meta)
        ckpt.wait()  # the next chunk donates the state; and rows follow only a finished save

    if ckpt is not None and ckpt.latest_step() is None:
        save(0)  # records where this sweep's rows begin in metrics.jsonl
    chunk = jax.jit(
        functools.partial(train_chunk, make_loss=make_loss, make_tx=make_tx, batch_axis=batch_axis),
        donate_argnums=0,
    )
    sign = 1.0 if mode == "max" else -1.0
    step = int(meta["step"])
    bar = tqdm(
        total=num_steps,
        initial=step,
        desc=name,
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    )
    while step < num_steps:
        stop = min((step // chunk_steps + 1) * chunk_steps, num_steps)
        if callable(batches):
            part = batches(step, stop)
        else:
            at = (slice(step, stop),) if batch_axis is None else (slice(None), slice(step, stop))
            part = jax.tree.map(lambda a: a[at], batches)  # noqa: B023 (called at once)
        state, summary = chunk(state, hparams, part)
        ev = eval_fn(state.params) if eval_fn is not None else {}
        host = {k: np.asarray(v) for k, v in jax.device_get({**summary, **ev}).items()}
        if any(v.shape != (n,) for v in host.values()):
            raise ValueError(
                f"eval_fn must return [n={n}] arrays, got {jax.tree.map(np.shape, ev)}"
            )
        rows = history_rows({k: v[:, None] for k, v in host.items()}, labels=labels, steps=[stop])
        with open(metrics_path, "a") as f:
            f.writelines(json.dumps(r, allow_nan=False) + "\n" for r in rows)
        meta["rows"] += rows
        if monitor:
            old = _floats(meta["best"].get(monitor), n)
            better = sign * host[monitor] > sign * np.where(np.isnan(old), -sign * np.inf, old)
            if better.any():
                best_params = _keep_better(jnp.asarray(better), state.params, best_params)
                meta["best"] = {
                    k: _json_column(np.where(better, v, _floats(meta["best"].get(k), n)))
                    for k, v in host.items()
                    if k in ev
                }
                meta["best_step"] = np.where(better, stop, meta["best_step"]).tolist()
        bar.update(stop - step)
        step = stop
        loss = host["loss"][np.isfinite(host["loss"])]  # the models' chunk means
        bar.set_postfix(
            loss=f"{np.median(loss):.4g}" if loss.size else "nan",
            diverged=int(np.sum(host["nonfinite_steps"] > 0)),
            refresh=False,
        )
        if ckpt is not None and (
            (checkpoint_every and -(-step // chunk_steps) % checkpoint_every == 0)
            or step == num_steps
        ):
            save(step)
    bar.close()
    if ckpt is not None:
        ckpt.close()
    steps, history = _history(meta["rows"], n, {"step", "model", *(labels or {})})
    best = {k: _floats(v, n) for k, v in meta["best"].items()} if monitor else None
    return ChunkedResult(
        params=state.params,
        steps=steps,
        history=history,
        best_params=best_params if monitor else None,
        best_step=np.asarray(meta["best_step"], np.int64) if monitor else None,
        best=best,
    )
