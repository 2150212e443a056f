"""vae_mnist end to end on synthetic IDX files (no real MNIST needed), and Burda et al.'s
learning-rate schedule against its definition."""

import json
import os

import pytest

from experiments import vae_mnist
from experiments._runner import run_experiment


def test_smoke_on_synthetic_idx_files(tmp_path, synthetic_mnist):
    r = run_experiment(
        "vae_mnist",
        {"vae_mnist": vae_mnist},
        scale="smoke",
        workdir=str(tmp_path / "w"),
        data_dir=str(synthetic_mnist),
        overrides=["latents=(2,)", "epochs=(1,)"],  # one model: each costs its compiles
    )
    m = r["metrics"]
    for key in ("z2_test_elbo", "z2_test_ll", "z2_test_bound_k1", "z2_test_bound_k3"):
        assert m[key] < 0.0, key
    assert m["z2_test_ll_examples"] == 20 and m["z2_test_ll_samples"] == 4
    for png in ("manifold_z2", "latent_z2", "reconstructions_z2", "samples_z2", "z2_curves"):
        assert os.path.getsize(tmp_path / "w" / f"{png}.png") > 0, png
    rows = [json.loads(line) for line in (tmp_path / "w" / "z2" / "metrics.jsonl").open()]
    assert [row["step"] for row in rows if "loss" in row] == [1, 2, 3]
    assert any("val_elbo" in row for row in rows)


def test_burda_schedule():
    # 2 steps per epoch, 3 passes: lr for 1 epoch, then lr 10^(-1/7) for 3, then 10^(-2/7).
    s = vae_mnist.burda_schedule(1e-3, 2, 3)
    r = 10.0 ** (-1.0 / 7.0)
    for step, want in ((0, 1e-3), (1, 1e-3), (2, 1e-3 * r), (7, 1e-3 * r), (8, 1e-3 * r * r)):
        assert float(s(step)) == pytest.approx(want, rel=1e-6), step
