"""Smoke test of experiments/gan_mixtures.py: vmapped seeds train through the adversarial
engine, are scored, plotted and written."""

import json
import os

from experiments import gan_mixtures as gm
from experiments._runner import run_experiment


def test_smoke(tmp_path):
    results = run_experiment(
        "gan_mixtures",
        {"gan_mixtures": gm},
        scale="smoke",
        workdir=str(tmp_path),
        # One arm, one unrolled step: each compiled step costs seconds of CPU. The vanilla arm
        # is the same code with 0 unrolling steps (tests/objectives/test_gan.py).
        overrides=['arms=("unrolled",)', "unroll_steps=1"],
    )
    for name in ("config.json", "results.json", "metrics.jsonl", "samples_ring.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    m = results["metrics"]
    config = gm.get_config("smoke")
    assert len(m["ring_unrolled_modes_per_seed"]) == config.num_seeds
    assert 0 <= m["ring_unrolled_high_quality"] <= 100
    assert [(r["arm"], r["modes_paper"]) for r in m["table"]] == [("unrolled", 7.6)]
    assert len(results["bars"]) == 1  # the gap bar needs both arms
    with open(tmp_path / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert {r["arm"] for r in rows} == {"unrolled"}
    last = [r for r in rows if r["arm"] == "unrolled" and "d_loss/1" in r][-1]
    assert last["step"] == config.num_steps
    evals = [r["step"] for r in rows if "modes" in r]
    assert evals == list(range(config.plot_every, config.num_steps + 1, config.plot_every))
