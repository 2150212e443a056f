"""Smoke test of experiments/sparse_attention.py on the synthetic Multi30K corpus."""

import os

from PIL import Image

from experiments import sparse_attention as sa
from experiments._runner import run_experiment


def test_smoke(tmp_path, synthetic_multi30k):
    results = run_experiment(
        "sparse_attention",
        {"sparse_attention": sa},
        scale="smoke",
        workdir=str(tmp_path),
        data_dir=str(synthetic_multi30k),
    )
    m = results["metrics"]
    assert m["softmax_support"] == 1.0  # softmax weights are never exactly zero
    assert 0.0 < m["sparsemax_support"] <= 1.0
    assert Image.open(tmp_path / "attention.png").size[0] > 500
    for name in sa.NORMALIZERS:
        assert os.path.getsize(tmp_path / name / "metrics.jsonl") > 0
    assert len(results["bars"]) == 2
