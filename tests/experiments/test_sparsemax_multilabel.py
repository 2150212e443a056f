"""Smoke test of experiments/sparsemax_multilabel.py, and its objectives, predictions and solver
against scipy, scikit-learn and closed forms."""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import expit, log_expit, log_softmax
from sklearn.linear_model import LogisticRegression

from experiments import sparsemax_multilabel as exp
from experiments._runner import run_experiment


def test_smoke(tmp_path):
    results = run_experiment(
        "sparsemax_multilabel", {"sparsemax_multilabel": exp}, scale="smoke", workdir=str(tmp_path)
    )
    for name in ("config.json", "results.json", "sparsemax_multilabel_uniform_K10.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "sparsemax_multilabel"
    m = results["metrics"]
    table = m["table"]["uniform_K10"]
    lengths = exp.get_config("smoke").lengths
    assert table["lengths"] == list(lengths)
    for model in exp.MODELS:
        assert all(0.0 <= v <= math.log(2) for v in table[model]["jsd"]), model
        assert all(0.0 <= v <= 2.0 for v in table[model]["squared_error"]), (
            model
        )  # ||p - q||^2 <= 2
        assert len(table[model]["l2_jsd"]) == len(lengths)
    assert m["uniform_K10_selected_fits_converged"] and m["uniform_K10_fits_at_cap"] == 0
    (bar,) = results["bars"]
    assert 0 <= bar["ours"] <= len(lengths) and bar["target"] == f">= 2 of {len(lengths)}"


def _problem(k=6, v=5, n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, v)).astype(np.float32)
    q = rng.dirichlet(np.ones(k), size=n)
    q[q < 0.15] = 0.0  # sparse gold proportions, renormalised
    q[np.arange(n), q.argmax(1)] += 1e-3
    q = (q / q.sum(1, keepdims=True)).astype(np.float32)
    params = {
        "kernel": rng.normal(size=(v, k)).astype(np.float32),
        "bias": rng.normal(size=k).astype(np.float32),
    }
    return x, q, params


def test_objectives_match_scipy():
    x, q, params = _problem()
    lam = 0.3
    z = x.astype(np.float64) @ params["kernel"] + params["bias"]
    penalty = 0.5 * lam * np.sum(params["kernel"].astype(np.float64) ** 2)
    jx, jq = jnp.asarray(x), jnp.asarray(q)
    jp = {k: jnp.asarray(v) for k, v in params.items()}
    softmax_ref = np.mean(-np.sum(q * log_softmax(z, axis=1), axis=1)) + penalty
    y = (q > 0).astype(np.float64)
    logistic_ref = np.mean(np.sum(-y * log_expit(z) - (1 - y) * log_expit(-z), 1)) + penalty
    for model, ref in (("softmax", softmax_ref), ("logistic", logistic_ref)):
        ours = exp.objective(jp, jx, jq, jnp.float32(lam), model=model)
        np.testing.assert_allclose(float(ours), ref, rtol=2e-6, err_msg=model)
    # The sparsemax loss is 0 exactly when sparsemax(z) = q; z = q (already on the simplex) is such
    # a point: with W = 0 and b = q_0, every example with target q_0 has loss 0.
    zero = {"kernel": jnp.zeros_like(jp["kernel"]), "bias": jq[0]}
    assert float(exp.objective(zero, jx[:1], jq[:1], jnp.float32(0.0), model="sparsemax")) < 1e-7


def test_predictions_are_the_papers_maps():
    x, _, params = _problem(seed=1)
    jp = {k: jnp.asarray(v) for k, v in params.items()}
    z = x.astype(np.float64) @ params["kernel"] + params["bias"]
    s = expit(z)
    np.testing.assert_allclose(
        exp.predict(jp, jnp.asarray(x), model="logistic"),
        s / s.sum(1, keepdims=True),
        rtol=1e-5,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        exp.predict(jp, jnp.asarray(x), model="softmax"),
        np.exp(log_softmax(z, axis=1)),
        rtol=1e-5,
        atol=1e-7,
    )
    p = np.asarray(exp.predict(jp, jnp.asarray(x), model="sparsemax"))
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    assert np.all(p >= 0) and np.any(p == 0)  # sparsemax returns exact zeros
    # Every sigmoid underflows (z ~ -1e3): the normalised sigmoid is still the softmax of z.
    far = {
        "kernel": jnp.zeros_like(jp["kernel"]),
        "bias": jnp.asarray([-1000.0, -1001.0] + [-1e4] * 4),
    }
    p = np.asarray(exp.predict(far, jnp.asarray(x[:2]), model="logistic"))
    np.testing.assert_allclose(
        p[0], [1 / (1 + math.exp(-1)), 1 / (1 + math.e)] + [0.0] * 4, rtol=1e-5
    )


# One compiled solver for both solver tests (the model is a traced index, as in the experiment).
FIT = jax.jit(functools.partial(exp.fit_lbfgs, max_iter=1000, tol=1e-6))
K, V, N = 4, 5, 120


def _zeros():
    return {"kernel": jnp.zeros((V, K), jnp.float32), "bias": jnp.zeros(K, jnp.float32)}


def _model_id(name):
    return jnp.int32(exp.MODELS.index(name))


def test_logistic_fit_equals_scikit_learn_one_vs_rest():
    # Our logistic objective separates over labels: for label k it is
    # mean_i BCE(z_ik, y_ik) + lam/2 ||w_k||^2 (bias free) = scikit-learn's binary
    # LogisticRegression objective divided by C n, with C = 1 / (lam n).
    x, q, _ = _problem(k=K, v=V, n=N, seed=2)
    labels = (q > 0).astype(int)
    lam = 0.05
    params, iters = FIT(
        jnp.asarray(x), jnp.asarray(q), jnp.float32(lam), _zeros(), model=_model_id("logistic")
    )
    assert int(iters) < 1000
    for k in range(K):
        # float64 data: scikit-learn keeps float32 input in float32, which moved its optimum
        # by up to 3.6e-4 here (ours and a float64 BFGS agree to 2e-7).
        sk = LogisticRegression(C=1.0 / (lam * len(x)), tol=1e-10, max_iter=10000).fit(
            x.astype(np.float64), labels[:, k]
        )
        np.testing.assert_allclose(params["kernel"][:, k], sk.coef_[0], atol=2e-4)
        np.testing.assert_allclose(params["bias"][k], sk.intercept_[0], atol=2e-4)


def test_sparsemax_fit_is_stationary_and_path_independent():
    # The objective is convex: a cold start and a warm start from another lambda's solution stop
    # at the same predictions, where the gradient (taken independently here) vanishes. (The bias
    # is unique only up to adding c * 1, which sparsemax ignores; the penalty pins the kernel.)
    x, q, _ = _problem(k=K, v=V, n=N, seed=3)
    jx, jq = jnp.asarray(x), jnp.asarray(q)
    fit = functools.partial(FIT, jx, jq, model=_model_id("sparsemax"))
    cold, iters = fit(jnp.float32(1e-2), _zeros())
    warm, _ = fit(jnp.float32(1e-2), fit(jnp.float32(1.0), _zeros())[0])
    assert int(iters) < 1000
    grad = jax.grad(exp.objective)(cold, jx, jq, jnp.float32(1e-2), model="sparsemax")
    assert float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grad)))) < 1e-4
    np.testing.assert_allclose(cold["kernel"], warm["kernel"], atol=1e-3)
    np.testing.assert_allclose(
        exp.predict(cold, jx, model="sparsemax"),
        exp.predict(warm, jx, model="sparsemax"),
        atol=1e-3,
    )
