"""The engine's promises: exact resume after SIGKILL, the non-finite guard, early stopping,
checkpoint round trips, one compilation per step function, and 1 vs 8 devices agreeing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl import optim
from dl.train.checkpoint import Checkpointer
from dl.train.loop import NonFiniteError, train
from dl.train.state import TrainState
from dl.train.step import jit_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _quadratic_state(lr=0.1, tx=None, w=(3.0, -2.0)):
    params = {"w": jnp.array(w)}
    return TrainState.create(
        apply_fn=None, params=params, tx=tx or optax.sgd(lr), rng=jax.random.PRNGKey(0)
    )


def _quadratic_loss(params, extra, batch, rng):
    loss = jnp.sum((params["w"] - batch["target"]) ** 2)
    return loss, ({}, extra)


def _batch(step):
    return {"target": np.array([1.0, 1.0], np.float32)}


def test_train_step_descends_and_logs_norms(tmp_path):
    state, rows, _ = train(
        _quadratic_state(),
        train_step=jit_train_step(_quadratic_loss),
        batch_fn=_batch,
        num_steps=30,
        workdir=str(tmp_path),
        progress=False,
    )
    np.testing.assert_allclose(state.params["w"], [1.0, 1.0], atol=1e-2)
    # SGD on |w - t|^2 with lr 0.1: w_{k+1} - t = 0.8 (w_k - t), so the loss shrinks by 0.64.
    assert rows[1]["loss"] == pytest.approx(0.64 * rows[0]["loss"], rel=1e-5)
    assert rows[0]["update_norm"] == pytest.approx(0.1 * rows[0]["grad_norm"], rel=1e-6)
    with open(tmp_path / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == list(range(1, 31))


def test_non_finite_guard_names_step_and_metric(tmp_path):
    def loss_fn(params, extra, batch, rng):  # log(w) is NaN once w goes negative
        return jnp.sum(jnp.log(params["w"])), ({}, extra)

    # Step 1 sees w = (3, 2) and moves it to w - 10/w < 0; step 2's loss is NaN.
    with pytest.raises(NonFiniteError, match=r"non-finite loss=nan at step 2"):
        train(
            _quadratic_state(lr=10.0, w=(3.0, 2.0)),
            train_step=jit_train_step(loss_fn),
            batch_fn=_batch,
            num_steps=10,
            workdir=str(tmp_path),
            progress=False,
            log_every=1,
        )


def test_early_stopping_stops_and_returns_best(tmp_path):
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.6, 0.9])

    state, _rows, summary = train(
        _quadratic_state(),
        train_step=jit_train_step(_quadratic_loss),
        batch_fn=_batch,
        num_steps=100,
        workdir=str(tmp_path),
        eval_fn=lambda s: {"val_accuracy": next(scores)},
        eval_every=5,
        patience=3,
        progress=False,
    )
    assert summary["stopped_early"] and int(state.step) == 25  # evals at 5..25; best at 10
    assert summary["best"] == 0.7 and summary["best_step"] == 10


def test_checkpoint_round_trip(tmp_path):
    state = _quadratic_state(tx=optim.adam(1e-2))
    state, _ = jit_train_step(_quadratic_loss)(state, _batch(0))
    ckpt = Checkpointer(str(tmp_path / "ckpt"))
    ckpt.save(1, state, {"note": "hi"})
    ckpt.wait()
    fresh = _quadratic_state(tx=optim.adam(1e-2))
    restored, meta = ckpt.restore(fresh)
    ckpt.close()
    assert meta == {"note": "hi"}
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(a, b)


def test_second_call_does_not_retrace():
    chex.clear_trace_counter()
    step = jit_train_step(chex.assert_max_traces(_quadratic_loss, n=1))
    state = _quadratic_state()
    for i in range(3):
        state, _ = step(state, _batch(i))


def _run(args, env=None, check=True):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    p = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check and p.returncode:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return p


def _rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


KILL_AT_STEP = """
import os, signal, sys
from dl import data
real = data.Loader.batch
def batch(self, step):
  if step == int(sys.argv[1]):  # a real SIGKILL mid-run, after the checkpoint at step 17
    os.kill(os.getpid(), signal.SIGKILL)
  return real(self, step)
data.Loader.batch = batch
import run
run.main(sys.argv[2:])
"""

SMOKE = [
    "digits_mlp",
    "--scale",
    "smoke",
    "--config.num_epochs=3",
    "--config.checkpoint_every_epochs=1",
]


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path):
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    _run(["run.py", *SMOKE, "--workdir", full])
    killed = _run(["-c", KILL_AT_STEP, "25", *SMOKE, "--workdir", cut], check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert max(r["step"] for r in _rows(cut)) < 51  # it really stopped early
    _run(["run.py", *SMOKE, "--workdir", cut, "--resume"])
    a, b = _rows(full), _rows(cut)
    assert a == b  # every step's loss and norms, and every evaluation, to the last bit
    ra = json.loads(Path(full, "results.json").read_text())["metrics"]
    rb = json.loads(Path(cut, "results.json").read_text())["metrics"]
    assert ra["test_loss"] == rb["test_loss"] and ra["test_accuracy"] == rb["test_accuracy"]


# An experiment that trains through `fit`, data parallel over the mesh (digits_mlp vmaps its
# seeds on one device instead); its batch of 64 splits evenly over 8 devices.
DATA_PARALLEL = [
    "vanishing_gradients",
    "--scale",
    "smoke",
    "--config.arms=('relu_he',)",
    "--config.num_epochs=2",
]


@pytest.mark.slow
def test_eight_devices_match_one(tmp_path):
    one, eight = str(tmp_path / "one"), str(tmp_path / "eight")
    code = "import jax, sys, run; print('devices', jax.device_count()); run.main(sys.argv[1:])"
    p1 = _run(["-c", code, *DATA_PARALLEL, "--workdir", one])
    p8 = _run(
        ["-c", code, *DATA_PARALLEL, "--workdir", eight],
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
    )
    assert "devices 1" in p1.stdout and "devices 8" in p8.stdout
    a, b = _rows(os.path.join(one, "relu_he")), _rows(os.path.join(eight, "relu_he"))
    assert len(a) > 2
    assert [r.keys() for r in a] == [r.keys() for r in b]
    for ra, rb in zip(a, b):
        for k in ra:
            np.testing.assert_allclose(
                rb[k], ra[k], rtol=1e-5, atol=1e-6, err_msg=f"{k} @ {ra['step']}"
            )


def test_write_history_round_trip_nan_and_stride(tmp_path):
    """`write_history`: strict-JSON rows (NaN and inf as null), per-model labels, the stride
    keeps the first and last steps, and append adds a second arm."""
    from dl.train.loop import write_history

    loss = np.array([[1.0, np.nan, 0.5, 0.25, np.inf], [2.0, 1.0, 0.5, 0.1, 0.05]], np.float32)
    hp = {"learning_rate": np.array([0.1, 0.01]), "optimizer": "adam"}
    n = write_history(
        str(tmp_path), {"loss": loss, "mistakes": np.arange(10).reshape(2, 5)}, labels=hp, every=2
    )
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line, parse_constant=pytest.fail) for line in lines]
    assert n == len(rows) == 8  # steps 1 (first), 2, 4 (multiples of 2) and 5 (last)
    assert [(r["model"], r["step"]) for r in rows] == [(i, t) for i in (0, 1) for t in (1, 2, 4, 5)]
    assert rows[0] == {
        "step": 1,
        "model": 0,
        "learning_rate": 0.1,
        "optimizer": "adam",
        "loss": 1.0,
        "mistakes": 0,
    }
    assert [r["loss"] for r in rows[:4]] == [1.0, None, 0.25, None]  # NaN and inf: null
    assert rows[6]["learning_rate"] == 0.01 and rows[6]["mistakes"] == 8
    write_history(
        str(tmp_path),
        {"loss": np.array([np.nan, 3.0])},
        labels={"depth": 50},
        steps=[0, 1],
        append=True,
    )
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and rows[-2:] == [
        {"step": 0, "depth": 50, "loss": None},
        {"step": 1, "depth": 50, "loss": 3.0},
    ]
    write_history(str(tmp_path), {"loss": np.ones(3)})  # replaces the file by default
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
