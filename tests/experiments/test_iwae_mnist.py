"""iwae_mnist end to end on synthetic IDX files (no real MNIST needed), and its pieces."""

import os

import numpy as np

from experiments import iwae_mnist
from experiments._runner import run_experiment


def test_smoke_on_synthetic_idx_files(tmp_path, synthetic_mnist, capsys):
    r = run_experiment(
        "iwae_mnist",
        {"iwae_mnist": iwae_mnist},
        scale="smoke",
        workdir=str(tmp_path / "w"),
        data_dir=str(synthetic_mnist),
        overrides=['runs=("iwae_k5",)', "bound_ks=(1,)"],  # one model: each costs its compiles
    )
    m = r["metrics"]
    assert m["iwae_k5_test_ll"] < 0.0 and m["iwae_k5_test_bound_k1"] < 0.0
    assert 0 <= m["iwae_k5_active_units"] <= 4
    out = capsys.readouterr().out
    assert "-84.78" in out and "(not trained at this scale)" in out  # the paper's rows printed
    assert os.path.getsize(tmp_path / "w" / "val_elbo.png") > 0
    assert (tmp_path / "w" / "iwae_k5" / "metrics.jsonl").exists()


def test_parse_run_and_published_rows():
    assert iwae_mnist.parse_run("iwae_k50") == ("iwae", 50)
    assert iwae_mnist.parse_run("vae_k5") == ("elbo", 5)
    lls = [iwae_mnist.PUBLISHED[r][0] for r in ("iwae_k1", "iwae_k5", "iwae_k50")]
    assert np.all(np.diff(lls) > 0)  # Table 1: the IWAE improves with k
