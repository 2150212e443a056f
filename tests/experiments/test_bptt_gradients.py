"""Smoke test of experiments/bptt_gradients.py, and its Jacobian products against closed forms
(matrix powers of a linear recurrence) and against jax.jacrev of the unrolled recurrence."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.data.sequences import adding
from experiments import adding_problem
from experiments import bptt_gradients as bg
from experiments._runner import run_experiment


def test_smoke(tmp_path):
    # No training here (test_trained_cell_params covers it): compiles dominate a smoke run.
    results = run_experiment(
        "bptt_gradients",
        {"bptt_gradients": bg},
        scale="smoke",
        workdir=str(tmp_path),
        overrides=["train_steps=0", 'arms=("tanh", "lstm")'],
    )
    for name in ("config.json", "results.json", "jacobian_norms.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "bptt_gradients"
    m = results["metrics"]
    config = bg.get_config("smoke")
    assert len(m["curves"]) == len(config.rhos) + 2  # tanh and lstm, at init only
    for name, curve in m["curves"].items():
        assert len(curve) == config.max_distance + 1 and curve[0] == pytest.approx(1.0), name
    assert len(results["bars"]) == 3
    # The closed form holds at any scale.
    assert m["linear_0.9_max_rel_error"] < 1e-3 and m["linear_1.1_max_rel_error"] < 1e-3


def test_trained_cell_params(tmp_path):
    """The "after training" path: a tanh RNN trained briefly by adding_problem's loop; its cell
    parameters have the cell's own structure and give finite norms."""
    config = bg.get_config("smoke")
    params, mse = bg.trained_cell_params(config, "tanh", str(tmp_path))
    cell = adding_problem.make_cell("tanh", config.hidden)
    fresh = cell.init(jax.random.PRNGKey(0), cell.initialize_carry(()), jnp.zeros(2))["params"]
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, fresh)
    assert math.isfinite(mse)
    xs, _ = adding(jax.random.PRNGKey(1), batch=2, length=5)
    norms = bg.cell_norms(cell, params, xs, norm="spectral")
    assert norms.shape == (2, 6) and np.all(np.isfinite(norms))
    assert os.path.getsize(tmp_path / "metrics.jsonl") > 0


def test_linear_products_are_matrix_powers():
    """s' = s W (row vectors): ds_T/ds_{T-d} = (W^T)^d, for a general (non-normal) W."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 5)) / math.sqrt(5)
    u = rng.normal(size=(3, 5))
    with jax.enable_x64(True):
        w64, u64 = jnp.asarray(w), jnp.asarray(u)

        def step(s, x):
            return s @ w64 + jnp.tanh(x) @ u64  # the input does not enter the Jacobian

        xs = jnp.asarray(rng.normal(size=(7, 3)))
        products = bg.jacobian_products(step, jnp.zeros(5), xs)
        for d in range(8):
            np.testing.assert_allclose(
                products[d], np.linalg.matrix_power(w.T, d), rtol=1e-12, atol=1e-14
            )
        spectral = bg.jacobian_norms(step, jnp.zeros(5), xs, "spectral")
        frob = bg.jacobian_norms(step, jnp.zeros(5), xs, "frobenius")
    powers = [np.linalg.matrix_power(w.T, d) for d in range(8)]
    np.testing.assert_allclose(spectral, [np.linalg.norm(p, 2) for p in powers], rtol=1e-10)
    np.testing.assert_allclose(frob, [np.linalg.norm(p, "fro") for p in powers], rtol=1e-10)


@pytest.mark.parametrize("rho", [0.9, 1.0, 1.1])
def test_scaled_orthogonal_linear_rnn_norm_is_rho_to_the_distance(rho):
    step, s0 = bg.linear_step(*bg.linear_weights(jax.random.PRNGKey(1), 16, rho))
    xs, _ = adding(jax.random.PRNGKey(2), batch=1, length=30)
    norms = np.asarray(bg.jacobian_norms(step, s0, xs[0], "spectral"))
    np.testing.assert_allclose(norms, rho ** np.arange(31), rtol=1e-4)
    frob = np.asarray(bg.jacobian_norms(step, s0, xs[0], "frobenius"))
    np.testing.assert_allclose(frob, 4.0 * rho ** np.arange(31), rtol=1e-4)


@pytest.mark.parametrize("arm", ["tanh", "lstm", "gru"])
def test_cell_products_match_jacrev_of_the_unrolled_recurrence(arm):
    """P[d] against jax.jacrev of s_{T-d} -> s_T (the composed steps), in float64."""
    with jax.enable_x64(True):
        cell = adding_problem.make_cell(arm, 4)
        xs, _ = adding(jax.random.PRNGKey(0), batch=1, length=6)
        params = cell.init(jax.random.PRNGKey(3), cell.initialize_carry(()), xs[0, 0])["params"]
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        xs = xs[0].astype(jnp.float64)
        step, s0 = bg.flat_step(cell, params)
        s0 = s0.astype(jnp.float64) + 0.3  # a non-zero start exercises every term
        products = bg.jacobian_products(step, s0, xs)
        states = [s0]
        for x in xs:
            states.append(step(states[-1], x))
        t = len(xs)
        for d in range(t + 1):

            def unrolled(s, d=d):
                for x in xs[t - d :]:
                    s = step(s, x)
                return s

            np.testing.assert_allclose(
                products[d], jax.jacrev(unrolled)(states[t - d]), rtol=1e-10, atol=1e-13
            )
    assert products.shape == (t + 1, s0.shape[0], s0.shape[0])
    assert s0.shape[0] == (8 if arm == "lstm" else 4)  # the LSTM's state is (h, c)


def test_matrix_norm_rejects_unknown_norm():
    with pytest.raises(ValueError, match="spectral"):
        bg.matrix_norm(jnp.eye(2), "nuclear")
