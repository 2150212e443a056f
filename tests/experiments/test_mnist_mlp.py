"""mnist_mlp end to end on synthetic IDX files written to tmp_path (no real MNIST needed)."""

import json
import os

import numpy as np

from dl.data import idx
from experiments import mnist_mlp
from experiments._runner import run_experiment


def test_smoke_on_synthetic_idx_files(tmp_path):
    # 48 train images after the fixed 10000-image val split; 20 test images.
    rng = np.random.default_rng(0)
    splits = {
        split: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n))
        for split, n in (("train", 10048), ("test", 20))
    }
    idx.write_folder(tmp_path / "data" / "mnist", splits)
    r = run_experiment(
        "mnist_mlp",
        {"mnist_mlp": mnist_mlp},
        scale="smoke",
        workdir=str(tmp_path / "w"),
        data_dir=str(tmp_path / "data"),
    )
    assert 0.0 <= r["metrics"]["dropout_test_error_pct"] <= 100.0
    assert os.path.exists(tmp_path / "w" / "dropout_curves.png")
    rows = [
        json.loads(l)
        for l in (tmp_path / "w" / "dropout" / "metrics.jsonl").read_text().splitlines()
    ]
    # 48 training examples in batches of 16: one epoch is 3 steps (under the 4-step cap).
    assert [row["step"] for row in rows if "loss" in row] == [1, 2, 3]
