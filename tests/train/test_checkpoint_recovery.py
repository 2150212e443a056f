"""--resume over damaged or foreign checkpoints: the newest readable one is used (and the run still
ends bit-identical), none readable or another config is one CheckpointError line, no checkpoint is
one line and a start from step 0; the command line turns the errors into one line and status 2."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl import optim
from dl.train import CheckpointError, sweep
from dl.train.checkpoint import Checkpointer
from dl.train.loop import train
from dl.train.state import TrainState
from dl.train.step import jit_train_step

ROOT = Path(__file__).resolve().parents[2]
STEPS, EVERY = 15, 5  # checkpoints at steps 5, 10 and 15 (all three kept)


def _loss(params, extra, batch, rng):
    err = batch["x"] @ params["w"] - batch["y"]
    return jnp.mean(err**2), ({}, extra)


STEP = jit_train_step(_loss)  # module level: one compilation for every test


def _batch(step):  # deterministic in the step, as exact resume requires
    rng = np.random.default_rng(step)
    return {
        "x": rng.normal(size=(8, 32)).astype(np.float32),
        "y": rng.normal(size=(8, 64)).astype(np.float32),
    }


VAL = _batch(10**6)


def _state(width=64):
    # Random weights: ~8 KB per array, too big for orbax to inline in its index, so the array
    # bytes sit in a data file of their own.
    w = jax.random.normal(jax.random.PRNGKey(0), (32, width))
    return TrainState.create(
        apply_fn=None, params={"w": w}, tx=optim.adam(1e-2), rng=jax.random.PRNGKey(1)
    )


def _train(workdir, *, resume, state=None):
    return train(
        state or _state(),
        train_step=STEP,
        batch_fn=_batch,
        num_steps=STEPS,
        workdir=str(workdir),
        eval_fn=lambda s: {"val_loss": float(_loss(s.params, {}, VAL, None)[0])},
        eval_every=EVERY,
        monitor="val_loss",
        mode="min",
        checkpoint_every=EVERY,
        resume=resume,
        progress=False,
    )


def _step_dirs(root) -> dict[int, Path]:
    return {int(p.name): p for p in Path(root).iterdir() if p.name.isdigit()}


def _damage(step_dir: Path, how: str) -> None:
    """Damages the biggest file orbax wrote under `step_dir/state` (the array bytes)."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
    big = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(big.read_bytes())
    mid = len(data) // 2
    if how == "flip":  # 16 bytes in the middle of the (compressed) chunk data
        data[mid : mid + 16] = bytes(b ^ 0xFF for b in data[mid : mid + 16])
        big.write_bytes(bytes(data))
    elif how == "checksum":  # the params no longer match their CRC-32, as after a silent flip
        path = step_dir / "crc32" / "metadata"
        stored = json.loads(path.read_text())
        stored["0/params/w"] ^= 1
        path.write_text(json.dumps(stored))
    elif how == "truncate":
        big.write_bytes(bytes(data[:mid]))
    elif how == "delete":
        big.unlink()


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """An uninterrupted run: (final state, metrics.jsonl text)."""
    workdir = tmp_path_factory.mktemp("whole")
    state, _, summary = _train(workdir, resume=False)
    return state, summary, (workdir / "metrics.jsonl").read_text()


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("how", ["flip", "checksum", "truncate", "delete"])
def test_damaged_newest_falls_back_and_ends_bit_identical(tmp_path, capsys, whole, how):
    _train(tmp_path, resume=False)
    ckpts = tmp_path / "checkpoints"
    _damage(_step_dirs(ckpts)[STEPS], how)
    capsys.readouterr()
    state, _, summary = _train(tmp_path, resume=True)
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.fullmatch(
        rf"warning: checkpoint 15 \(.+\) under {re.escape(str(ckpts))} is unreadable; "
        r"deleted it, resuming from step 10\n",
        err,
    ), err
    # A flip inside the compressed chunks is caught by the reader (the decompressor) or, when
    # the damaged chunk still decodes to other numbers, by the stored CRC-32; which one depends
    # on where the middle of the file falls, so "checksum" checks the CRC path on its own.
    if how == "checksum":
        assert "array 0/params/w fails its checksum" in err
    want_state, want_summary, want_rows = whole
    _assert_same(state, want_state)
    _assert_same(summary["best_params"], want_summary["best_params"])
    assert summary["best_step"] == want_summary["best_step"]
    assert (tmp_path / "metrics.jsonl").read_text() == want_rows
    # Step 15 was saved again, intact: the next resume reads it without a warning.
    assert sorted(_step_dirs(ckpts)) == [5, 10, 15]
    ckpt = Checkpointer(str(ckpts))
    _, _, step = ckpt.restore_latest((_state(), _state().params))
    ckpt.close()
    assert step == STEPS and capsys.readouterr().err == ""


def test_no_readable_checkpoint_is_one_error(tmp_path):
    _train(tmp_path, resume=False)
    ckpts = tmp_path / "checkpoints"
    for step_dir in _step_dirs(ckpts).values():
        _damage(step_dir, "truncate")
    with pytest.raises(CheckpointError) as e:
        _train(tmp_path, resume=True)
    msg = str(e.value)
    assert msg.startswith(f"no readable checkpoint under {ckpts} (steps 15, 10, 5; newest: ")
    assert msg.endswith("); use another --workdir or drop --resume") and "\n" not in msg
    assert sorted(_step_dirs(ckpts)) == [5, 10, 15]  # nothing deleted when nothing was usable


def test_other_config_is_one_error_naming_the_leaf(tmp_path):
    _train(tmp_path, resume=False)
    with pytest.raises(CheckpointError) as e:
        _train(tmp_path, resume=True, state=_state(width=48))
    assert str(e.value) == (
        f"checkpoint under {tmp_path / 'checkpoints'} does not match this config: "
        "0/params/w has shape (32, 64) in the checkpoint, (32, 48) here; "
        "use another --workdir or drop --resume"
    )
    assert sorted(_step_dirs(tmp_path / "checkpoints")) == [5, 10, 15]  # no fallback, no delete


def test_other_dtype_is_named_too(tmp_path):
    ckpt = Checkpointer(str(tmp_path))
    ckpt.save(1, {"w": jnp.zeros(3, jnp.float32), "n": jnp.zeros((), jnp.int32)}, {})
    ckpt.wait()
    with pytest.raises(
        CheckpointError, match=r": n has dtype int32 in the checkpoint, float32 here"
    ):
        ckpt.restore_latest({"w": jnp.zeros(3, jnp.float32), "n": jnp.zeros((), jnp.float32)})
    with pytest.raises(CheckpointError, match=r": v is missing from the checkpoint"):
        ckpt.restore_latest({"w": jnp.zeros(3), "n": jnp.zeros((), jnp.int32), "v": jnp.zeros(1)})
    with pytest.raises(CheckpointError, match=r": n is in the checkpoint but not here"):
        ckpt.restore_latest({"w": jnp.zeros(3)})
    ckpt.close()


def test_resume_without_checkpoint_says_so_and_starts_at_0(tmp_path, capsys, whole):
    state, rows, _ = _train(tmp_path, resume=True)
    assert capsys.readouterr().err == (
        f"no checkpoint under {tmp_path / 'checkpoints'}; starting from step 0\n"
    )
    assert rows[0]["step"] == 1
    _assert_same(state, whole[0])


def test_unknown_errors_keep_their_traceback(tmp_path, monkeypatch):
    """Only errors that mean damaged files fall back; a bug elsewhere propagates as itself."""
    ckpt = Checkpointer(str(tmp_path))
    ckpt.save(1, {"w": jnp.zeros(3)}, {})
    ckpt.wait()

    def broken(*args, **kwargs):
        raise TypeError("a bug, not a damaged file")

    monkeypatch.setattr(ckpt._manager, "restore", broken)
    with pytest.raises(TypeError, match="a bug"):
        ckpt.restore_latest({"w": jnp.zeros(3)})
    ckpt.close()


# ---- the sweep path (train_chunked) shares restore_latest ----------------------------------


def _chunked(workdir, **kw):
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    hparams = {"learning_rate": jnp.array([0.1, 0.01])}

    def init_fn(key, hp):
        return {"w": jax.random.normal(key, (32, 64))}

    params, step_keys = jax.jit(sweep.init_models, static_argnames="init_fn")(
        keys, hparams, init_fn=init_fn
    )
    return sweep.train_chunked(
        params,
        step_keys,
        hparams,
        sweep.stack_batches(_batch, 6),
        make_loss=lambda hp: _loss,
        make_tx=lambda hp: optim.adam(hp["learning_rate"]),
        num_steps=6,
        chunk_steps=2,
        checkpoint_every=1,
        workdir=str(workdir),
        progress=False,
        **kw,
    )


def test_sweep_damaged_newest_falls_back_and_ends_bit_identical(tmp_path, capsys):
    whole = _chunked(tmp_path / "whole")
    _chunked(tmp_path / "cut")
    ckpts = tmp_path / "cut" / "checkpoints" / "sweep"
    _damage(_step_dirs(ckpts)[6], "flip")
    capsys.readouterr()
    resumed = _chunked(tmp_path / "cut", resume=True)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint 6 (" in err
    assert err.endswith("resuming from step 4\n"), err
    _assert_same(resumed.params, whole.params)
    for k in whole.history:
        np.testing.assert_array_equal(resumed.history[k], whole.history[k])
    text = (tmp_path / "whole" / "metrics.jsonl").read_text()
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == text


# ---- the command line: one line on stderr, status 2 for the fatal cases ---------------------


def _cli(*args):
    return subprocess.run(
        [sys.executable, "run.py", "digits_mlp", "--scale", "smoke", *args],
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_cli_resume_errors_are_one_line(tmp_path):
    workdir = str(tmp_path / "w")
    small = ["--workdir", workdir, "--config.checkpoint_every_epochs=1", "--config.sklearn=False"]
    first = _cli(*small, "--config.hidden=(64,)", "--resume")
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stderr.startswith("no checkpoint under ") and first.stderr.count("\n") == 1, (
        first.stderr
    )
    roots = {p.parent for p in Path(workdir, "checkpoints").rglob("*") if p.name.isdigit()}

    other = _cli(*small, "--config.hidden=(128,)", "--resume")
    assert other.returncode == 2, other.stderr[-3000:]
    assert other.stderr.count("\n") == 1, other.stderr
    # The first differing leaf of the first hidden layer, e.g. "0/params/Dense_0/bias has shape
    # (64,) in the checkpoint, (128,) here" (or (5, 64) with a leading seed axis).
    assert re.search(
        r"does not match this config: \S*params/\S+_0/\w+ has shape \([^)]*64\) in the "
        r"checkpoint, \([^)]*128\) here; use another --workdir or drop --resume$",
        other.stderr,
        re.IGNORECASE,
    ), other.stderr

    for root in roots:  # the newest of each checkpoint folder
        _damage(max(_step_dirs(root).items())[1], "flip")
    fallback = _cli(*small, "--config.hidden=(64,)", "--resume")
    assert fallback.returncode == 0, fallback.stderr[-3000:]
    # One warning per folder and nothing from orbax (XLA may add its own "slow compile" alarm
    # on a busy machine, so other lines are not counted here).
    warnings = [line for line in fallback.stderr.splitlines() if "checkpoint" in line]
    assert len(warnings) == len(roots), fallback.stderr
    assert all(w.startswith("warning: checkpoint ") for w in warnings), fallback.stderr
    assert "absl" not in fallback.stderr and "Traceback" not in fallback.stderr, fallback.stderr

    for root in roots:
        for step_dir in _step_dirs(root).values():
            _damage(step_dir, "truncate")
    broken = _cli(*small, "--config.hidden=(64,)", "--resume")
    assert broken.returncode == 2, broken.stderr[-3000:]
    assert broken.stderr.startswith("run.py: error: no readable checkpoint under ")
    assert broken.stderr.count("\n") == 1, broken.stderr
