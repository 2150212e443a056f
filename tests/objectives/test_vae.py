"""VAE networks, log-densities and bounds against closed forms, scipy, torch and identities."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from dl.models.vae import VAE, sample_latent
from dl.objectives.vae import (
    bound,
    engine_loss,
    log_mean_exp,
    log_weights,
    model_fns,
    vae_objective,
)
from dl.ops.densities import bernoulli_log_likelihood, diag_gaussian_log_density
from dl.ops.losses import gaussian_kl

D, L, B = 6, 2, 3


@pytest.fixture(scope="module")
def tiny():
    model = VAE(hidden=(5,), latent=L, out=D)
    x = (np.random.default_rng(0).random((B, D)) < 0.5).astype(np.float32)
    params = jax.jit(model.init)(jax.random.PRNGKey(1), x)["params"]
    return model, params, jnp.asarray(x)


def test_parameter_count_of_burda_architecture():
    model = VAE()  # 784-200-200-50, one stochastic layer
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 784)))
    n = sum(math.prod(a.shape) for a in jax.tree.leaves(shapes))
    enc = (784 * 200 + 200) + (200 * 200 + 200) + 2 * (200 * 50 + 50)
    dec = (50 * 200 + 200) + (200 * 200 + 200) + (200 * 784 + 784)
    assert n == enc + dec
    gauss = VAE(hidden=(4,), latent=2, out=3, decoder="gaussian", std="softplus")
    v = jax.eval_shape(gauss.init, jax.random.PRNGKey(0), jnp.zeros((1, 3)))
    decode = lambda v, z: gauss.apply(v, z, method="decode")
    out = jax.eval_shape(decode, v, jnp.zeros((7, 5, 2)))
    assert [o.shape for o in out] == [(7, 5, 3), (7, 5, 3)]  # sample axes pass through


def test_bernoulli_log_likelihood_matches_scipy():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4, 5)).astype(np.float32)
    x = (rng.random((4, 5)) < 0.5).astype(np.float32)
    got = np.asarray(bernoulli_log_likelihood(logits=jnp.asarray(logits), x=jnp.asarray(x)))
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    ref = scipy.stats.bernoulli.logpmf(x, p).sum(-1)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # Huge logits: the stable form gives the exact -|l| for the wrong label, 0 for the right one.
    big = jnp.array([[1e4, -1e4]], jnp.float32)
    np.testing.assert_allclose(
        bernoulli_log_likelihood(logits=big, x=jnp.array([[0.0, 1.0]])), [-2e4]
    )
    np.testing.assert_allclose(
        bernoulli_log_likelihood(logits=big, x=jnp.array([[1.0, 0.0]])), [0.0]
    )


def test_diag_gaussian_log_density_matches_scipy():
    rng = np.random.default_rng(1)
    x, m, v = (rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3))
    got = diag_gaussian_log_density(x=jnp.asarray(x), mean=jnp.asarray(m), logvar=jnp.asarray(v))
    ref = scipy.stats.norm.logpdf(x, m, np.exp(0.5 * v)).sum(-1)
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_iwae_with_one_sample_is_the_elbo(tiny):
    model, params, x = tiny
    enc, lik = model_fns(model, params)

    @jax.jit
    def bounds(key):
        return (
            bound(enc, lik, x, key, kind="iwae", k=1)["bound"],
            bound(enc, lik, x, key, kind="elbo", k=1, kl="mc")["bound"],
            bound(enc, lik, x, key, kind="elbo", k=4000, kl="analytic"),
            bound(enc, lik, x, key, kind="elbo", k=4000, kl="mc")["bound"],
        )

    iwae, mc, an, mcs = bounds(jax.random.PRNGKey(3))
    np.testing.assert_allclose(iwae, mc, rtol=1e-6)  # same samples: the same number
    # The analytic-KL ELBO estimates the same L_1 (averaged over many samples).
    assert float(jnp.max(jnp.abs(an["bound"] - mcs))) < 0.05
    assert float(jnp.min(an["kl"])) > 0.0


def test_analytic_kl_equals_monte_carlo_kl_in_expectation():
    rng = np.random.default_rng(2)
    mean = jnp.asarray(rng.normal(size=(2, 3)).astype(np.float32))
    logvar = jnp.asarray(rng.normal(0, 0.5, (2, 3)).astype(np.float32))

    @jax.jit
    def log_ratio(key):
        z, _ = sample_latent(key, mean, logvar, 20000)
        log_q = diag_gaussian_log_density(x=z, mean=mean, logvar=logvar)
        return log_q - diag_gaussian_log_density(x=z, mean=0.0 * z, logvar=0.0 * z)

    diff = np.asarray(log_ratio(jax.random.PRNGKey(0)), np.float64)
    se = diff.std(0) / math.sqrt(len(diff))
    exact = np.asarray(gaussian_kl(mean=mean, logvar=logvar, reduce=False))
    assert np.all(np.abs(diff.mean(0) - exact) < 4 * se), (diff.mean(0), exact, se)


def test_bound_is_non_decreasing_in_k_in_expectation(tiny):
    # L_k from the first k of 20 samples of each draw: E[L_k] is the bound, and the paired
    # differences L_k' - L_k give tight standard errors.
    model, params, x = tiny
    enc, lik = model_fns(model, params)
    ks = (1, 2, 5, 20)

    @jax.jit
    def draws(keys):
        lw = jax.vmap(lambda key: log_weights(enc, lik, x, key, 20)["log_w"])(keys)
        return jnp.stack([log_mean_exp(lw[:, :k], axis=1).sum(-1) for k in ks])

    d = np.asarray(draws(jax.random.split(jax.random.PRNGKey(4), 2000)), np.float64)
    for i in range(len(ks) - 1):
        diff = d[i + 1] - d[i]
        se = diff.std() / math.sqrt(len(diff))
        assert diff.mean() > -3 * se, (ks[i], diff.mean(), se)
    diff = d[-1] - d[0]  # and it does increase for this model: many SEs above 0
    assert diff.mean() > 5 * diff.std() / math.sqrt(len(diff)), (diff.mean(), diff.std())


def test_log_mean_exp_is_stable():
    lw = jnp.array([[-1e4], [-1e4 + math.log(3.0)]], jnp.float32)
    np.testing.assert_allclose(log_mean_exp(lw), [-1e4 + math.log(2.0)], rtol=1e-7)


def test_objective_is_minus_masked_mean_bound(tiny):
    model, params, x = tiny
    key = jax.random.PRNGKey(5)
    obj = vae_objective(model, kind="iwae", k=3)
    batch = {"x": x, "mask": jnp.array([1.0, 1.0, 0.0])}
    enc, lik = model_fns(model, params)

    @jax.jit
    def all_three():
        per = bound(enc, lik, x, key, kind="iwae", k=3)["bound"]
        return obj(params, batch, key), engine_loss(obj)(params, {"s": 1.0}, batch, key), per

    (loss, m), (loss2, (_, extra)), per = all_three()
    np.testing.assert_allclose(loss, -per[:2].mean(), rtol=1e-6)  # the masked row is left out
    np.testing.assert_allclose(m["bound"], -loss)
    assert float(extra["s"]) == 1.0 and float(loss2) == float(loss)  # the engine's shape
    with pytest.raises(ValueError, match="bound must be"):
        vae_objective(model, kind="nope")(params, batch, key)
