"""Smoke test of experiments/digits_linear.py, and its objective against scikit-learn's scaling."""

import json
import math
import os

import jax.numpy as jnp
import numpy as np
from sklearn.metrics import log_loss

from dl import data
from experiments import digits_linear
from experiments._runner import run_experiment


def test_smoke(tmp_path):
    results = run_experiment(
        "digits_linear", {"digits_linear": digits_linear}, scale="smoke", workdir=str(tmp_path)
    )
    for name in ("config.json", "results.json", "digits_linear.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "digits_linear"
    m = results["metrics"]
    for model in ("logistic", "svm"):
        for key in (f"{model}_test_accuracy", f"sklearn_{model}_test_accuracy"):
            assert 0.8 < m[key] <= 1.0, key  # any working linear model gets > 90% on digits
        assert math.isfinite(m[f"{model}_objective"]) and m[f"{model}_objective"] > 0
        assert m[f"{model}_fit_time_s"] > 0 and m[f"sklearn_{model}_fit_time_s"] > 0
    # Smoke runs L-BFGS to convergence (compiling is the cost): the logistic optimum is unique, so
    # ours must land on scikit-learn's objective value.
    assert abs(m["logistic_objective_rel_gap"]) < 1e-4
    assert m["logistic_iterations"] < digits_linear.get_config("smoke").lbfgs_max_iter
    assert len(results["bars"]) == 2
    # One row per fit (classifier x C): the solvers keep no per-step history.
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * len(digits_linear.get_config("smoke").c_grid)
    keys = {"step", "classifier", "C", "val_accuracy", "sklearn_val_accuracy"}
    assert all(set(r) == keys and r["step"] >= 1 for r in rows)


def _problem(seed=0, n=200):
    train = data.load("digits")["train"]
    rng = np.random.default_rng(seed)
    params = {
        "kernel": rng.normal(size=(64, 10)).astype(np.float32) * 0.3,
        "bias": rng.normal(size=10).astype(np.float32),
    }
    return train.x[:n], train.y[:n], params


def test_logistic_objective_is_sklearns_scaled_by_c_n():
    # scikit-learn: 1/2 ||W||^2 + C * sum_i log-loss_i (intercept unpenalized); ours is that / (C n).
    x, y, params = _problem()
    n, c = len(y), 3.0
    logits = x.astype(np.float64) @ params["kernel"] + params["bias"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    sklearn_value = 0.5 * np.sum(params["kernel"].astype(np.float64) ** 2) + c * log_loss(
        y, probs, normalize=False, labels=np.arange(10)
    )
    ours = digits_linear.objective(
        {k: jnp.asarray(v) for k, v in params.items()},
        jnp.asarray(x),
        jnp.asarray(y),
        jnp.float32(1.0 / (c * n)),
        model="logistic",
    )
    np.testing.assert_allclose(float(ours) * c * n, sklearn_value, rtol=1e-5)


def test_svm_objective_is_liblinear_crammer_singer_scaled_by_c_n():
    # liblinear's Crammer-Singer primal: 1/2 (||W||^2 + ||b||^2) + C sum_i max_m (e_im + z_im - z_iy),
    # e_im = 1 - [m = y_i]; the bias is a weight on a constant feature, so it is penalized.
    x, y, params = _problem(seed=1)
    n, c = len(y), 0.5
    z = x.astype(np.float64) @ params["kernel"] + params["bias"]
    e = 1.0 - np.eye(10)[y]
    loss = np.max(e + z - z[np.arange(n), y][:, None], axis=1)
    w2 = np.sum(params["kernel"].astype(np.float64) ** 2) + np.sum(
        params["bias"].astype(np.float64) ** 2
    )
    liblinear_value = 0.5 * w2 + c * loss.sum()
    ours = digits_linear.objective(
        {k: jnp.asarray(v) for k, v in params.items()},
        jnp.asarray(x),
        jnp.asarray(y),
        jnp.float32(1.0 / (c * n)),
        model="svm",
    )
    np.testing.assert_allclose(float(ours) * c * n, liblinear_value, rtol=1e-5)
