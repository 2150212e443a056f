"""transfer_learning end to end on synthetic IDX files written to tmp_path (no real MNIST)."""

import json
import os

import numpy as np

from dl.data import idx
from experiments import transfer_learning as tl
from experiments._runner import run_experiment


def test_labelled_subsets_are_balanced_nested_and_seeded():
    y = np.arange(1000) % 5
    small, large = tl.labelled_subset(y, 3, seed=7), tl.labelled_subset(y, 10, seed=7)
    assert np.bincount(y[small]).tolist() == [3] * 5
    assert np.bincount(y[large]).tolist() == [10] * 5
    assert set(small) <= set(large)
    assert not np.array_equal(small, tl.labelled_subset(y, 3, seed=8))
    np.testing.assert_array_equal(small, tl.labelled_subset(y, 3, seed=7))


def test_digits_keeps_and_relabels():
    split = tl.data.ArrayData(np.arange(10, dtype=np.float32), np.arange(10, dtype=np.int32))
    b = tl.digits(split, tl.TARGET)
    assert b.x.tolist() == [5, 6, 7, 8, 9] and b.y.tolist() == [0, 1, 2, 3, 4]


def test_smoke_on_synthetic_idx_files(tmp_path):
    # Labels cycle through 0-9 so that each digit has >= 4 of the 48 train images.
    rng = np.random.default_rng(0)
    splits = {
        split: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10)
        for split, n in (("train", 10048), ("test", 20))
    }
    idx.write_folder(tmp_path / "data" / "mnist", splits)
    r = run_experiment(
        "transfer_learning",
        {"transfer_learning": tl},
        scale="smoke",
        workdir=str(tmp_path / "w"),
        data_dir=str(tmp_path / "data"),
    )
    m = r["metrics"]
    for method in tl.METHODS:
        for k in ("2", "4"):
            cell = m["table"][method][k]
            assert len(cell["per_seed"]) == 2
            # 10 test images of digits 5-9: accuracies are multiples of 0.1.
            assert all(abs(10 * a - round(10 * a)) < 1e-6 for a in cell["per_seed"])
            assert 0.0 <= cell["mean"] <= 1.0 and cell["std"] >= 0.0
    assert "| finetune |" in m["table_markdown"]
    assert os.path.exists(tmp_path / "w" / "accuracy_vs_labels.png")
    rows = [
        json.loads(line) for line in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()
    ]
    # 3 methods x 2 label counts x 2 seeds x 2 steps.
    assert len(rows) == 24 and {row["method"] for row in rows} == set(tl.METHODS)
    pre = [
        json.loads(line)
        for line in (tmp_path / "w" / "pretrain" / "metrics.jsonl").read_text().splitlines()
    ]
    # 24 of the 48 train images are digits 0-4: one epoch at batch 16 is 2 steps (cap 3).
    assert [row["step"] for row in pre if "loss" in row] == [1, 2]
    assert r["bars"] == [] and r["passed"] is None
