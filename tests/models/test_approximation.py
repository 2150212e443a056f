"""dl.models.approximation against closed forms, flax's MLP and numpy's least squares."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.data.synthetic import sawtooth
from dl.models import approximation as ap
from dl.nn.mlp import MLP
from dl.train.state import param_count


def _triangle_wave(x, k):
    # t^k(x) = 1 - |2 frac(2^(k-1) x) - 1|, the closed form of the k-fold tent map.
    return 1.0 - np.abs(2.0 * np.mod(2.0 ** (k - 1) * x, 1.0) - 1.0)


@pytest.mark.parametrize("k", [1, 2, 5, 6, 8])
def test_deep_construction_is_exact_with_6k_plus_1_params(k):
    model = MLP(hidden=(2,) * k, out=1, activation="relu")
    params = ap.deep_sawtooth_params(k)
    init = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.float32))["params"]
    assert jax.tree.structure(params) == jax.tree.structure(init)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, init)
    assert param_count(params) == 6 * k + 1
    # Every kink j / 2^k is a dyadic rational: float32 represents the grid and the net exactly.
    x = np.concatenate(
        [np.arange(2**k + 1) / 2**k, np.random.default_rng(k).uniform(0, 1, 200)]
    ).astype(np.float32)
    out = np.asarray(model.apply({"params": params}, jnp.asarray(x)[:, None]))[:, 0]
    np.testing.assert_allclose(out, _triangle_wave(x.astype(np.float64), k), atol=2.0**k * 1e-7)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_masked_padded_net_equals_flax_mlp_of_its_width(activation):
    width, max_width = 5, 9
    model = MLP(hidden=(width,), out=1, activation=activation)
    x = jnp.linspace(-2.0, 2.0, 33, dtype=jnp.float32)
    p = model.init(jax.random.PRNGKey(1), x[:, None])["params"]
    rng = np.random.default_rng(0)
    p["dense_0"]["bias"] = jnp.asarray(rng.normal(size=width), jnp.float32)
    pad = lambda a: jnp.concatenate([a, jnp.asarray(rng.normal(size=max_width - width), a.dtype)])
    padded = {
        "w": pad(p["dense_0"]["kernel"][0]),
        "b": pad(p["dense_0"]["bias"]),
        "v": pad(p["head"]["kernel"][:, 0]),
        "c": p["head"]["bias"][0],
    }
    mask = ap.width_mask(max_width, jnp.asarray(width))
    np.testing.assert_array_equal(np.asarray(mask), [1] * width + [0] * (max_width - width))
    ours = ap.one_hidden(padded, x, mask, activation=activation)
    np.testing.assert_allclose(
        ours, model.apply({"params": p}, x[:, None])[:, 0], rtol=1e-6, atol=1e-6
    )
    # Padding units get exactly zero gradient, so training never lets them into the net.
    grads = jax.grad(lambda q: jnp.sum(ap.one_hidden(q, x, mask, activation=activation) ** 2))(
        padded
    )
    for name in ("w", "b", "v"):
        assert np.all(np.asarray(grads[name])[width:] == 0.0), name


def test_init_statistics():
    # Hidden kernels N(0, 1) (LeCun normal at fan_in 1), centres -b/w uniform on [low, high];
    # the random head is LeCun normal at fan_in = width, as MLP draws it.
    width = 64
    keys = jax.random.split(jax.random.PRNGKey(0), 200)
    p = jax.vmap(
        lambda k: ap.hidden_init(k, width, low=-2.0, high=2.0, positive=False, dtype=jnp.float32)
    )(keys)
    assert abs(float(jnp.std(p["w"])) - 1.0) < 0.03
    centres = np.asarray(-p["b"] / p["w"]).ravel()
    assert centres.min() >= -2.0 - 1e-4 and centres.max() <= 2.0 + 1e-4
    assert abs(centres.mean()) < 0.05 and abs(centres.var() - 16.0 / 12.0) < 0.05  # U[-2, 2]
    head = jax.vmap(lambda k, q: ap.random_head(k, q, jnp.asarray(width)))(keys, p)
    assert abs(float(jnp.std(head["v"])) * math.sqrt(width) - 1.0) < 0.03
    positive = ap.hidden_init(keys[0], width, low=0.0, high=1.0, positive=True, dtype=jnp.float32)
    assert float(jnp.min(positive["w"])) > 0.0


def test_lstsq_head_matches_numpy():
    max_width, width = 12, 8
    with jax.enable_x64(True):
        x = jnp.linspace(0.0, 1.0, 101, dtype=jnp.float64)
        y = sawtooth(x, 3)
        mask = ap.width_mask(max_width, jnp.asarray(width), jnp.float64)
        p = ap.hidden_init(jax.random.PRNGKey(3), max_width, low=0.0, high=1.0, positive=True)
        ours = ap.lstsq_head(p, mask, x, y, activation="relu")
        fit_ours = np.asarray(ap.one_hidden(ours, x, mask, activation="relu"))
    h = np.maximum(
        np.asarray(x)[:, None] * np.asarray(p["w"][:width]) + np.asarray(p["b"][:width]), 0.0
    )
    design = np.concatenate([h, np.ones((len(h), 1))], axis=1)
    coef = np.linalg.lstsq(design, np.asarray(y), rcond=None)[0]
    np.testing.assert_allclose(fit_ours, design @ coef, atol=1e-9)
    assert np.all(np.asarray(ours["v"])[width:] == 0.0)


@pytest.mark.parametrize("k", [3, 6])
def test_even_kinks_at_width_2k_fit_the_sawtooth_exactly(k):
    # n = 2^k ramps with kinks at j / 2^k span every piecewise-linear function with those kinks.
    n = 2**k
    with jax.enable_x64(True):
        x = jnp.linspace(0.0, 1.0, 8 * n + 1, dtype=jnp.float64)
        y = sawtooth(x, k)
        mask = ap.width_mask(n, jnp.asarray(n), jnp.float64)
        p = ap.hidden_init(jax.random.PRNGKey(0), n, low=0.0, high=1.0, positive=True)
        p = ap.lstsq_head(ap.even_kinks(p, jnp.asarray(n)), mask, x, y, activation="relu")
        rms, _ = ap.errors(ap.one_hidden(p, x, mask, activation="relu"), y)
    np.testing.assert_allclose(
        -np.asarray(p["b"]) / np.asarray(p["w"]), np.arange(n) / n, atol=1e-12
    )
    assert float(rms) < 1e-9


def test_bucket_sweep_pads_groups_and_keeps_the_best_candidate():
    calls = []

    def make_one(max_width):
        calls.append(max_width)

        def one(key, width, candidate):
            del key
            # Error = width + 3 - candidate on a grid of zeros: the last candidate is the best.
            return jnp.full(4, 1.0, jnp.float32) * (width + 3 - candidate).astype(jnp.float32)

        return one

    out = ap.bucket_sweep(
        np.array([1, 2, 5, 8, 9]),
        (4, 8, 16),
        3,
        make_one,
        jax.random.PRNGKey(0),
        jnp.zeros(4, jnp.float32),
    )
    assert calls == [4, 8, 16]  # one compiled call per padding size in use
    np.testing.assert_allclose(out["rms"], [2.0, 3.0, 6.0, 9.0, 10.0])
    np.testing.assert_allclose(out["rms_all"][:, 0], [4.0, 5.0, 8.0, 11.0, 12.0])
    np.testing.assert_allclose(out["pred"][:, 0], out["rms"])


def test_errors():
    rms, mx = ap.errors(jnp.asarray([[0.0, 1.0, -3.0, 0.0]]), jnp.zeros((1, 4)))
    np.testing.assert_allclose(rms, [np.sqrt(10.0 / 4)], rtol=1e-6)
    np.testing.assert_allclose(mx, [3.0])


def test_shapes_are_checked_at_the_boundary():
    p = ap.hidden_init(
        jax.random.PRNGKey(0), 4, low=0.0, high=1.0, positive=False, dtype=jnp.float32
    )
    x = jnp.linspace(0.0, 1.0, 5, dtype=jnp.float32)
    with pytest.raises(AssertionError):
        ap.one_hidden(p, x, jnp.ones(3, jnp.float32), activation="tanh")  # mask of 3 units, not 4
    with pytest.raises(AssertionError, match=r"\[m\]"):
        ap.one_hidden(p, x[:, None], jnp.ones(4, jnp.float32), activation="tanh")
    with pytest.raises(AssertionError):
        ap.lstsq_head(p, jnp.ones(4, jnp.float32), x, x[:4], activation="tanh")  # y short
