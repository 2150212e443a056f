"""activation_maximization end to end on synthetic IDX files written to tmp_path."""

import os

import numpy as np

from dl.data import idx
from experiments import activation_maximization
from experiments._runner import run_experiment


def test_smoke_on_synthetic_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    splits = {
        split: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n))
        for split, n in (("train", 10048), ("test", 30))
    }
    idx.write_folder(tmp_path / "data" / "mnist", splits)
    r = run_experiment(
        "activation_maximization",
        {"activation_maximization": activation_maximization},
        scale="smoke",
        workdir=str(tmp_path / "w"),
        data_dir=str(tmp_path / "data"),
    )
    m = r["metrics"]
    assert 0.0 <= m["test_accuracy"] <= 1.0
    probs = m["class_model_prob"]
    assert sorted(probs) == [str(c) for c in range(10)]
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert m["deletion_images"] == 20 and 0.0 <= m["deletion_salient_wins"] <= 1.0
    assert set(m["unit_activation_sum"]) == {"conv_0", "conv_1"}
    for name in (
        "class_models.png",
        "class_ascent.png",
        "units_conv_0.png",
        "units_conv_1.png",
        "filters_conv_0.png",
        "saliency.png",
        "cnn_curves.png",
    ):
        assert os.path.getsize(tmp_path / "w" / name) > 1000, name
