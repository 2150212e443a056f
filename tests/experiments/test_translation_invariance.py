"""translation_invariance end to end on synthetic IDX files written to tmp_path (no real MNIST)."""

import json
import os

import jax.numpy as jnp
import numpy as np

from dl.data import idx
from experiments import translation_invariance as ti
from experiments._runner import run_experiment


def test_directions_average_four_axis_aligned_shifts():
    assert ti.directions(0) == [(0, 0)]
    assert sorted(ti.directions(3)) == sorted([(3, 0), (-3, 0), (0, 3), (0, -3)])


def test_flat_mlp_sees_the_flattened_image():
    import jax

    model = ti.FlatMLP(hidden=(4,))
    x = jnp.arange(2 * 28 * 28, dtype=jnp.float32).reshape(2, 28, 28, 1) / 1000.0
    params = model.init(jax.random.PRNGKey(0), x)["params"]
    inner = ti.MLP(hidden=(4,), out=10)
    ref = inner.apply({"params": params["mlp"]}, x.reshape(2, -1))
    np.testing.assert_allclose(model.apply({"params": params}, x), ref, rtol=1e-6)


def test_smoke_on_synthetic_idx_files(tmp_path):
    # 48 train images after the fixed 10000-image val split; 20 test images.
    rng = np.random.default_rng(0)
    splits = {
        split: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n))
        for split, n in (("train", 10048), ("test", 20))
    }
    idx.write_folder(tmp_path / "data" / "mnist", splits)
    r = run_experiment(
        "translation_invariance",
        {"translation_invariance": ti},
        scale="smoke",
        workdir=str(tmp_path / "w"),
        data_dir=str(tmp_path / "data"),
    )
    m = r["metrics"]
    assert m["shifts"] == list(range(7))
    for name in ti.NETS:
        accs = m["test_accuracy_by_shift"][name]
        assert len(accs) == 7 and all(0.0 <= a <= 1.0 for a in accs)
        # Accuracies on 20 images averaged over 4 directions: multiples of 1/80.
        assert all(abs(80 * a - round(80 * a)) < 1e-6 for a in accs)
        rows = [
            json.loads(line)
            for line in (tmp_path / "w" / name / "metrics.jsonl").read_text().splitlines()
        ]
        assert [row["step"] for row in rows if "loss" in row] == [1, 2, 3]
    assert os.path.exists(tmp_path / "w" / "accuracy_vs_shift.png")
    assert r["bars"] == [] and r["passed"] is None
