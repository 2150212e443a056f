"""Smoke test of experiments/perceptron.py: plumbing, artifacts, and the theorem on a few instances."""

import json
import math
import os

from experiments import perceptron
from experiments._runner import run_experiment


def test_smoke(tmp_path):
    results = run_experiment(
        "perceptron", {"perceptron": perceptron}, scale="smoke", workdir=str(tmp_path)
    )
    for name in ("config.json", "results.json", "novikoff.png", "xor_regions.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "perceptron"
    m = results["metrics"]
    config = perceptron.get_config("smoke")
    assert m["instances"] == len(config.margins) * config.instances_per_margin
    # Novikoff's bound is a theorem, so it must hold at any scale, as must convergence.
    assert 0.0 < m["worst_mistake_ratio"] <= 1.0
    assert m["converged_fraction"] == 1.0
    assert 1 <= m["max_mistakes"] and 1 <= m["max_epochs_used"]
    # No line classifies XOR; 4 equal, well-separated clusters allow at most about 3 of 4.
    assert 0.0 < m["xor_perceptron_best_accuracy"] < 1.0
    assert 0.0 <= m["xor_mlp_accuracy"] <= 1.0 and math.isfinite(m["xor_mlp_final_loss"])
    assert len(results["bars"]) == 4
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    by_arm = {arm: [r for r in rows if r["arm"] == arm] for arm in ("xor_perceptron", "xor_mlp")}
    assert len(by_arm["xor_perceptron"]) == config.xor_perceptron_epochs
    assert set(by_arm["xor_perceptron"][0]) == {"step", "arm", "mistakes", "accuracy"}
    assert len(by_arm["xor_mlp"]) == config.mlp_steps == len(rows) - config.xor_perceptron_epochs
    assert set(by_arm["xor_mlp"][-1]) == {"step", "arm", "loss", "accuracy"}
    assert all(isinstance(b["passed"], bool) for b in results["bars"])


def test_measured_radius_and_margin_match_the_generator():
    # R and gamma are measured from the data; the generator promises ||x|| <= radius and a margin
    # of exactly `margin` for w*, so the measured values must agree up to float32 rounding.
    config = perceptron.get_config("smoke")
    inst = perceptron.novikoff_instances(config)
    assert inst["x"].shape == (len(inst["margin"]), config.num_examples, config.dim)
    assert (inst["radius"] <= config.radius + 1e-6).all()
    assert abs(inst["gamma"] - inst["margin"]).max() < 1e-6
