"""Smoke test of experiments/source_reversal.py on the synthetic Multi30K corpus."""

import math
import os

import pytest

from experiments import source_reversal as sr
from experiments._runner import UsageError, run_experiment


def test_smoke(tmp_path, synthetic_multi30k):
    results = run_experiment(
        "source_reversal",
        {"source_reversal": sr},
        scale="smoke",
        workdir=str(tmp_path),
        data_dir=str(synthetic_multi30k),
    )
    m = results["metrics"]
    assert [r["arm"] for r in m["table"]] == ["forward", "reversed"]
    for arm in sr.ARMS:
        assert os.path.getsize(tmp_path / arm / "metrics.jsonl") > 0
        assert 1.0 < m[f"{arm}_val_perplexity"] < 200  # vocabulary ~100 pieces
        assert math.isfinite(m[f"{arm}_test2016_bleu_beam5"])
    assert "tok:13a" in m["bleu_signature"]
    assert len(results["bars"]) == 1


def test_rejects_bad_config(tmp_path):
    with pytest.raises(UsageError, match="direction"):
        run_experiment(
            "source_reversal",
            {"source_reversal": sr},
            scale="smoke",
            workdir=str(tmp_path),
            overrides=["direction='en-fr'"],
        )
