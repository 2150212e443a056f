"""The training loop: progress, metrics.jsonl, non-finite guard, evaluation, early stopping,
checkpoints and exact resume.

Exact resume rests on three facts: the batch of step `s` is a pure function of `(seed, s)`
(`dl.data.Loader.batch`), the step's RNG is `fold_in(state.rng, s)`, and the whole TrainState is
checkpointed. A resumed run therefore replays the same computation as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from dl.train.checkpoint import Checkpointer
from dl.train.state import TrainState


class NonFiniteError(FloatingPointError):
    """A training metric became NaN or infinite; the message names the step and the metric."""


def check_finite(step: int, metrics: dict[str, float]) -> None:
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise NonFiniteError(
                f"non-finite {name}={value} at step {step}; lower the learning rate, "
                f"clip gradients, or check the inputs of that step"
            )


class MetricsWriter:
    """Appends JSON rows to `workdir/metrics.jsonl`; on resume drops rows past the restored step
    (they were computed after the last checkpoint and will be recomputed identically)."""

    def __init__(self, path: str, *, resume_step: int | None):
        self.path = path
        rows = []
        if resume_step is not None and os.path.exists(path):
            with open(path) as f:
                rows = [r for r in map(json.loads, f) if r["step"] <= resume_step]
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        self.rows: list[dict[str, Any]] = rows

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        with open(self.path, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        self.rows.extend(rows)


def _json_column(values: Any) -> list:
    """An array as JSON-ready Python values: numpy scalars become Python ones, NaN and inf
    become None (JSON null; `json.dumps` would write NaN, which is not JSON)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fc":
        obj = arr.astype(object)
        obj[~np.isfinite(arr)] = None
        return obj.tolist()
    return arr.tolist()


def history_rows(
    history: dict[str, Any],
    *,
    labels: dict[str, Any] | None = None,
    every: int = 1,
    steps: Sequence[int] | np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """A history computed as arrays (a scan, a `dl.train.sweep`) as the loop's JSON-ready rows.

    Args:
      history: {name: array}, all [T] (one run) or all [n, T] (n models, e.g.
        `SweepResult.metrics`).
      labels: constants added to every row ({"optimizer": "adam"}), or per-model [n] arrays
        (a sweep's hyperparameters) when history is [n, T].
      steps: [T] ints, the step (or epoch) each entry t is recorded at; default t + 1 (steps
        completed, as the loop counts them).
      every: stride: keeps the entries whose step is a multiple of `every`, and the first and
        last. The default 1 keeps every entry: pass a stride for long histories (e.g. steps per
        epoch) so that a run writes thousands of rows, not millions.
    Rows: {"step", "model" (only for [n, T]), **labels, **{name: value}}; non-finite values
    are written as null, so every row is strict JSON.
    """
    cols = {k: np.asarray(v) for k, v in history.items()}
    shape = next(iter(cols.values())).shape
    if len(shape) not in (1, 2) or any(c.shape != shape for c in cols.values()):
        raise ValueError(
            f"history must be all [T] or all [n, T], got {[c.shape for c in cols.values()]}"
        )
    num_steps = shape[-1]
    steps = np.asarray(np.arange(1, num_steps + 1) if steps is None else steps)
    ts = np.flatnonzero((steps % every == 0) | np.isin(np.arange(num_steps), [0, num_steps - 1]))
    steps = steps.tolist()
    models = range(shape[0]) if len(shape) == 2 else [None]
    labels = labels or {}
    rows = []
    for i in models:
        const = {"model": i} if i is not None else {}
        for k, v in labels.items():
            v = np.asarray(v)
            const[k] = _json_column(v[i] if i is not None and v.ndim else v)
        picked = {k: _json_column(c[i, ts] if i is not None else c[ts]) for k, c in cols.items()}
        for j, t in enumerate(ts.tolist()):
            rows.append({"step": steps[t], **const, **{k: c[j] for k, c in picked.items()}})
    return rows


def write_history(
    workdir: str,
    history: dict[str, Any],
    *,
    labels: dict[str, Any] | None = None,
    every: int = 1,
    steps: Sequence[int] | np.ndarray | None = None,
    append: bool = False,
) -> int:
    """Writes a history computed as arrays (a scan, a `dl.train.sweep`) to `workdir/metrics.jsonl`
    as the loop's JSON rows (see `history_rows`); returns the number of rows written.

    append: add to the file rather than replace it (several arms of one experiment).
    """
    rows = history_rows(history, labels=labels, every=every, steps=steps)
    with open(os.path.join(workdir, "metrics.jsonl"), "a" if append else "w") as f:
        f.writelines(json.dumps(r, allow_nan=False) + "\n" for r in rows)
    return len(rows)


def train(
    state: TrainState,
    *,
    train_step: Callable,
    batch_fn: Callable[[int], dict],
    num_steps: int,
    workdir: str,
    eval_fn: Callable[[TrainState], dict[str, float]] | None = None,
    eval_every: int = 0,
    monitor: str = "val_accuracy",
    mode: str = "max",
    patience: int = 0,
    checkpoint_every: int = 0,
    resume: bool = False,
    log_every: int = 50,
    callbacks: Sequence[Callable[[TrainState, dict[str, float]], TrainState]] = (),
    shard: Callable[[dict], dict] | None = None,
    progress: bool = True,
    desc: str = "train",
) -> tuple[TrainState, list[dict[str, Any]], dict[str, Any]]:
    """Runs `train_step` from `state.step` to `num_steps`.

    Args:
      train_step: jitted `(state, batch) -> (state, metrics)`, e.g. `jit_train_step(loss_fn)`.
      batch_fn: `step -> host batch`, deterministic in the step (e.g. `Loader.batch`).
      eval_fn: `state -> {"val_...": float}`, called every `eval_every` steps and at the end.
      monitor, mode, patience: early stopping after `patience` evaluations without improvement of
        `eval[monitor]` (mode "max" or "min"); 0 disables it. The best parameters are returned.
      checkpoint_every: save every this many steps (and at the end); 0 saves only at the end.
      resume: continue from the newest readable checkpoint in `workdir/checkpoints` if there is
        one (`Checkpointer.restore_latest`: damaged newer ones are skipped with a warning, a
        checkpoint of another config raises CheckpointError); otherwise any old checkpoints
        there are removed.
      callbacks: `(state, eval_metrics) -> state`, run after each evaluation (e.g. halving the
        learning rate when the validation error rises).
      shard: places a host batch on devices (e.g. `partial(shard_batch, mesh=mesh)`).
    Returns:
      (final state, history rows, summary) where summary holds `best_params`, `best`, `best_step`,
      `stopped_early` and `wall_time_s`.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not resume and os.path.isdir(ckpt_dir):
        shutil.rmtree(ckpt_dir)
    ckpt = Checkpointer(ckpt_dir) if (checkpoint_every or resume) else None
    sign = 1.0 if mode == "max" else -1.0
    meta: dict[str, Any] = {"best": None, "best_step": None, "bad_evals": 0, "callback_state": {}}
    best_params = None
    resume_step = None
    restored = ckpt.restore_latest((state, state.params)) if resume else None
    if restored is not None:
        (state, best_params), meta, _ = restored
        resume_step = int(state.step)
    writer = MetricsWriter(os.path.join(workdir, "metrics.jsonl"), resume_step=resume_step)
    for cb in callbacks:  # callbacks that remember values (HalveOnRise) resume too
        if hasattr(cb, "load_state_dict") and repr(cb) in meta["callback_state"]:
            cb.load_state_dict(meta["callback_state"][repr(cb)])

    pending: list[tuple[int, dict[str, jax.Array]]] = []
    last: dict[str, float] = {}

    def flush() -> None:
        """Brings pending step metrics to the host once (keeps dispatch asynchronous in between)."""
        nonlocal pending, last
        if not pending:
            return
        host = jax.device_get([m for _, m in pending])
        rows = []
        for (step, _), m in zip(pending, host):
            m = {k: float(np.asarray(v)) for k, v in m.items()}
            check_finite(step, m)
            rows.append({"step": step, **m})
        pending = []
        last = rows[-1]
        writer.write(rows)

    def save() -> None:
        meta["callback_state"] = {
            repr(cb): cb.state_dict() for cb in callbacks if hasattr(cb, "state_dict")
        }
        ckpt.save(
            int(state.step), (state, best_params if best_params is not None else state.params), meta
        )

    start = time.perf_counter()
    stopped_early = False
    bar = tqdm(
        total=num_steps,
        initial=int(state.step),
        desc=desc,
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    )
    step = int(state.step)
    while step < num_steps:
        batch = batch_fn(step)
        if shard is not None:
            batch = shard(batch)
        state, metrics = train_step(state, batch)
        step += 1  # `step` counts completed steps, mirroring state.step without a device sync
        pending.append((step, metrics))
        bar.update(1)
        is_eval = eval_fn is not None and eval_every and step % eval_every == 0
        if len(pending) >= log_every or is_eval or step == num_steps:
            flush()
            bar.set_postfix(loss=f"{last['loss']:.4g}", refresh=False)
        if is_eval or (eval_fn is not None and step == num_steps):
            ev = eval_fn(state)
            writer.write([{"step": step, **ev}])
            bar.set_postfix(
                loss=f"{last['loss']:.4g}", **{monitor: f"{ev.get(monitor, float('nan')):.4g}"}
            )
            for cb in callbacks:
                state = cb(state, ev)
            if monitor in ev:
                if meta["best"] is None or sign * ev[monitor] > sign * meta["best"]:
                    meta.update(best=ev[monitor], best_step=step, bad_evals=0)
                    best_params = jax.tree.map(lambda x: x.copy(), state.params)
                else:
                    meta["bad_evals"] += 1
                    if patience and meta["bad_evals"] >= patience:
                        stopped_early = True
        if ckpt is not None and (
            (checkpoint_every and step % checkpoint_every == 0)
            or step == num_steps
            or stopped_early
        ):
            save()
        if stopped_early:
            break
    flush()
    bar.close()
    if ckpt is not None:
        ckpt.close()
    summary = {
        "best_params": best_params if best_params is not None else state.params,
        "best": meta["best"],
        "best_step": meta["best_step"],
        "stopped_early": stopped_early,
        "wall_time_s": time.perf_counter() - start,
    }
    return state, writer.rows, summary
