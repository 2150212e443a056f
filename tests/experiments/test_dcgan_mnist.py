"""dcgan_mnist end to end on synthetic IDX files (no real MNIST needed), and the scorer cache
it shares with the other generative experiments."""

import json
import os

import jax
import numpy as np

from dl import data
from experiments import _scorer, dcgan_mnist
from experiments._runner import run_experiment


def test_smoke_on_synthetic_idx_files(tmp_path, synthetic_mnist):
    r = run_experiment(
        "dcgan_mnist",
        {"dcgan_mnist": dcgan_mnist},
        scale="smoke",
        workdir=str(tmp_path / "w"),
        data_dir=str(synthetic_mnist),
        # the conditional GAN only (each GAN compiles its own init, step and samplers): the
        # unconditional one is the same code at classes=0, unit-tested in tests/models/test_dcgan.py
        overrides=[f"scorer_dir={tmp_path}", "models=('conditional',)"],
    )
    m = r["metrics"]
    assert 0.0 <= m["label_accuracy"] <= 1.0 and len(m["label_accuracy_per_class"]) == 10
    assert "unconditional_fid" not in m  # `models` is honoured
    for name in ("conditional",):  # the models trained
        assert m[f"{name}_fid"] >= 0.0 and m[f"{name}_untrained_fid"] >= 0.0
        for png in (f"samples_{name}.png", f"curves_{name}.png"):
            assert os.path.getsize(tmp_path / "w" / png) > 0
        rows = [
            json.loads(line)
            for line in (tmp_path / "w" / name / "metrics.jsonl").read_text().splitlines()
        ]
        steps = [row["step"] for row in rows if "d_loss" in row]
        assert steps == [1, 2, 3] and all(np.isfinite(row["g_loss"]) for row in rows)
    assert os.path.getsize(tmp_path / "w" / "interpolation.png") > 0
    assert not m["scorer_cached"]  # the first run trains the scorer ...
    # ... which the next run restores from its orbax checkpoint: the same weights.
    splits = data.load("mnist", data_dir=str(synthetic_mnist), flatten=False)
    again = _scorer.get_scorer(splits, scale="smoke", root=str(tmp_path))
    assert not again.trained_now and again.test_accuracy == m["scorer_test_accuracy"]
    first = _scorer.get_scorer(splits, scale="smoke", root=str(tmp_path))
    for a, b in zip(jax.tree.leaves(first.variables), jax.tree.leaves(again.variables)):
        np.testing.assert_array_equal(a, b)
    # Other training images are another cache entry (never a stale scorer).
    other = data.ArrayData(splits["train"].x[::-1], splits["train"].y[::-1])
    assert _scorer.cache_dir(str(tmp_path), "smoke", other) != again.directory
    feats = again.features(splits["test"].x[:3])
    assert feats.shape == (3, _scorer.SETTINGS["smoke"]["hidden"])
