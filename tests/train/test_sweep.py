"""dl.train.sweep: a vmapped sweep equals separate runs of the engine's step, and compiles once."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.ops.losses import cross_entropy
from dl.optim.optimizers import adam
from dl.train import sweep
from dl.train.state import TrainState
from dl.train.step import jit_train_step

DIM, CLASSES, BATCH, STEPS = 5, 3, 8, 12


def init_fn(key, hparams):
    """A linear classifier whose initial scale is itself a hyperparameter."""
    kw, kb = jax.random.split(key)
    return {
        "w": hparams["init_scale"] * jax.random.normal(kw, (DIM, CLASSES)),
        "b": 0.1 * jax.random.normal(kb, (CLASSES,)),
    }


TRACES = {"loss": 0}


def make_loss(hparams, dropout=True):
    def loss_fn(params, extra, batch, rng):
        TRACES["loss"] += 1  # runs once per trace, never per step of a compiled program
        x = batch["x"]
        if dropout:  # input dropout from the step's key: checks the per-model, per-step keys
            x = jnp.where(jax.random.bernoulli(rng, 0.75, x.shape), x / 0.75, 0.0)
        logits = x @ params["w"] + params["b"]
        ce = cross_entropy(logits=logits, targets=batch["y"], mask=batch["mask"])
        loss = ce + hparams["l2"] * jnp.sum(params["w"] ** 2)
        return loss, ({"ce": ce}, extra)

    return loss_fn


def make_tx(hparams):
    return adam(hparams["learning_rate"])


FACTORIES = {"init_fn": init_fn, "make_loss": make_loss, "make_tx": make_tx}
# Without dropout: cheaper to compile, for the tests of compilation and timing plumbing.
PLAIN = {
    "init_fn": init_fn,
    "make_loss": lambda hp: make_loss(hp, dropout=False),
    "make_tx": make_tx,
}
# Module level so that tests with equal shapes share one compilation.
SWEEP = sweep.jit_sweep(**FACTORIES)
SWEEP_PER_MODEL = sweep.jit_sweep(**PLAIN, batch_axis=0)
TRAIN_ONE = sweep.jit_train_one(**PLAIN)


def schedule(seed, steps=STEPS):
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(steps, BATCH, DIM)).astype(np.float32),
        "y": rng.integers(0, CLASSES, (steps, BATCH)).astype(np.int32),
        "mask": (rng.random((steps, BATCH)) < 0.9).astype(np.float32),
    }


HPARAMS = {
    "learning_rate": np.array([0.3, 0.01, 0.1], np.float32),
    "l2": np.array([0.0, 0.5, 1e-3], np.float32),
    "init_scale": np.array([1.0, 0.1, 2.0], np.float32),
}


def engine_run(key, hp: dict, batches) -> tuple[dict, list[float]]:
    """The reference: the engine's jitted step from a TrainState, one Python call per step, with
    the hyperparameters as Python floats (so nothing here is traced or vmapped)."""
    init_key, step_key = jax.random.split(key)
    state = TrainState.create(
        apply_fn=None, params=init_fn(init_key, hp), tx=adam(hp["learning_rate"]), rng=step_key
    )
    step = jit_train_step(make_loss(hp))
    losses = []
    for t in range(len(batches["x"])):
        state, metrics = step(state, {k: v[t] for k, v in batches.items()})
        losses.append(float(metrics["loss"]))
    return jax.device_get(state.params), losses


def test_sweep_equals_sequential_engine_runs():
    n = len(HPARAMS["l2"])
    keys = jax.random.split(jax.random.PRNGKey(7), n)
    batches = schedule(0)
    result = SWEEP(keys, jax.tree.map(jnp.asarray, HPARAMS), batches)
    assert result.metrics["loss"].shape == (n, STEPS)
    assert result.params["w"].shape == (n, DIM, CLASSES)
    for i in range(n):
        params, losses = engine_run(keys[i], {k: float(v[i]) for k, v in HPARAMS.items()}, batches)
        np.testing.assert_allclose(result.metrics["loss"][i], losses, rtol=1e-5, atol=1e-6)
        for name in params:
            np.testing.assert_allclose(result.params[name][i], params[name], rtol=1e-5, atol=1e-6)
    # The hyperparameters really differ per model: the runs are not copies of one another.
    assert np.ptp(np.asarray(result.metrics["loss"][:, -1])) > 1e-2


def test_per_model_schedules_equal_single_runs():
    """batch_axis=0: model i trains on its own schedule, exactly as `train_one` on that one."""
    n = len(HPARAMS["l2"])
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    per_model = [schedule(10 + i) for i in range(n)]
    hparams = jax.tree.map(jnp.asarray, HPARAMS)
    swept = SWEEP_PER_MODEL(keys, hparams, jax.tree.map(lambda *a: np.stack(a), *per_model))
    for i in range(n):
        single = TRAIN_ONE(keys[i], sweep.model_slice(hparams, i), per_model[i])
        np.testing.assert_allclose(single.params["w"], swept.params["w"][i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            single.metrics["grad_norm"], swept.metrics["grad_norm"][i], rtol=1e-5, atol=1e-6
        )


def test_one_compilation_for_the_whole_sweep():
    f = sweep.jit_sweep(**PLAIN)
    batches = schedule(0)
    before = TRACES["loss"]
    first = f(
        jax.random.split(jax.random.PRNGKey(0), 3), jax.tree.map(jnp.asarray, HPARAMS), batches
    )
    traced = TRACES["loss"] - before
    assert traced >= 1
    # New keys, new hyperparameter values, new data of the same shapes: no new trace.
    other = {k: jnp.asarray(v[::-1].copy()) for k, v in HPARAMS.items()}
    second = f(jax.random.split(jax.random.PRNGKey(1), 3), other, schedule(1))
    assert TRACES["loss"] - before == traced
    assert f._cache_size() == 1
    assert not np.allclose(first.params["w"], second.params["w"])


def test_stack_batches():
    out = sweep.stack_batches(lambda t: {"x": np.full((2, 3), t, np.float32), "i": np.int32(t)}, 4)
    assert out["x"].shape == (4, 2, 3) and out["i"].shape == (4,)
    np.testing.assert_array_equal(out["x"][:, 0, 0], np.arange(4))
    np.testing.assert_array_equal(out["i"], np.arange(4))


def test_time_against_sequential_reports_consistent_medians():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    hparams = jax.tree.map(jnp.asarray, HPARAMS)
    batches = schedule(0, steps=4)
    swept, sweep_s = sweep.compile_timed(sweep.jit_sweep(**PLAIN), keys, hparams, batches)
    one, one_s = sweep.compile_timed(
        sweep.jit_train_one(**PLAIN), keys[0], sweep.model_slice(hparams, 0), batches
    )
    assert sweep_s > 0 and one_s > 0
    res = sweep.time_against_sequential(swept, one, keys, hparams, batches, repeats=3)
    assert len(res["sweep_runs_s"]) == len(res["sequential_runs_s"]) == 3
    assert res["sweep_s"] == np.median(res["sweep_runs_s"])
    assert res["sequential_s"] == np.median(res["sequential_runs_s"])
    assert res["speedup"] == pytest.approx(res["sequential_s"] / res["sweep_s"])


# ---- train_chunked: the long-sweep driver ------------------------------------------------------


def chunked(workdir, keys, hparams, batches, **kw):
    params, step_keys = jax.jit(sweep.init_models, static_argnames="init_fn")(
        keys, hparams, init_fn=init_fn
    )
    kw = {"num_steps": STEPS, "chunk_steps": 5, "progress": False, **kw}
    return sweep.train_chunked(
        params, step_keys, hparams, batches, make_loss=make_loss, make_tx=make_tx,
        workdir=str(workdir), **kw,
    )  # fmt: skip


def test_chunked_equals_one_shot_sweep(tmp_path):
    """Chunks of 5, 5 and a partial 2 steps give the parameters of one `jit_sweep` call over the
    same schedule and keys, and rows of per-chunk metric means."""
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    hparams = jax.tree.map(jnp.asarray, HPARAMS)
    batches = schedule(0)
    one_shot = SWEEP(keys, hparams, batches)
    out = chunked(tmp_path, keys, hparams, batches)
    for name in one_shot.params:
        np.testing.assert_allclose(out.params[name], one_shot.params[name], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(out.steps, [5, 10, 12])
    for c, (a, b) in enumerate([(0, 5), (5, 10), (10, 12)]):
        np.testing.assert_allclose(
            out.history["loss"][:, c], one_shot.metrics["loss"][:, a:b].mean(1), rtol=1e-6
        )
    np.testing.assert_array_equal(out.history["nonfinite_steps"], 0)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 3 and {r["step"] for r in rows} == {5, 10, 12}


def val_fn(x, y):
    @jax.jit
    def fn(params):  # [n] validation cross-entropy
        logits = jnp.einsum("bd,ndc->nbc", x, params["w"]) + params["b"][:, None]
        return {"val_loss": jax.vmap(lambda lg: cross_entropy(logits=lg, targets=y))(logits)}

    return fn


def test_chunked_resume_is_bit_identical(tmp_path):
    """Killed by an exception in the 4th evaluation (checkpoints after chunks 2, 4, 6; chunk 3's
    rows already written), then resumed: final and best parameters, history and metrics.jsonl
    (appended after another arm's row) equal an uninterrupted run's exactly."""
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    hparams = jax.tree.map(jnp.asarray, HPARAMS)
    batches, val = schedule(2), schedule(3, steps=1)
    evaluate = val_fn(jnp.asarray(val["x"][0]), jnp.asarray(val["y"][0]))
    kw = {
        "chunk_steps": 2,
        "checkpoint_every": 2,
        "monitor": "val_loss",
        "mode": "min",
        "append": True,
        "labels": {"lr": HPARAMS["learning_rate"], "arm": "adam"},
    }
    calls = []

    def dying(params):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return evaluate(params)

    runs = {}
    for name in ("whole", "resumed"):
        workdir = tmp_path / name
        workdir.mkdir()
        (workdir / "metrics.jsonl").write_text('{"step": 0, "other_arm": 1}\n')
        if name == "resumed":
            with pytest.raises(KeyboardInterrupt):
                chunked(workdir, keys, hparams, batches, eval_fn=dying, **kw)
            assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 1 + 3 * 3
        runs[name] = chunked(workdir, keys, hparams, batches, eval_fn=evaluate, resume=True, **kw)
    whole, resumed = runs["whole"], runs["resumed"]
    for tree in ("params", "best_params"):
        for a, b in zip(
            jax.tree.leaves(getattr(whole, tree)), jax.tree.leaves(getattr(resumed, tree))
        ):
            np.testing.assert_array_equal(a, b)
    for k in whole.history:
        np.testing.assert_array_equal(whole.history[k], resumed.history[k])
    np.testing.assert_array_equal(whole.best_step, resumed.best_step)
    np.testing.assert_array_equal(whole.best["val_loss"], resumed.best["val_loss"])
    text = (tmp_path / "whole" / "metrics.jsonl").read_text()
    assert text == (tmp_path / "resumed" / "metrics.jsonl").read_text()
    assert len(text.splitlines()) == 1 + 6 * 3
    # The best step is where each model's validation loss was lowest.
    np.testing.assert_array_equal(
        whole.best_step, whole.steps[np.argmin(whole.history["val_loss"], axis=1)]
    )


def test_chunked_diverged_model_is_recorded_not_fatal(tmp_path, capsys):
    """A model with NaN weights neither stops the sweep nor disturbs the others; its rows say
    so (null values, nonfinite_steps); the progress bar goes to stderr unless disabled."""
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    hp = {k: v.copy() for k, v in HPARAMS.items()}
    hp["init_scale"][1] = np.nan
    hparams = jax.tree.map(jnp.asarray, hp)
    batches = schedule(0)
    out = chunked(tmp_path, keys, hparams, batches, progress=True)
    assert "sweep" in capsys.readouterr().err
    np.testing.assert_array_equal(out.history["nonfinite_steps"], [[0, 0, 0], [5, 5, 2], [0, 0, 0]])
    assert np.all(np.isnan(out.history["loss"][1])) and np.all(np.isfinite(out.history["loss"][0]))
    one_shot = SWEEP(keys, hparams, batches)
    np.testing.assert_allclose(out.params["w"][2], one_shot.params["w"][2], rtol=1e-6, atol=1e-7)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss"] is None for r in rows if r["model"] == 1)
    chunked(tmp_path, keys, hparams, batches, num_steps=5, progress=False)
    assert capsys.readouterr().err == ""
