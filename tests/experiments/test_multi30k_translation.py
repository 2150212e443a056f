"""Smoke test of experiments/multi30k_translation.py on the synthetic Multi30K corpus, and
rejection of bad config values."""

import json
import math
import os

import pytest

from experiments import multi30k_translation as mt
from experiments._runner import UsageError, run_experiment


def test_smoke(tmp_path, synthetic_multi30k):
    results = run_experiment(
        "multi30k_translation",
        {"multi30k_translation": mt},
        scale="smoke",
        workdir=str(tmp_path),
        data_dir=str(synthetic_multi30k),
    )
    m = results["metrics"]
    assert "tok:13a" in m["bleu_signature"]
    with open(tmp_path / "results.json") as f:
        assert "tok:13a" in json.load(f)["metrics"]["bleu_signature"]
    for lang in ("en", "de"):
        assert os.path.getsize(tmp_path / "en-de" / f"subword.{lang}.model") > 0
    assert os.path.getsize(tmp_path / "en-de" / "bahdanau_x2" / "metrics.jsonl") > 0
    rows = {(r["system"], r["decoding"]): r for r in m["table"]}
    systems = mt.get_config("smoke").systems
    assert set(rows) == {(s, d) for s in systems for d in ("greedy", "beam5")}
    for r in rows.values():
        assert 0.0 <= r["val_bleu"] <= 100.0 and math.isfinite(r["test2016_bleu"]), r
    assert set(m["en-de_examples"]) == set(systems)
    assert len(results["bars"]) == 1  # the quick bar of the systems run, at smoke scale too


def test_rejects_bad_config(tmp_path):
    with pytest.raises(UsageError, match="systems"):
        run_experiment(
            "multi30k_translation",
            {"multi30k_translation": mt},
            scale="smoke",
            workdir=str(tmp_path),
            overrides=["systems=('bahdanau', 'transformer')"],
        )
