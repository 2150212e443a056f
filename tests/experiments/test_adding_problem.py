"""Smoke test of experiments/adding_problem.py, and its pieces: the model's shapes and that the
per-step training batches are a function of the step only (resumable data order)."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.data.sequences import adding
from dl.train.generated import generated_loss
from experiments import adding_problem as ap
from experiments._runner import run_experiment


def test_smoke(tmp_path):
    results = run_experiment(
        "adding_problem",
        {"adding_problem": ap},
        scale="smoke",
        workdir=str(tmp_path),
        overrides=['arms=("lstm",)'],  # one cell: compiles dominate a smoke run
    )
    for name in ("config.json", "results.json", "learning_curves.png", "metrics.jsonl"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "adding_problem"
    m = results["metrics"]
    config = ap.get_config("smoke")
    assert math.isfinite(m["lstm_test_mse"])
    assert len(m["lstm_test_mse_per_seed"]) == config.num_seeds
    with open(tmp_path / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    chunks = config.num_steps // config.chunk_steps
    assert len(rows) == config.num_seeds * chunks
    assert {r["arm"] for r in rows} == {"lstm"}
    assert {r["model"] for r in rows} == set(range(config.num_seeds))
    assert len(results["bars"]) == 1  # only the cells trained get a bar


@pytest.mark.parametrize("arm", ap.ARMS)
def test_regressor_maps_sequences_to_scalars(arm):
    config = ap.get_config("smoke")
    model = ap.build(config, arm)
    x, _ = adding(jax.random.PRNGKey(0), batch=3, length=config.length)
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    assert model.apply({"params": params}, x).shape == (3,)
    assert set(params) == {"cell", "head"}


def test_irnn_starts_as_identity_recurrence():
    model = ap.build(ap.get_config("smoke"), "irnn")
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 5, 2)))["params"]
    np.testing.assert_array_equal(params["cell"]["recurrent_kernel"], np.eye(8))


def test_training_batch_depends_only_on_the_step():
    """The loss at step t draws from fold_in(data_key, t): equal steps, equal losses."""
    config = ap.get_config("smoke")
    model = ap.build(config, "gru")
    keys = ap.keys(config)
    loss_fn = generated_loss(model, ap.draw_fn(config), keys["data"], ap.mse_objective)({})
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, config.length, 2)))["params"]
    loss = jax.jit(lambda t: loss_fn(params, {}, {"step": t}, None)[0])
    a, b, c = loss(jnp.int32(3)), loss(jnp.int32(3)), loss(jnp.int32(4))
    assert float(a) == float(b) and float(a) != float(c)
    x, y = adding(
        jax.random.fold_in(keys["data"], 3), batch=config.batch_size, length=config.length
    )
    expected = jnp.mean((model.apply({"params": params}, x) - y) ** 2)
    np.testing.assert_allclose(float(a), float(expected), rtol=1e-6)


def test_make_cell_rejects_unknown_arm():
    with pytest.raises(ValueError, match="valid: tanh, irnn, lstm, gru"):
        ap.make_cell("transformer", 4)
