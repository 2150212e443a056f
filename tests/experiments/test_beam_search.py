"""Smoke test of experiments/beam_search.py on the synthetic Multi30K corpus: beam 1 must
equal greedy decoding exactly even on a barely trained model (a property of the search)."""

import pytest

from experiments import beam_search as bs
from experiments._runner import UsageError, run_experiment


def test_smoke(tmp_path, synthetic_multi30k):
    results = run_experiment(
        "beam_search",
        {"beam_search": bs},
        scale="smoke",
        workdir=str(tmp_path),
        data_dir=str(synthetic_multi30k),
    )
    m = results["metrics"]
    config = bs.get_config("smoke")
    singles = [r for r in m["table"] if r["system"] == "single"]
    assert len(singles) == 1 + 2 * len(config.beams)
    assert {r["system"] for r in m["table"]} == {"single", "ensemble of 2"}
    assert m["beam1_equals_greedy"] == 1.0
    assert m["beam5_score_at_least_greedy"] >= 0.9
    assert all(r["mean_log_prob"] < 0 for r in m["table"])
    assert len(m["seed_table"]) == 5 and len(results["bars"]) == 3


def test_rejects_beams_without_greedy_width(tmp_path):
    with pytest.raises(UsageError, match="beams"):
        run_experiment(
            "beam_search",
            {"beam_search": bs},
            scale="smoke",
            workdir=str(tmp_path),
            overrides=["beams=(2, 5)"],
        )
