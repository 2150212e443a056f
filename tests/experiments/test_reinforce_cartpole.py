"""Smoke test of experiments/reinforce_cartpole.py: files, metrics and rows per model."""

import json
import math
import os

from experiments import reinforce_cartpole as rc
from experiments._runner import run_experiment


def test_smoke(tmp_path):
    results = run_experiment(
        "reinforce_cartpole",
        {"reinforce_cartpole": rc},
        scale="smoke",
        workdir=str(tmp_path),
    )
    for name in (
        "config.json",
        "results.json",
        "learning_curves.png",
        "gradient_variance.png",
        "metrics.jsonl",
    ):
        assert os.path.getsize(tmp_path / name) > 0, name
    m = results["metrics"]
    config = rc.get_config("smoke")
    for arm in config.estimators:
        assert len(m[f"{arm}_return_per_seed"]) == config.num_seeds
        assert 1 <= m[f"{arm}_return"] <= config.rollout_steps
    assert m["checkpoints"] == list(
        range(config.eval_every, config.num_updates + 1, config.eval_every)
    )
    for e in ("moving_average", "value"):
        assert all(math.isfinite(r) and r > 0 for r in m[f"variance_ratio_{e}"])
    assert len(results["bars"]) == 4
    with open(tmp_path / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    models = config.num_seeds * len(config.estimators)
    train_rows = [r for r in rows if "episode_return" in r]
    assert len(train_rows) == models * config.num_updates
    assert {r["estimator"] for r in rows} == set(config.estimators)
