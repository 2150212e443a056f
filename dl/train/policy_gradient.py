"""On-policy training of many policies at once (seeds x estimators), in the engine's style.

Each model's update is the engine's pure step (`dl.train.step.train_step`) on a loss that
samples its own data: `loss_fn(params, extra, batch, rng)` rolls out fresh episodes with the
step's key `fold_in(rng, step)` (e.g. `dl.objectives.policy_gradient.make_reinforce_loss`), and
`extra` carries state that is not trained by gradients (a moving-average baseline). Steps run
as a `lax.scan` in chunks, `vmap`ped over the `m` models, one jitted program (state donated)
per chunk; between chunks come metrics.jsonl rows, the non-finite guard, evaluation and
checkpoints.

Why not `dl.train.sweep.train_chunked`: its models start with an empty `extra` and a model that
diverges does not stop the sweep; here `extra` is state, and a non-finite metric of any model
stops the run (`NonFiniteError`, naming the step, the model and the metric).

Exact resume: the data of step t are a function of (the model's key, t), and the whole stacked
TrainState is checkpointed (orbax, `dl.train.checkpoint.Checkpointer`), so a run interrupted
and resumed from a checkpoint ends bit-identical (on CPU) to an uninterrupted one, metrics.jsonl
included.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from dl.train.checkpoint import Checkpointer
from dl.train.loop import MetricsWriter, check_finite, history_rows
from dl.train.state import TrainState
from dl.train.step import train_step

# make_loss(hparams of one model) -> loss_fn(params, extra, batch, rng)
LossFactory = Callable[[Any], Callable[..., Any]]


def init_policy_states(
    params: Any, extra: Any, step_keys: jax.Array, tx: optax.GradientTransformation
) -> TrainState:
    """Stacked TrainStates of `m` models: params and extra leaves [m, ...], step keys [m, 2]."""

    def one(p, e, key):
        return TrainState.create(apply_fn=None, params=p, tx=tx, rng=key, extra=e)

    return jax.vmap(one)(params, extra, step_keys)


def train_chunk(
    state: TrainState, hparams: Any, steps: jax.Array, *, make_loss: LossFactory
) -> tuple[TrainState, dict[str, jax.Array]]:
    """Steps `steps` ([k] int32, consecutive) of every model: the new stacked state and the
    metrics, each [m, k]. Step t of model i is `train_step` with the key fold_in(rng_i, t)."""

    def one(state, hp):
        step = functools.partial(train_step, loss_fn=make_loss(hp))
        return jax.lax.scan(step, state, {"step": steps})

    return jax.vmap(one)(state, hparams)


# Module-level, with `make_loss` static: calls with the same factory (a resumed run, a test)
# reuse one compilation.
_jit_chunk = jax.jit(train_chunk, static_argnames="make_loss", donate_argnums=0)


def history(
    rows: list[dict[str, Any]], name: str, num_models: int
) -> tuple[np.ndarray, np.ndarray]:
    """(steps [T], values [m, T]) of metric `name` from rows with "step" and "model" (rows
    without `name`, such as evaluation rows, are skipped); missing entries are NaN."""
    rows = [r for r in rows if name in r]
    steps = sorted({r["step"] for r in rows})
    col = {s: j for j, s in enumerate(steps)}
    out = np.full((num_models, len(steps)), np.nan)
    for r in rows:
        out[r["model"], col[r["step"]]] = np.nan if r[name] is None else r[name]
    return np.asarray(steps, np.int64), out


def train_policies(
    params: Any,
    extra: Any,
    step_keys: jax.Array,
    hparams: Any,
    *,
    make_loss: LossFactory,
    tx: optax.GradientTransformation,
    num_steps: int,
    chunk_steps: int,
    workdir: str,
    eval_fn: Callable[[TrainState], dict[str, Any]] | None = None,
    eval_every: int = 0,
    labels: dict[str, Any] | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    log_every: int = 1,
    name: str = "policy_gradient",
    progress: bool = True,
) -> tuple[TrainState, list[dict[str, Any]]]:
    """Trains `m` models for `num_steps` updates; returns (final stacked state, metrics rows).

    Args:
      params, extra: leaves [m, ...] (copied, never donated); step_keys: [m, 2].
      hparams: leaves [m] (e.g. {"estimator": [m] int32}), given to `make_loss` per model.
      tx: one optimizer for all models (its settings are not swept).
      chunk_steps: updates per jitted call; eval and checkpoints happen at chunk ends.
      eval_fn: `stacked state -> {name: [m]}`, at steps that are multiples of `eval_every`
        (which must be a multiple of `chunk_steps`) and at the end.
      labels: constants or per-model [m] values added to every row.
      checkpoint_every: save every this many steps (a multiple of `chunk_steps`) and at the
        end to `workdir/checkpoints/<name>`; 0 saves only at the end when `resume` is set.
      resume: continue from the newest readable checkpoint (see `Checkpointer.restore_latest`);
        metrics.jsonl rows written after it are replaced by their recomputation.
      log_every: keep every `log_every`-th step's training row (and each chunk's last).
    Rows: {"step", "model", **labels, **step metrics} per model per kept step, and
    {"step", "model", **labels, **eval} per evaluation, all also in `workdir/metrics.jsonl`.
    Raises NonFiniteError when any model's metric is not finite.
    """
    for what, every in (("eval_every", eval_every), ("checkpoint_every", checkpoint_every)):
        if every % chunk_steps:
            raise ValueError(f"{what}={every} must be a multiple of chunk_steps={chunk_steps}")
    ckpt_dir = os.path.join(workdir, "checkpoints", name)
    if not resume and os.path.isdir(ckpt_dir):
        shutil.rmtree(ckpt_dir)
    ckpt = Checkpointer(ckpt_dir) if (checkpoint_every or resume) else None

    def copy(tree):  # chunks donate the state: never the caller's buffers
        return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)

    hparams = jax.tree.map(jnp.asarray, hparams)
    state = jax.jit(functools.partial(init_policy_states, tx=tx))(
        copy(params), copy(extra), copy(step_keys)
    )
    # Committed to its device, as a restored state is: otherwise a resumed run's first chunk
    # would see other input shardings and compile the program again.
    state = jax.tree.map(lambda x: jax.device_put(x, x.sharding), state)
    m = int(state.step.shape[0])
    restored = ckpt.restore_latest(state) if resume else None
    resume_step = None
    if restored is not None:
        state, _, resume_step = restored
    writer = MetricsWriter(os.path.join(workdir, "metrics.jsonl"), resume_step=resume_step)
    chunk = functools.partial(_jit_chunk, make_loss=make_loss)
    step = resume_step or 0
    bar = tqdm(total=num_steps, initial=step, desc=name, disable=not progress, leave=False)
    while step < num_steps:
        stop = min(step + chunk_steps, num_steps)
        state, metrics = chunk(state, hparams, jnp.arange(step, stop, dtype=jnp.int32))
        host = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
        for k, v in host.items():
            bad = np.argwhere(~np.isfinite(v))
            if bad.size:
                i, t = bad[0]
                check_finite(step + int(t) + 1, {f"{k} (model {int(i)})": float(v[i, t])})
        steps = np.arange(step + 1, stop + 1)
        rows = history_rows(host, labels=labels, steps=steps, every=log_every)
        step = stop
        if eval_fn is not None and ((eval_every and step % eval_every == 0) or step == num_steps):
            ev = {k: np.asarray(v) for k, v in jax.device_get(eval_fn(state)).items()}
            rows += history_rows(
                {k: v[:, None] for k, v in ev.items()}, labels=labels, steps=[step]
            )
        writer.write(rows)
        bar.update(len(steps))
        ret = host.get("episode_return")
        if ret is not None:
            bar.set_postfix(episode_return=f"{np.mean(ret[:, -1]):.1f}", refresh=False)
        if ckpt is not None and (
            (checkpoint_every and step % checkpoint_every == 0) or step == num_steps
        ):
            ckpt.save(step, state, {"step": step, "models": m})
            ckpt.wait()  # the next chunk donates the state
    bar.close()
    if ckpt is not None:
        ckpt.close()
    return state, writer.rows
