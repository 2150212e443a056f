"""deep_linear_orthogonal: the closed-form gradients against autodiff, the matrix loss against the
mean squared error on whitened data, the initializations' products, and a smoke run."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import deep_linear_orthogonal as dlo
from experiments._runner import run_experiment


def _sequential_loss(ws, target):
    p = jnp.eye(ws.shape[-1], dtype=ws.dtype)
    for w in ws:  # W_1 first
        p = w @ p
    return 0.5 * jnp.sum((p - target) ** 2)


@pytest.mark.parametrize("depth", [1, 2, 5, 8])
def test_gradients_match_autodiff_of_the_sequential_product(depth):
    key_w, key_t = jax.random.split(jax.random.PRNGKey(depth))
    ws = jax.random.normal(key_w, (depth, 6, 6), jnp.float32) / math.sqrt(6)
    target = jax.random.normal(key_t, (6, 6), jnp.float32)
    loss, grads = dlo.loss_and_grads(ws, target)
    want_loss, want = jax.jit(jax.value_and_grad(_sequential_loss))(ws, target)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    np.testing.assert_allclose(grads, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        dlo.end_to_end(ws),
        np.linalg.multi_dot([np.asarray(w, np.float64) for w in ws[::-1]] + [np.eye(6)]),
        rtol=1e-4,
        atol=1e-5,
    )


def test_matrix_loss_is_the_mean_squared_error_on_whitened_inputs():
    """With inputs whose second moment is exactly I, 1/(2P) sum_mu ||y_mu - W x_mu||^2 with
    y = T x equals 1/2 ||T - W||_F^2, the loss the experiment descends."""
    rng = np.random.default_rng(0)
    n, p = 5, 40
    q, _ = np.linalg.qr(rng.normal(size=(p, n)))
    x = math.sqrt(p) * q  # [P, N], x^T x / P = I
    np.testing.assert_allclose(x.T @ x / p, np.eye(n), atol=1e-12)
    t, ws = rng.normal(size=(n, n)), rng.normal(size=(3, n, n)) / math.sqrt(n)
    w = ws[2] @ ws[1] @ ws[0]
    mse = 0.5 * np.mean(np.sum((x @ t.T - x @ w.T) ** 2, axis=1))
    loss, _ = dlo.loss_and_grads(jnp.asarray(ws, jnp.float32), jnp.asarray(t, jnp.float32))
    np.testing.assert_allclose(loss, mse, rtol=1e-5)


@pytest.mark.parametrize("depth", [2, 10])
def test_orthogonal_product_is_a_partial_isometry(depth):
    width, outputs = 12, 4
    ws = dlo.init_weights(jax.random.PRNGKey(0), "orthogonal", depth, width, outputs)
    assert ws.shape == (depth, width, width)
    p = np.asarray(dlo.end_to_end(ws), np.float64)
    np.testing.assert_allclose(p[:outputs] @ p[:outputs].T, np.eye(outputs), atol=1e-5)
    np.testing.assert_array_equal(p[outputs:], 0.0)  # padding rows
    for w in ws[:-1]:
        np.testing.assert_allclose(np.asarray(w) @ np.asarray(w).T, np.eye(width), atol=1e-5)


def test_gaussian_layers_have_variance_one_over_fan_in():
    ws = dlo.init_weights(jax.random.PRNGKey(1), "gaussian", 40, 32, 8)
    hidden = np.asarray(ws[:-1])
    assert abs(hidden.var() * 32 - 1.0) < 0.05  # 39 * 1024 draws: std error ~0.7%
    assert abs(hidden.mean()) < 0.01
    last = np.asarray(ws[-1])
    assert abs(last[:8].var() * 32 - 1.0) < 0.2 and np.all(last[8:] == 0)


def test_depth_one_descent_is_geometric():
    """A single layer: W <- W - lr (W - T), so ||W - T||^2 shrinks by (1 - lr)^2 per step."""
    target = jnp.asarray(np.random.default_rng(2).normal(size=(5, 5)), jnp.float32)
    ws = jnp.zeros((1, 5, 5), jnp.float32)
    _, errors = dlo.gd_chunk(ws, jnp.float32(0.3), target, 6)
    np.testing.assert_allclose(errors, 0.7 ** (2 * np.arange(6)), rtol=1e-5)


def test_padding_rows_stay_zero_during_training():
    target = jnp.zeros((8, 8), jnp.float32).at[:2].set(dlo.teacher(jax.random.PRNGKey(0), 2, 8))
    ws = dlo.init_weights(jax.random.PRNGKey(3), "gaussian", 4, 8, 2)
    ws, errors = dlo.gd_chunk(ws, jnp.float32(0.1), target, 25)
    assert np.all(np.asarray(ws[-1, 2:]) == 0) and errors[-1] < errors[0]


def test_first_hit():
    errors = np.array([[1.0, 0.5, 0.05, 0.2, 0.01], [1.0, 0.9, 0.8, 0.7, 0.6], [0.0, 1, 1, 1, 1]])
    np.testing.assert_array_equal(dlo.first_hit(errors, 0.1), [2, np.inf, 0])


def test_smoke(tmp_path):
    results = run_experiment(
        "deep_linear_orthogonal",
        {"deep_linear_orthogonal": dlo},
        scale="smoke",
        workdir=str(tmp_path),
    )
    for name in ("config.json", "results.json", "steps_vs_depth.png", "error_curves.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "deep_linear_orthogonal"
    m = results["metrics"]
    config = dlo.get_config("smoke")
    assert [row["depth"] for row in m["table"]] == list(config.depths)
    for row in m["table"]:
        for init in dlo.INITS:
            steps = row[f"{init}_steps"]
            assert (
                row[f"{init}_censored"] or 0 < steps <= row[f"{init}_steps_run"] <= config.max_steps
            )
    assert m["ratio_orthogonal"] > 0 and m["ratio_gaussian"] > 0
    assert len(results["bars"]) == 2
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    runs = sum(row[f"{init}_steps_run"] for row in m["table"] for init in dlo.INITS)
    assert len(rows) == runs and rows[0]["step"] == 0  # every step of every (init, depth) curve
    assert set(rows[0]) == {"step", "init", "depth", "eta", "relative_error"}
    sv = np.array(m["teacher_singular_values"])
    assert sv.shape == (config.outputs,) and np.all(sv > 0)
