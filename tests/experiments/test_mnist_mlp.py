"""mnist_mlp end to end on tfds mock data (no download, no TensorFlow)."""

import json
import os

import tensorflow_datasets as tfds

from experiments import mnist_mlp
from experiments._runner import run_experiment


def test_smoke_on_mock_data(mock_tfds, tmp_path):
    with mock_tfds(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
        r = run_experiment(
            "mnist_mlp",
            {"mnist_mlp": mnist_mlp},
            scale="smoke",
            workdir=str(tmp_path),
            data_dir=str(tmp_path / "data"),
        )
    assert 0.0 <= r["metrics"]["dropout_test_error_pct"] <= 100.0
    assert os.path.exists(tmp_path / "dropout_curves.png")
    rows = [
        json.loads(l) for l in (tmp_path / "dropout" / "metrics.jsonl").read_text().splitlines()
    ]
    # 48 mock training examples in batches of 16: one epoch is 3 steps (under the 4-step cap).
    assert [row["step"] for row in rows if "loss" in row] == [1, 2, 3]
