"""dl.train.sweep: a vmapped sweep equals separate runs of the engine's step, and compiles once."""

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
