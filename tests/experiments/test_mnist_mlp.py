"""mnist_mlp end to end on synthetic IDX files written to tmp_path (no real MNIST needed)."""

import json
import os

from experiments import mnist_mlp
from experiments._runner import run_experiment


def test_smoke_on_synthetic_idx_files(tmp_path, synthetic_mnist):
    r = run_experiment(
        "mnist_mlp",
        {"mnist_mlp": mnist_mlp},
        scale="smoke",
        workdir=str(tmp_path / "w"),
        data_dir=str(synthetic_mnist),
    )
    assert 0.0 <= r["metrics"]["dropout_test_error_pct"] <= 100.0
    assert os.path.exists(tmp_path / "w" / "dropout_curves.png")
    rows = [
        json.loads(l)
        for l in (tmp_path / "w" / "dropout" / "metrics.jsonl").read_text().splitlines()
    ]
    # 48 training examples in batches of 16: one epoch is 3 steps (under the 4-step cap).
    assert [row["step"] for row in rows if "loss" in row] == [1, 2, 3]
