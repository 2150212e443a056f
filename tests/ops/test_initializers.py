"""Initializers: distributions and variances against the formulas, scipy and jax.nn.initializers."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from dl.ops import initializers as inits

DENSE = (300, 200)  # fan_in 300, fan_out 200: 60k samples
CONV = (3, 3, 32, 64)  # fan_in 288, fan_out 576: 18k samples

# name -> (distribution, variance formula in (fan_in, fan_out), jax.nn.initializers equivalent)
CASES = {
    "glorot_uniform": (
        "uniform",
        lambda fi, fo: 2 / (fi + fo),
        jax.nn.initializers.glorot_uniform(),
    ),
    "glorot_normal": ("normal", lambda fi, fo: 2 / (fi + fo), jax.nn.initializers.glorot_normal()),
    "standard_uniform": (
        "uniform",
        lambda fi, fo: 1 / (3 * fi),
        jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
    ),
    "he_normal": ("normal", lambda fi, fo: 2 / fi, jax.nn.initializers.he_normal()),
    "he_uniform": ("uniform", lambda fi, fo: 2 / fi, jax.nn.initializers.he_uniform()),
    "lecun_normal": ("normal", lambda fi, fo: 1 / fi, jax.nn.initializers.lecun_normal()),
    "lecun_uniform": ("uniform", lambda fi, fo: 1 / fi, jax.nn.initializers.lecun_uniform()),
}


def _variance_and_se(w):
    """Variance about the known mean 0 and its standard error, from the sample itself."""
    sq = np.square(np.asarray(w, np.float64)).ravel()
    return sq.mean(), sq.std() / math.sqrt(sq.size)


def test_fans_dense_and_conv():
    assert inits.fans(DENSE) == (300, 200)
    assert inits.fans(CONV) == (3 * 3 * 32, 3 * 3 * 64)
    with pytest.raises(ValueError, match="kernel shape"):
        inits.fans((5,))


@pytest.mark.parametrize("shape", [DENSE, CONV], ids=["dense", "conv"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_distribution_and_variance_match_formula(name, shape):
    kind, variance_fn, _ = CASES[name]
    w = np.asarray(inits.get_initializer(name)(jax.random.key(0), shape), np.float64)
    assert w.shape == shape
    var = variance_fn(*inits.fans(shape))
    got, se = _variance_and_se(w)
    assert abs(got - var) < 5 * se, (got, var, se)
    assert abs(w.mean()) < 5 * math.sqrt(var / w.size)
    if kind == "uniform":
        limit = math.sqrt(3 * var)
        dist = scipy.stats.uniform(-limit, 2 * limit)
        assert np.abs(w).max() <= limit * (1 + 1e-6)
        assert np.abs(w).max() > limit * 0.999  # the bound is reached, not a narrower interval
    else:
        dist = scipy.stats.norm(0, math.sqrt(var))
    assert scipy.stats.kstest(w.ravel(), dist.cdf).pvalue > 1e-4


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_variance_as_jax_initializers(name):
    _, _, reference = CASES[name]
    ours, se_ours = _variance_and_se(inits.get_initializer(name)(jax.random.key(1), CONV))
    theirs, se_theirs = _variance_and_se(reference(jax.random.key(2), CONV, jnp.float32))
    assert abs(ours - theirs) < 5 * math.hypot(se_ours, se_theirs)


def test_scaled_normal_and_glorot_gain():
    w = inits.scaled_normal(0.05)(jax.random.key(3), DENSE)
    got, se = _variance_and_se(w)
    assert abs(got - 0.05**2) < 5 * se
    ref, se_ref = _variance_and_se(jax.nn.initializers.normal(0.05)(jax.random.key(4), DENSE))
    assert abs(got - ref) < 5 * math.hypot(se, se_ref)
    # gain multiplies the sample itself, not just its variance.
    base = inits.glorot_uniform()(jax.random.key(5), DENSE)
    np.testing.assert_allclose(
        inits.glorot_uniform(gain=2.0)(jax.random.key(5), DENSE), 2 * base, rtol=1e-6
    )


@pytest.mark.parametrize(
    "shape", [(64, 32), (32, 64), (48, 48), (3, 3, 8, 16)], ids=["tall", "wide", "square", "conv"]
)
@pytest.mark.parametrize("gain", [1.0, math.sqrt(2)])
def test_orthogonal_gram_is_gain_squared_identity(shape, gain):
    w = np.asarray(
        inits.get_initializer("orthogonal", gain=gain)(jax.random.key(6), shape), np.float64
    )
    assert w.shape == shape
    m = w.reshape(-1, shape[-1])
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(len(gram)), atol=1e-5)


def test_orthogonal_is_haar_distributed():
    # Under Haar measure on O(n) each entry has mean 0 and variance 1/n. Without the sign fix
    # LAPACK's Householder QR makes Q[0, 0] always negative, which this test catches.
    n, draws = 4, 4000
    keys = jax.random.split(jax.random.key(7), draws)
    qs = np.asarray(jax.vmap(lambda k: inits.orthogonal()(k, (n, n)))(keys), np.float64)
    entry_se = math.sqrt(1 / n / draws)
    assert np.abs(qs.mean(axis=0)).max() < 5 * entry_se
    np.testing.assert_allclose(
        np.square(qs).mean(axis=0), 1 / n, atol=5 * np.square(qs).std() / math.sqrt(draws)
    )


def test_forget_gate_bias_block():
    h = 5
    b = np.asarray(
        inits.get_initializer("forget_gate_bias", hidden_size=h, value=2.0)(
            jax.random.key(0), (4 * h,)
        )
    )
    np.testing.assert_array_equal(b.reshape(4, h), [[0.0] * h, [2.0] * h, [0.0] * h, [0.0] * h])
    with pytest.raises(ValueError, match="LSTM bias shape"):
        inits.forget_gate_bias(h)(jax.random.key(0), (3 * h,))


def _all_initializers():
    out = {name: inits.get_initializer(name) for name in CASES}
    out["orthogonal"] = inits.orthogonal()
    out["scaled_normal"] = inits.scaled_normal()
    return out


@pytest.mark.parametrize("name", sorted(_all_initializers()))
def test_deterministic_per_key_and_dtype(name):
    init = _all_initializers()[name]
    a = init(jax.random.key(8), (6, 4))
    np.testing.assert_array_equal(a, init(jax.random.key(8), (6, 4)))
    assert not np.array_equal(a, init(jax.random.key(9), (6, 4)))
    assert a.dtype == jnp.float32
    for dtype in (jnp.bfloat16, jnp.float16):
        assert init(jax.random.key(8), (6, 4), dtype).dtype == dtype


def test_plugs_into_flax_modules():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(4, (3, 3), kernel_init=inits.he_normal())(x)
            x = nn.Dense(3, kernel_init=inits.orthogonal(), bias_init=inits.scaled_normal(0.1))(
                x.reshape(x.shape[0], -1)
            )
            return x + self.param("lstm_bias", inits.forget_gate_bias(2), (8,))[:3]

    params = Net().init(jax.random.key(0), jnp.ones((1, 5, 5, 2)))["params"]
    assert params["Conv_0"]["kernel"].shape == (3, 3, 2, 4)
    k = np.asarray(params["Dense_0"]["kernel"], np.float64)
    np.testing.assert_allclose(k.T @ k, np.eye(3), atol=1e-5)
    np.testing.assert_array_equal(params["lstm_bias"], [0, 0, 1, 1, 0, 0, 0, 0])


def test_registry_errors_list_names():
    with pytest.raises(ValueError, match="glorot_uniform.*orthogonal"):
        inits.get_initializer("xavier")
