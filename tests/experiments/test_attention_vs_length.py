"""Smoke test of experiments/attention_vs_length.py, and its exact-match and bucket helpers."""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from dl.data.sequences import transduction
from experiments import attention_vs_length as avl
from experiments._runner import run_experiment


def test_smoke(tmp_path):
    results = run_experiment(
        "attention_vs_length",
        {"attention_vs_length": avl},
        scale="smoke",
        workdir=str(tmp_path),
    )
    for name in ("config.json", "results.json", "accuracy_vs_length.png", "metrics.jsonl"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "attention_vs_length"
    m = results["metrics"]
    config = avl.get_config("smoke")
    assert sum(m["test_lengths"]) == config.test_size
    for arm in config.arms:
        assert 0.0 <= m[f"{arm}_exact"] <= 1.0
        assert len(m[f"{arm}_exact_by_bucket"]) == len(config.buckets) - 1
        # Greedy output is exact iff every teacher-forced argmax is.
        assert m[f"{arm}_exact"] == m[f"{arm}_teacher_forced_exact"]
    assert len(results["bars"]) == 1  # reported, not asserted at smoke scale


def test_exact_match_and_buckets():
    draw = jax.jit(functools.partial(transduction, batch=6, min_len=2, max_len=5, n_symbols=4))
    batch = {k: np.asarray(v) for k, v in draw(jax.random.PRNGKey(0)).items()}
    perfect = 9.0 * np.eye(7, dtype=np.float32)[batch["tgt_out"]]
    assert bool(jnp.all(avl.exact_match(perfect, batch["tgt_out"], batch["tgt_mask"])))
    # Junk on padding does not matter; one wrong real token (the EOS of row 0) does.
    lengths = np.asarray(batch["src_lengths"])
    r = int(np.argmin(lengths))
    assert lengths[r] < 5  # row r has padding
    junk, wrong = perfect.copy(), perfect.copy()
    junk[r, lengths[r] + 1 :] = 9.0 * np.eye(7)[4]
    wrong[0, lengths[0]] = 0.0
    assert bool(jnp.all(avl.exact_match(junk, batch["tgt_out"], batch["tgt_mask"])))
    assert not bool(avl.exact_match(wrong, batch["tgt_out"], batch["tgt_mask"])[0])
    means = avl.bucket_means(
        np.array([1.0, 0.0, 1.0, 1.0]), np.array([5, 6, 12, 30]), (5, 10, 20, 31, 40)
    )
    assert means[:3] == [0.5, 1.0, 1.0] and math.isnan(means[3])
