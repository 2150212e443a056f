"""lenet_mnist end to end on synthetic IDX files written to tmp_path (no real MNIST needed)."""

import json
import os

import numpy as np

from dl.data import idx
from experiments import lenet_mnist
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
        "lenet_mnist",
        {"lenet_mnist": lenet_mnist},
        scale="smoke",
        workdir=str(tmp_path / "w"),
        data_dir=str(tmp_path / "data"),
        overrides=["train_distorted=True"],  # the full-scale distorted net, on the plumbing run
    )
    m = r["metrics"]
    assert m["param_count"] == 61706
    for key in ("test_error_pct", "distorted_test_error_pct"):
        assert 0.0 <= m[key] <= 100.0
    for name in ("plain", "distorted"):
        for png in ("curves", "misclassified"):
            assert os.path.getsize(tmp_path / "w" / f"{name}_{png}.png") > 0
        rows = [
            json.loads(line)
            for line in (tmp_path / "w" / name / "metrics.jsonl").read_text().splitlines()
        ]
        # 48 training examples in batches of 16: one epoch is 3 steps (under the 4-step cap).
        assert [row["step"] for row in rows if "loss" in row] == [1, 2, 3]
