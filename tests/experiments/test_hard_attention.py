"""hard_attention end to end on synthetic IDX files written to tmp_path (no real MNIST needed)."""

import json
import os

from experiments import hard_attention
from experiments._runner import run_experiment


def test_smoke_on_synthetic_idx_files(tmp_path, synthetic_mnist):
    r = run_experiment(
        "hard_attention",
        {"hard_attention": hard_attention},
        scale="smoke",
        workdir=str(tmp_path / "w"),
        data_dir=str(synthetic_mnist),
        # hard and soft cover both branches of the hybrid loss; random differs from hard only
        # in the policy (tests/models/test_ram.py) and cnn is MnistCNN (tests/models)
        overrides=["canvas=40", "paths_shown=2", "models=('hard', 'soft')"],
    )
    m = r["metrics"]
    for name in ("hard", "soft"):
        assert 0.0 <= m[f"{name}_error_pct"] <= 100.0
        assert os.path.getsize(tmp_path / "w" / f"{name}_curves.png") > 0
        rows = (tmp_path / "w" / name / "metrics.jsonl").read_text().splitlines()
        # 48 training images in batches of 16 under the 3-step cap
        assert [json.loads(x)["step"] for x in rows if "loss" in json.loads(x)] == [1, 2, 3]
    assert os.path.getsize(tmp_path / "w" / "hard_glimpse_paths.png") > 0
    assert "reinforce" in json.loads(
        (tmp_path / "w" / "hard" / "metrics.jsonl").read_text().splitlines()[0]
    )
    assert "policy_gap_pct" not in m  # no bars at smoke scale
