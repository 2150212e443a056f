"""Smoke test of experiments/language_model.py on a synthetic Multi30K-layout corpus, and
rejection of bad config values."""

import json
import math
import os

import pytest

from experiments import language_model as lm
from experiments._runner import UsageError, run_experiment


def test_smoke(tmp_path, synthetic_multi30k):
    workdir = tmp_path / "run"
    workdir.mkdir()
    results = run_experiment(
        "language_model",
        {"language_model": lm},
        scale="smoke",
        workdir=str(workdir),
        data_dir=str(synthetic_multi30k),
    )
    for name in ("config.json", "results.json", "vocab.json", "val_perplexity.png"):
        assert os.path.getsize(workdir / name) > 0, name
    with open(workdir / "vocab.json") as f:
        assert "man" in json.load(f)["tokens"]
    m = results["metrics"]
    rows = {r["model"]: r for r in m["table"]}
    settings = lm.get_config("smoke").settings
    assert set(rows) == {"kn3", *settings}
    for row in rows.values():  # a 40-word grammar: far below the vocabulary size
        assert 1.0 < row["val_perplexity"] < m["vocab_size"], row
        assert math.isfinite(row["test_perplexity"])
    for setting in settings:
        assert os.path.getsize(workdir / setting / "metrics.jsonl") > 0
        assert isinstance(m["samples"][setting]["greedy"], str)
        assert len(m["samples"][setting]["sampled"]) == 3
    assert len(results["bars"]) == 1  # the quick bar is reported at smoke scale too


def test_rejects_bad_config(tmp_path):
    with pytest.raises(UsageError, match="dropout"):
        run_experiment(
            "language_model",
            {"language_model": lm},
            scale="smoke",
            workdir=str(tmp_path),
            overrides=["dropout=1.5"],
        )


def test_settings_build_the_models_they_name():
    config = lm.get_config("quick")
    models = {s: lm.build(config, s, 100) for s in lm.SETTINGS}
    assert models["no_dropout"].dropout == 0.0 and not models["no_dropout"].variational
    assert models["zaremba"].dropout == config.dropout and not models["zaremba"].variational
    assert models["zaremba"].recurrent_dropout == 0.0
    for s in ("variational", "variational_tied", "gru"):
        assert models[s].variational and models[s].recurrent_dropout == config.recurrent_dropout
    assert models["variational_tied"].tie and not models["variational"].tie
    assert models["gru"].cell == "gru" and models["variational"].cell == "lstm:NP"


def test_real_multi30k_streams(tmp_path):
    from dl.data import DataError

    config = lm.get_config("full")
    try:
        vocab, streams = lm.load_streams(config, str(tmp_path))
    except DataError as e:
        pytest.skip(f"Multi30K not available: {e}")
    assert len(vocab) == 4568  # min_freq 3 over the lowercased Moses tokens of train
    assert len(streams["train"]) == 406531  # 377531 tokens + one <eos> per sentence
    assert len(streams["val"]) - 1 == 14322 and len(streams["test"]) - 1 == 13968
    assert streams["val"][0] == vocab.eos_id and streams["train"][-1] == vocab.eos_id
