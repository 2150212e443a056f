"""ciresan_mlp end to end on synthetic IDX files written to tmp_path (no real MNIST needed)."""

import json
import os

import numpy as np

from experiments import ciresan_mlp
from experiments._runner import run_experiment


def test_smoke_on_synthetic_idx_files(tmp_path, synthetic_mnist):
    r = run_experiment(
        "ciresan_mlp",
        {"ciresan_mlp": ciresan_mlp},
        scale="smoke",
        workdir=str(tmp_path / "w"),
        data_dir=str(synthetic_mnist),
    )
    errors = r["metrics"]["test_error_pct"]
    assert list(errors) == ["32-16-10"]
    assert 0.0 <= errors["32-16-10"] <= 100.0
    assert os.path.exists(tmp_path / "w" / "32-16-10_curves.png")
    table = (tmp_path / "w" / "table.txt").read_text()
    assert "2500-2000-1500-1000-500-10" in table and "0.35" in table
    rows = [
        json.loads(line)
        for line in (tmp_path / "w" / "32-16-10" / "metrics.jsonl").read_text().splitlines()
    ]
    # 48 training examples in batches of 16: one epoch is 3 steps (under the 4-step cap).
    assert [row["step"] for row in rows if "loss" in row] == [1, 2, 3]


def test_table_1_widths_and_parameter_count():
    import jax
    import jax.numpy as jnp

    from dl.models.ciresan import TABLE_1, CiresanMLP

    model = CiresanMLP(hidden=TABLE_1[1])
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
    count = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
    assert count == 784 * 1000 + 1000 + 1000 * 500 + 500 + 500 * 10 + 10
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))["params"]
    w = np.asarray(params["dense_0"]["kernel"])
    assert -0.05 <= w.min() < -0.04 and 0.04 < w.max() <= 0.05  # U[-0.05, 0.05]
