"""Smoke test of experiments/lstm_variants.py on a synthetic Multi30K-layout corpus; its Welch
test against scipy's formula by hand; bad config values."""

import math
import os

import numpy as np
import pytest

from experiments import lstm_variants as lv
from experiments._runner import UsageError, run_experiment


def test_smoke(tmp_path, synthetic_multi30k):
    workdir = tmp_path / "run"
    workdir.mkdir()
    results = run_experiment(
        "lstm_variants",
        {"lstm_variants": lv},
        scale="smoke",
        workdir=str(workdir),
        data_dir=str(synthetic_multi30k),
    )
    for name in ("config.json", "results.json", "variants_box.png", "train_perplexity.png"):
        assert os.path.getsize(workdir / name) > 0, name
    m = results["metrics"]
    rows = {r["variant"]: r for r in m["table"]}
    assert list(rows) == ["NOAF"]
    for r in rows.values():
        assert len(r["test_perplexity"]) == 2
        assert all(1.0 < p < m["vocab_size"] for p in r["test_perplexity"]), r
    assert results["bars"] == []  # no vanilla to compare with


def test_comparisons_and_bars_on_made_up_seeds():
    config = lv.get_config("quick")
    ppl = {
        "vanilla": [3.00, 3.02, 2.98, 3.01, 2.99],
        "NFG": [3.30, 3.31, 3.28, 3.35, 3.29],  # clearly worse
        "NOAF": [3.01, 2.97, 3.03, 3.00, 2.99],  # indistinguishable: its bar fails
        "CIFG": [3.05, 3.06, 3.04, 3.07, 3.05],  # 1.7% worse: within 3%
        "NP": [3.20, 3.22, 3.19, 3.21, 3.18],  # 6.6% worse: outside
    }
    results = {
        v: {"test_perplexity": p, "val_perplexity": p, "train_time_s": 0.0} for v, p in ppl.items()
    }
    table = lv.summarize(results)
    rows = {r["variant"]: r for r in table}
    assert "p" not in rows["vanilla"]
    assert rows["NFG"]["ratio_to_vanilla"] == pytest.approx(np.mean(ppl["NFG"]) / 3.0)
    assert (rows["NFG"]["t"], rows["NFG"]["p"]) == lv.welch(ppl["NFG"], ppl["vanilla"])
    bars = {b.name.split()[0]: b for b in lv.make_bars(config, table)}
    assert bars["NFG"].passed and not bars["NOAF"].passed
    assert bars["CIFG"].passed and not bars["NP"].passed
    assert bars["CIFG"].ours == pytest.approx(np.mean(ppl["CIFG"]) / 3.0 - 1)


def test_welch_matches_the_formula():
    a, b = [3.1, 3.3, 3.2, 3.6], [2.9, 3.0, 2.95]
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    import scipy.stats

    p = 2 * scipy.stats.t.sf(abs(t), dof)
    assert lv.welch(a, b) == pytest.approx((t, p), rel=1e-10)


def test_windows_are_slices_of_the_stream():
    config = lv.get_config("smoke")
    train = np.arange(500, dtype=np.int32)
    w = lv.windows(train, config)["tokens"]
    assert w.shape == (config.num_steps, config.batch_size, config.seq_len + 1)
    assert np.all(np.diff(w, axis=-1) == 1)  # contiguous characters


def test_rejects_bad_config(tmp_path):
    with pytest.raises(UsageError, match="num_seeds"):
        run_experiment(
            "lstm_variants",
            {"lstm_variants": lv},
            scale="smoke",
            workdir=str(tmp_path),
            overrides=["num_seeds=1"],
        )
