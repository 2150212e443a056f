"""Smoke test of experiments/universal_approximation.py and its bar check.

Its reusable pieces are tested beside their homes in `dl`: tests/data/test_synthetic.py
(sawtooth), tests/models/test_approximation.py (padded nets, the exact deep net) and
tests/optim/test_least_squares.py (Levenberg-Marquardt).
"""

import json
import math
import os

import jax
import jax.numpy as jnp

from dl.nn.mlp import MLP
from dl.train.state import param_count
from experiments import universal_approximation as ua
from experiments._runner import run_experiment


def test_smoke(tmp_path):
    results = run_experiment(
        "universal_approximation",
        {"universal_approximation": ua},
        scale="smoke",
        workdir=str(tmp_path),
    )
    for name in ("config.json", "results.json", "width_error.png", "sawtooth.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "universal_approximation"
    m = results["metrics"]
    config = ua.get_config("smoke")
    assert [row["width"] for row in m["width_table"]] == list(config.widths)
    for row in m["width_table"] + m["sawtooth_table"]:
        assert math.isfinite(row["rms"]) and 0.0 <= row["rms"] <= row["max_error"]
    # The exact construction is exact at any scale; training is what smoke cuts short.
    assert m["deep_exact_params"] == 6 * config.k + 1
    assert m["deep_exact_rms"] < 1e-6
    assert m["deep_trained_params"] == param_count(
        MLP(hidden=(config.deep_train_width,) * config.k, out=1).init(
            jax.random.PRNGKey(0), jnp.zeros((1, 1))
        )["params"]
    )
    assert len(results["bars"]) == 4
    # No history: one final row per net (best candidate per width, each deep seed).
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    parts = [r["part"] for r in rows]
    assert parts.count("tanh_width") == len(config.widths)
    assert parts.count("relu_sawtooth") == len(config.shallow_widths)
    assert parts.count("deep_trained") == config.deep_train_seeds
    assert len(rows) == len(config.widths) + len(config.shallow_widths) + config.deep_train_seeds
    assert set(rows[0]) == {"step", "model", "part", "width", "rms", "max_error"}
    assert rows[0]["step"] == config.lm_steps and rows[-1]["step"] == config.deep_train_steps


def test_monotone_check():
    assert ua.monotone_ok([1.0, 0.5, 0.6, 0.1], rel_tol=1.25, abs_tol=0.0)
    assert not ua.monotone_ok([1.0, 0.5, 0.7], rel_tol=1.25, abs_tol=0.0)
    assert ua.monotone_ok([1.0, 0.5, 0.7], rel_tol=1.25, abs_tol=0.1)
