"""The importance-sampled log-likelihood on a linear-Gaussian model, where log p(x) is closed
form: p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I), so p(x) = N(b, W W^T + s^2 I) and the
posterior is N(S W^T (x - b) / s^2, S) with S = (I + W^T W / s^2)^-1. W has orthogonal columns,
so S is diagonal and the exact posterior is a diagonal-Gaussian q."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from dl.eval.likelihood import dataset_log_likelihood, importance_log_likelihood
from dl.ops.densities import diag_gaussian_log_density, standard_normal_log_density

D, L, S2 = 4, 2, 0.5


@pytest.fixture(scope="module")
def lg():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(D, L)))
    w = q * np.array([1.5, 0.7])  # orthogonal columns
    b = rng.normal(size=D)
    x = rng.normal(size=(5, D)) * 2.0
    post_var = 1.0 / (1.0 + np.sum(w**2, 0) / S2)  # diagonal of S
    post_mean = ((x - b) @ w / S2) * post_var
    exact = scipy.stats.multivariate_normal(b, w @ w.T + S2 * np.eye(D)).logpdf(x)
    f32 = lambda a: jnp.asarray(a, jnp.float32)

    def log_px_given_z(xb, z):
        mean = jnp.einsum("kbl,dl->kbd", z, f32(w)) + f32(b)
        return diag_gaussian_log_density(x=xb, mean=mean, logvar=f32(math.log(S2)))

    def posterior(xb):
        del xb
        return f32(post_mean), f32(np.log(post_var) * np.ones_like(post_mean))

    return {
        "x": f32(x),
        "exact": exact,
        "lik": log_px_given_z,
        "posterior": posterior,
        "post": (post_mean, post_var),
    }


def test_exact_posterior_gives_exact_log_likelihood_for_every_k(lg):
    for k, chunk in ((1, 1), (6, 3)):
        got = importance_log_likelihood(
            jax.random.PRNGKey(k),
            lg["x"],
            encode=lg["posterior"],
            log_px_given_z=lg["lik"],
            num_samples=k,
            chunk=chunk,
        )
        np.testing.assert_allclose(got, lg["exact"], rtol=1e-5, atol=1e-4)


def test_estimate_with_a_poor_proposal_converges_and_streams_exactly(lg):
    pm, pv = lg["post"]

    def poor(xb):  # shifted and 3x wider than the posterior
        del xb
        return jnp.asarray(pm + 0.3, jnp.float32), jnp.asarray(
            np.log(3 * pv) * np.ones_like(pm), jnp.float32
        )

    key = jax.random.PRNGKey(7)
    k, chunk = 1000, 250

    @jax.jit  # one compile for the estimate, its reference weights and 400 one-sample runs
    def compute():
        def estimate(kk, num, size):
            return importance_log_likelihood(
                kk, lg["x"], encode=poor, log_px_given_z=lg["lik"], num_samples=num, chunk=size
            )

        mean, logvar = poor(None)  # the same K draws, as one array
        eps = jnp.concatenate(
            [
                jax.random.normal(jax.random.fold_in(key, c), (chunk, *mean.shape))
                for c in range(k // chunk)
            ]
        )
        z = mean + jnp.exp(0.5 * logvar) * eps
        lw = (
            lg["lik"](lg["x"], z)
            + standard_normal_log_density(z)
            - diag_gaussian_log_density(x=z, mean=mean, logvar=logvar)
        )
        one = jax.vmap(lambda kk: estimate(kk, 1, 1))(jax.random.split(key, 400))
        return estimate(key, k, chunk), lw, one

    got, lw, one = (np.asarray(a) for a in compute())
    # The running logsumexp over chunks equals one logsumexp over the same K samples.
    lw = np.asarray(lw, np.float64)
    ref = scipy.special.logsumexp(lw, axis=0) - math.log(k)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    # It converges: within 4 standard errors of the exact log p(x), the SE of log(mean w) by the
    # delta method, std(w) / (sqrt(K) mean(w)), from the same weights.
    w = np.exp(lw - lw.max(0))
    se = w.std(0) / (math.sqrt(k) * w.mean(0))
    assert np.all(np.abs(got - lg["exact"]) < 4 * se + 1e-4), (got - lg["exact"], se)
    # With one sample the estimate (the ELBO) is biased low on average.
    gap = lg["exact"] - one.mean(0)
    assert np.all(gap > 0.5) and np.all(np.abs(got - lg["exact"]) < gap / 10), gap


def test_dataset_batches_pad_and_trim(lg):
    def fns(p):  # a proposal N(p, I) for every row
        return (lambda xb: (p + jnp.zeros((xb.shape[0], L)), jnp.zeros((xb.shape[0], L)))), lg[
            "lik"
        ]

    key, p = jax.random.PRNGKey(0), jnp.float32(0.5)
    got = dataset_log_likelihood(
        key, np.asarray(lg["x"]), params=p, model_fns=fns, num_samples=4, chunk=2, batch_size=3
    )
    assert got.shape == (5,)
    enc, lik = fns(p)
    first = importance_log_likelihood(
        jax.random.fold_in(key, 0),
        lg["x"][:3],
        encode=enc,
        log_px_given_z=lik,
        num_samples=4,
        chunk=2,
    )
    np.testing.assert_allclose(got[:3], first, rtol=1e-5)
    with pytest.raises(ValueError, match="multiple of chunk"):
        importance_log_likelihood(
            key, lg["x"], encode=enc, log_px_given_z=lik, num_samples=5, chunk=2
        )
