"""minimize_lbfgs against a closed form (a quadratic) and scipy's L-BFGS-B (logistic regression)."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from dl.optim.lbfgs import minimize_lbfgs


def test_quadratic_reaches_the_closed_form_minimizer():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    h = jnp.asarray(a @ a.T + 6 * np.eye(6), jnp.float32)
    b = jnp.asarray(rng.normal(size=6), jnp.float32)
    f = lambda p: 0.5 * p["w"] @ h @ p["w"] - b @ p["w"]
    params, it = jax.jit(lambda p: minimize_lbfgs(f, p, max_iter=100, tol=1e-5))(
        {"w": jnp.zeros(6, jnp.float32)}
    )
    np.testing.assert_allclose(params["w"], np.linalg.solve(h, b), rtol=1e-4, atol=1e-5)
    assert 0 < int(it) < 100  # stopped on the tolerance, not the cap


def test_logistic_regression_matches_scipy_and_respects_max_iter():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    y = (x @ rng.normal(size=5) + 0.5 * rng.normal(size=200) > 0).astype(np.float32)

    def f(w):
        z = jnp.asarray(x) @ w
        return jnp.mean(jnp.logaddexp(0.0, z) - jnp.asarray(y) * z) + 0.05 * jnp.sum(w * w)

    w, _ = minimize_lbfgs(f, jnp.zeros(5, jnp.float32), max_iter=200, tol=1e-6)

    # scipy in float64 with the same objective written in numpy, and its exact gradient.
    def fn(v):
        z = x.astype(np.float64) @ v
        p = 1.0 / (1.0 + np.exp(-z))
        value = np.mean(np.logaddexp(0.0, z) - y * z) + 0.05 * v @ v
        return value, x.T.astype(np.float64) @ (p - y) / len(y) + 0.1 * v

    ref = scipy.optimize.minimize(fn, np.zeros(5), jac=True, method="L-BFGS-B", tol=1e-12)
    np.testing.assert_allclose(w, ref.x, atol=1e-3)
    assert float(f(w)) <= ref.fun + 1e-6
    assert ref.success
    _, it = minimize_lbfgs(f, jnp.zeros(5, jnp.float32), max_iter=2, tol=0.0)
    assert int(it) == 2
