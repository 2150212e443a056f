"""segmentation end to end on synthetic IDX files written to tmp_path (no real MNIST needed)."""

import json
import os

import numpy as np

from dl.data import idx
from experiments import segmentation
from experiments._runner import run_experiment


def test_smoke_on_synthetic_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    splits = {
        split: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n))
        for split, n in (("train", 10040), ("test", 20))
    }
    idx.write_folder(tmp_path / "data" / "mnist", splits)
    r = run_experiment(
        "segmentation",
        {"segmentation": segmentation},
        scale="smoke",
        workdir=str(tmp_path / "w"),
        data_dir=str(tmp_path / "data"),
    )
    m = r["metrics"]
    assert set(m["test_miou"]) == {"deconv", "unpool", "bilinear"}
    for name in m["test_miou"]:
        assert 0.0 <= m["test_miou"][name] <= 1.0
        assert 0.0 <= m["test_pixel_accuracy"][name] <= 1.0
        assert m["param_count"][name] > 0
        rows = [
            json.loads(line)
            for line in (tmp_path / "w" / name / "metrics.jsonl").read_text().splitlines()
        ]
        assert [row["step"] for row in rows if "loss" in row] == [1, 2, 3, 4]
        assert os.path.exists(tmp_path / "w" / f"{name}_curves.png")
    # deconv has the upsampling parameters the other two decoders lack
    assert m["param_count"]["deconv"] > m["param_count"]["unpool"] == m["param_count"]["bilinear"]
    assert os.path.getsize(tmp_path / "w" / "masks.png") > 1000
    assert "unpool" in (tmp_path / "w" / "table.txt").read_text()
    assert r["bars"] == [] and r["passed"] is None  # smoke has no bar
