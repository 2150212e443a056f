"""dl.optim.least_squares.levenberg_marquardt against numpy's linear least squares, the textbook
damped Gauss-Newton step, Rosenbrock's known minimum and scipy's MINPACK Levenberg-Marquardt."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from dl.optim import levenberg_marquardt


def _linear(q, ai, ti):
    return ai @ q["w"] - ti


def test_lm_solves_linear_least_squares_and_rosenbrock():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        a, t = rng.normal(size=(30, 4)), rng.normal(size=30)
        params = {"w": jnp.zeros(4, jnp.float64)}
        fitted, losses = levenberg_marquardt(
            params, _linear, jnp.asarray(a), jnp.asarray(t), steps=30
        )
        np.testing.assert_allclose(fitted["w"], np.linalg.lstsq(a, t, rcond=None)[0], atol=1e-8)
        assert np.all(np.diff(np.asarray(losses)) <= 0.0)  # only loss-lowering steps are kept
        # Rosenbrock as residuals (10 (y - x^2), 1 - x): the minimum is (1, 1) (Nocedal & Wright).
        rows = jnp.asarray([0, 1])

        def rosen(q, i, _):
            return jnp.where(i == 0, 10.0 * (q["z"][1] - q["z"][0] ** 2), 1.0 - q["z"][0])

        fitted, losses = levenberg_marquardt(
            {"z": jnp.asarray([-1.2, 1.0], jnp.float64)},
            rosen,
            rows,
            jnp.zeros(2, jnp.float64),
            steps=100,
        )
    np.testing.assert_allclose(fitted["z"], [1.0, 1.0], atol=1e-8)
    assert np.all(np.diff(np.asarray(losses)) <= 0.0)


def test_lm_step_with_more_params_than_residuals_is_the_damped_gauss_newton_step():
    # m = 3 residuals, p = 5 parameters: the m x m (dual) route; one step must equal the
    # textbook p x p formula -(J^T J + mu I)^{-1} J^T r, computed here in numpy.
    rng = np.random.default_rng(1)
    a, t, w0 = rng.normal(size=(3, 5)), rng.normal(size=3), rng.normal(size=5)
    with jax.enable_x64(True):
        fitted, _ = levenberg_marquardt(
            {"w": jnp.asarray(w0)}, _linear, jnp.asarray(a), jnp.asarray(t), steps=1
        )
    mu = 1e-3 * np.mean(np.sum(a * a, axis=0))
    step = -np.linalg.solve(a.T @ a + mu * np.eye(5), a.T @ (a @ w0 - t))
    np.testing.assert_allclose(fitted["w"], w0 + step, rtol=1e-10, atol=1e-12)


def test_lm_matches_scipy_minpack_on_an_exponential_fit():
    # y = a exp(b x) + c + noise, a nonlinear problem with a unique nearby minimum: both solvers
    # started from the same point must reach the same parameters and cost.
    rng = np.random.default_rng(2)
    x = np.linspace(0.0, 2.0, 25)
    y = 2.0 * np.exp(-1.3 * x) + 0.5 + 0.02 * rng.normal(size=x.shape)
    start = np.array([1.0, -0.5, 0.0])

    def residual(q, xi, yi):
        return q["abc"][0] * jnp.exp(q["abc"][1] * xi) + q["abc"][2] - yi

    with jax.enable_x64(True):
        fitted, losses = levenberg_marquardt(
            {"abc": jnp.asarray(start)}, residual, jnp.asarray(x), jnp.asarray(y), steps=100
        )
        ours = np.asarray(fitted["abc"])
    ref = scipy.optimize.least_squares(
        lambda q: q[0] * np.exp(q[1] * x) + q[2] - y, start, method="lm", xtol=1e-15, ftol=1e-15
    )
    assert ref.success
    np.testing.assert_allclose(ours, ref.x, rtol=1e-7, atol=1e-9)
    final = np.mean(np.square(ours[0] * np.exp(ours[1] * x) + ours[2] - y))
    np.testing.assert_allclose(final, 2.0 * ref.cost / len(x), rtol=1e-9)
    assert np.all(np.diff(np.asarray(losses)) <= 0.0)
