"""Gradient estimators (dl/objectives/estimators.py) against exact gradients: closed forms,
enumeration, and scipy quadrature with finite differences.

Every unbiasedness check uses a tolerance derived from the estimator's own spread:
|mean - exact| <= 5 * std / sqrt(n) per coordinate, for n independent estimates (5 standard
errors: a false alarm has probability ~6e-7 per coordinate). Seeds are fixed.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from dl.objectives import distributions as D
from dl.objectives import estimators as E

KEY = jax.random.PRNGKey(0)


def run(estimator, key, f, dist, theta, n, **kw):
    """`estimator(key, f, dist, theta, n, **kw)` compiled once: op-by-op dispatch of vmapped
    gradients costs more CPU than the compile."""
    return jax.jit(lambda k, th: estimator(k, f, dist, th, n, **kw))(key, theta)


def assert_unbiased(estimates, exact):
    """estimates: pytree with leading axis n of independent estimates; exact: same, no axis."""
    for est, ex in zip(jax.tree.leaves(estimates), jax.tree.leaves(exact), strict=True):
        est = np.asarray(est, np.float64)
        n = est.shape[0]
        err = np.abs(est.mean(0) - np.asarray(ex, np.float64))
        tol = 5 * est.std(0, ddof=1) / np.sqrt(n)
        assert np.all(err <= tol), (est.mean(0), ex, tol)
        assert np.all(tol > 0)  # a zero-spread "estimate" would make the check vacuous


def tree_var(terms):
    return [np.asarray(t, np.float64).var(0) for t in jax.tree.leaves(terms)]


def test_ema_update_matches_closed_form():
    assert float(E.ema_update(jnp.float32(2.0), jnp.float32(4.0), 0.75)) == pytest.approx(2.5)
    # n updates toward a constant v: a_n = v + decay^n (a_0 - v).
    avg = {"a": jnp.zeros(3), "b": jnp.float32(10.0)}
    for _ in range(7):
        avg = E.ema_update(avg, {"a": jnp.ones(3), "b": jnp.float32(0.0)}, 0.9)
    np.testing.assert_allclose(avg["a"], 1 - 0.9**7, rtol=1e-6)
    np.testing.assert_allclose(avg["b"], 10 * 0.9**7, rtol=1e-6)


@pytest.mark.parametrize("axis", [0, 1])
def test_loo_baseline_matches_loop(axis):
    v = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    ours = np.asarray(E.loo_baseline(jnp.asarray(v), axis=axis))
    k = v.shape[axis]
    for i in range(k):
        rest = np.delete(v, i, axis=axis).mean(axis)
        np.testing.assert_allclose(np.take(ours, i, axis=axis), rest, rtol=1e-5, atol=1e-6)


def test_gaussian_score_and_pathwise_unbiased_closed_form():
    # f(x) = sum_j cos(x_j) + x_0 x_1 under N(mu, diag(s^2)):
    # E f = sum_j cos(mu_j) e^{-s_j^2/2} + mu_0 mu_1.
    mu, s = np.array([0.5, -1.0]), np.array([1.0, 0.5])
    theta = {"mean": jnp.asarray(mu, jnp.float32), "std": jnp.asarray(s, jnp.float32)}
    decay = np.exp(-(s**2) / 2)
    exact = {
        "mean": -np.sin(mu) * decay + mu[::-1],
        "std": -s * np.cos(mu) * decay,
    }

    def f(x, th):
        return jnp.sum(jnp.cos(x)) + x[0] * x[1]

    n = 20000
    assert_unbiased(run(E.score_function_terms, KEY, f, D.gaussian(), theta, n), exact)
    assert_unbiased(run(E.pathwise_terms, KEY, f, D.gaussian(), theta, n), exact)


def test_gaussian_unbiased_against_quadrature():
    # f(x) = 1 / (1 + x^2): E f has no elementary closed form; the exact gradient is a central
    # difference of scipy quadrature (step 1e-4: error ~1e-8, far below the MC tolerance).
    mu, s = 0.3, 0.8

    def expectation(m, sd):
        val, _ = integrate.quad(lambda x: stats.norm.pdf(x, m, sd) / (1 + x**2), -np.inf, np.inf)
        return val

    h = 1e-4
    exact = {
        "mean": (expectation(mu + h, s) - expectation(mu - h, s)) / (2 * h),
        "std": (expectation(mu, s + h) - expectation(mu, s - h)) / (2 * h),
    }
    theta = {"mean": jnp.float32(mu), "std": jnp.float32(s)}

    def f(x, th):
        return 1 / (1 + x**2)

    assert_unbiased(run(E.score_function_terms, KEY, f, D.gaussian(), theta, 20000), exact)
    assert_unbiased(run(E.pathwise_terms, KEY, f, D.gaussian(), theta, 20000), exact)


def test_bernoulli_unbiased_against_enumeration():
    logits = np.array([0.3, -0.7, 1.2])
    w = np.array([1.0, -2.0, 0.5])

    def f_np(s):
        return (s @ w - 1) ** 2 + s[0] * s[2]

    def expectation(lg):  # exact, over all 2^3 outcomes, in float64
        p = 1 / (1 + np.exp(-lg))
        return sum(
            f_np(np.array(s)) * np.prod(np.where(np.array(s) == 1, p, 1 - p))
            for s in itertools.product([0.0, 1.0], repeat=3)
        )

    h = 1e-5
    exact = np.array(
        [(expectation(logits + h * e) - expectation(logits - h * e)) / (2 * h) for e in np.eye(3)]
    )
    wj = jnp.asarray(w, jnp.float32)

    def f(s, th):
        return (s @ wj - 1) ** 2 + s[0] * s[2]

    theta = {"logits": jnp.asarray(logits, jnp.float32)}
    terms = run(E.score_function_terms, KEY, f, D.bernoulli(), theta, 20000)
    assert_unbiased(terms, {"logits": exact})


def test_categorical_unbiased_against_closed_form():
    logits = np.array([0.2, -1.0, 0.5, 1.5])
    table = np.array([3.0, -1.0, 0.5, 2.0])
    p = np.exp(logits) / np.exp(logits).sum()
    exact = p * (table - p @ table)  # d/dlogits of sum_c softmax_c table_c
    tj = jnp.asarray(table, jnp.float32)
    theta = {"logits": jnp.asarray(logits, jnp.float32)}
    terms = run(E.score_function_terms, KEY, lambda s, th: tj[s], D.categorical(), theta, 20000)
    assert_unbiased(terms, {"logits": exact})
    with pytest.raises(ValueError, match="no reparameterization"):
        run(E.pathwise_terms, KEY, lambda s, th: tj[s], D.categorical(), theta, 4)


def test_direct_term_of_theta_dependent_cost_matters():
    # f(x, theta) = mean * x: E f = mean^2, so dE/dmean = 2 mean. The score term alone gives
    # E[mean x (x - mean) / s^2] = mean: dropping grad_theta f would be off by mean.
    mu = 1.5
    theta = {"mean": jnp.float32(mu), "std": jnp.float32(1.0)}

    def f(x, th):
        return th["mean"] * x

    def f_frozen(x, th):
        return f(x, jax.lax.stop_gradient(th))

    n = 20000
    exact = {"mean": 2 * mu, "std": 0.0}

    def estimates(key, th):
        return (
            E.score_function_terms(key, f, D.gaussian(), th, n),
            E.pathwise_terms(key, f, D.gaussian(), th, n),
            E.score_function_terms(key, f_frozen, D.gaussian(), th, n)["mean"],
        )

    full, path, frozen = jax.jit(estimates)(KEY, theta)
    assert_unbiased(full, exact)
    assert_unbiased(path, exact)
    frozen = np.asarray(frozen)
    tol = 5 * frozen.std(ddof=1) / np.sqrt(n)
    assert abs(frozen.mean() - 2 * mu) > 5 * tol  # clearly biased without the direct term


def test_params_fn_with_extra_parameters_and_direct_term():
    # theta = {"logits", "w"}; f(s, theta) = w * (s_0 + s_1): dE/dw = sigmoid(l_0) + sigmoid(l_1)
    # comes from the direct term only; dE/dl_j = w sigmoid'(l_j).
    logits = np.array([0.4, -0.6])
    p = 1 / (1 + np.exp(-logits))
    w = 2.0
    theta = {"logits": jnp.asarray(logits, jnp.float32), "w": jnp.float32(w)}
    terms = run(
        E.score_function_terms,
        KEY,
        lambda s, th: th["w"] * jnp.sum(s),
        D.bernoulli(),
        theta,
        20000,
        params_fn=lambda th: {"logits": th["logits"]},
    )
    assert_unbiased(terms, {"logits": w * p * (1 - p), "w": p.sum()})


def _repeat(estimator, repeats):
    """`repeats` independent estimates from `estimator(key)`, vmapped over keys."""
    return jax.jit(jax.vmap(estimator))(jax.random.split(jax.random.PRNGKey(1), repeats))


def test_loo_baseline_is_unbiased_and_lowers_variance():
    # f = (x - 2)^2 + 10 under N(1, 1): dE/dmu = -2, dE/dsigma = 2. The offset of 10 inflates
    # the plain score-function variance; the leave-one-out baseline removes it.
    theta = {"mean": jnp.float32(1.0), "std": jnp.float32(1.0)}

    def f(x, th):
        return (x - 2.0) ** 2 + 10.0

    def estimate(baseline):
        return _repeat(
            lambda k: E.score_function(k, f, D.gaussian(), theta, 4, baseline=baseline), 4000
        )

    exact = {"mean": -2.0, "std": 2.0}
    plain, loo = estimate(None), estimate("loo")
    assert_unbiased(plain, exact)
    assert_unbiased(loo, exact)
    for v_loo, v_plain in zip(tree_var(loo), tree_var(plain), strict=True):
        assert v_loo < v_plain


def test_optimal_control_variate_lowers_variance_and_is_unbiased():
    theta = {"mean": jnp.float32(1.0), "std": jnp.float32(1.0)}

    def f(x, th):
        return (x - 2.0) ** 2 + 10.0

    def estimates(key, th):
        return (
            E.score_function_cv(key, f, D.gaussian(), th, 20000),
            E.score_function_terms(key, f, D.gaussian(), th, 20000),
            E.score_terms(key, D.gaussian(), th, 20000),
        )

    (terms, coef), plain, scores = jax.jit(estimates)(KEY, theta)
    for v_cv, v_plain in zip(tree_var(terms), tree_var(plain), strict=True):
        assert v_cv < v_plain
    # The coefficient is the optimal constant baseline E[f s^2] / E[s^2], in closed form for
    # s_mu = eps, s_sigma = eps^2 - 1 (mu = sigma = 1, f = (eps - 1)^2 + 10):
    # E[f eps^2] / 1 = 14, E[f (eps^2 - 1)^2] / 2 = 32 / 2 = 16; tolerance from the ratio's delta method.
    for name, want in (("mean", 14.0), ("std", 16.0)):
        g = np.asarray(plain[name], np.float64)
        h = np.asarray(scores[name], np.float64)
        c_hat = float(coef[name])
        resid = (g - c_hat * h) * (h - h.mean())  # influence of each sample on Cov/Var
        se = resid.std() / h.var() / np.sqrt(len(h))
        assert abs(c_hat - want) <= 5 * se, (name, c_hat, se)
    # The mean over independent repeats of K = 64 matches the exact gradient: the O(1/K) bias
    # of an in-sample coefficient is below the tolerance at this K.
    cv = _repeat(lambda k: E.tree_mean(E.score_function_cv(k, f, D.gaussian(), theta, 64)[0]), 500)
    assert_unbiased(cv, {"mean": -2.0, "std": 2.0})


def test_control_variate_matches_numpy_on_a_pytree():
    rng = np.random.default_rng(2)
    x = rng.normal(1.0, 1.0, size=(500, 3))
    g = {"a": x**2, "b": np.sin(x[:, 0])}
    h = {"a": x, "b": x[:, 0] ** 2}
    h_mean = {"a": np.ones(3), "b": 2.0}  # E x = 1, E x^2 = 2
    terms, coef = jax.jit(E.control_variate)(
        jax.tree.map(jnp.asarray, g),
        jax.tree.map(jnp.asarray, h),
        jax.tree.map(jnp.asarray, h_mean),
    )
    for name in ("a", "b"):
        gi, hi = g[name].reshape(500, -1), h[name].reshape(500, -1)
        c = np.array(
            [
                np.cov(gi[:, j], hi[:, j], bias=True)[0, 1] / hi[:, j].var()
                for j in range(gi.shape[1])
            ]
        ).reshape(np.shape(h_mean[name]))
        np.testing.assert_allclose(coef[name], c, rtol=1e-4)
        want = g[name] - c * (h[name] - h_mean[name])
        np.testing.assert_allclose(terms[name], want, rtol=1e-4, atol=1e-5)
        assert want.var(0).sum() < g[name].var(0).sum()


def test_learned_baseline_fits_least_squares_and_lowers_variance():
    # Context c ~ N(0, 1), independent of x ~ N(mu, 1); f(x, c) = (x - 1)^2 + 3 c, so
    # E[f | c] = (mu - 1)^2 + 1 + 3 c is linear in c: a baseline phi_0 + phi_1 c can learn it.
    theta = {"mean": jnp.float32(0.5), "std": jnp.float32(1.0)}
    n = 4000
    ka, kb, kc, kd = jax.random.split(KEY, 4)

    def f(x, th, c):
        return (x - 1.0) ** 2 + 3.0 * c

    def baseline_fn(phi, c):
        return phi[0] + phi[1] * c

    def params_fn(th, c):
        return th

    ctx_a = jax.random.normal(kc, (n,))
    x_a = theta["mean"] + jax.random.normal(ka, (n,))
    targets = f(x_a, theta, ctx_a)
    phi = jnp.zeros(2)
    grad = jax.jit(jax.grad(lambda p: E.baseline_loss(baseline_fn, p, ctx_a, targets)))
    for _ in range(300):
        phi = phi - 0.3 * grad(phi)
    design = np.stack([np.ones(n), np.asarray(ctx_a)], 1)
    lstsq = np.linalg.lstsq(design, np.asarray(targets, np.float64), rcond=None)[0]
    np.testing.assert_allclose(phi, lstsq, rtol=1e-3, atol=1e-4)

    ctx_b = jax.random.normal(kd, (n,))  # fresh samples: the fitted baseline is independent
    kw = {"params_fn": params_fn, "context": ctx_b}
    learned = run(
        E.score_function_terms,
        kb,
        f,
        D.gaussian(),
        theta,
        n,
        baseline=baseline_fn(phi, ctx_b),
        **kw,
    )
    plain = run(E.score_function_terms, kb, f, D.gaussian(), theta, n, **kw)
    assert_unbiased(learned, {"mean": 2 * (0.5 - 1.0), "std": 2.0})
    for v_l, v_p in zip(tree_var(learned), tree_var(plain), strict=True):
        assert v_l < v_p


def test_mean_estimators_equal_their_terms_and_work_under_jit_and_vmap():
    theta = {"mean": jnp.array([0.1, 0.2]), "std": jnp.array([1.0, 2.0])}
    dist = D.gaussian()

    def f(x, th):
        return jnp.sum(jnp.sin(x) * th["mean"])

    keys = jax.random.split(KEY, 3)
    for mean_fn, terms_fn, kw in (
        (E.score_function, E.score_function_terms, {"baseline": "loo"}),
        (E.pathwise, E.pathwise_terms, {}),
    ):

        def all_three(keys, th, mean_fn=mean_fn, terms_fn=terms_fn, kw=kw):
            one = mean_fn(keys[2], f, dist, th, 16, **kw)
            via_terms = E.tree_mean(terms_fn(keys[2], f, dist, th, 16, **kw))
            if mean_fn is not E.score_function:
                return one, via_terms, None
            batched = jax.vmap(lambda k: mean_fn(k, f, dist, th, 16, **kw))(keys)
            return one, via_terms, batched

        one, via_terms, batched = jax.jit(all_three)(keys, theta)
        for name in theta:
            np.testing.assert_allclose(via_terms[name], one[name], rtol=1e-5, atol=1e-6)
            if batched is not None:
                np.testing.assert_allclose(batched[name][2], one[name], rtol=1e-5, atol=1e-6)
                assert not np.allclose(batched[name][0], one[name])  # other keys, other values


def test_bad_baseline_rejected():
    theta = {"mean": jnp.float32(0.0), "std": jnp.float32(1.0)}
    with pytest.raises(ValueError, match="unknown baseline"):
        run(E.score_function, KEY, lambda x, th: x, D.gaussian(), theta, 4, baseline="mean")
    with pytest.raises(ValueError, match="num_samples >= 2"):
        run(E.score_function, KEY, lambda x, th: x, D.gaussian(), theta, 1, baseline="loo")
