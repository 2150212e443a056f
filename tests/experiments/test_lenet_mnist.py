"""lenet_mnist end to end on synthetic IDX files written to tmp_path (no real MNIST needed)."""

import json
import os

from experiments import lenet_mnist
from experiments._runner import run_experiment


def test_smoke_on_synthetic_idx_files(tmp_path, synthetic_mnist):
    r = run_experiment(
        "lenet_mnist",
        {"lenet_mnist": lenet_mnist},
        scale="smoke",
        workdir=str(tmp_path / "w"),
        data_dir=str(synthetic_mnist),
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
