"""Smoke test of experiments/universal_approximation.py, and its pieces against closed forms,
flax's MLP and numpy's least squares."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dl.nn.mlp import MLP
from dl.train.state import param_count
from experiments import universal_approximation as ua
from experiments._runner import run_experiment


def test_smoke(tmp_path):
    results = run_experiment(
        "universal_approximation",
        {"universal_approximation": ua},
        scale="smoke",
        workdir=str(tmp_path),
    )
    for name in ("config.json", "results.json", "width_error.png", "sawtooth.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "universal_approximation"
    m = results["metrics"]
    config = ua.get_config("smoke")
    assert [row["width"] for row in m["width_table"]] == list(config.widths)
    for row in m["width_table"] + m["sawtooth_table"]:
        assert math.isfinite(row["rms"]) and 0.0 <= row["rms"] <= row["max_error"]
    # The exact construction is exact at any scale; training is what smoke cuts short.
    assert m["deep_exact_params"] == 6 * config.k + 1
    assert m["deep_exact_rms"] < 1e-6
    assert m["deep_trained_params"] == param_count(
        MLP(hidden=(config.deep_train_width,) * config.k, out=1).init(
            jax.random.PRNGKey(0), jnp.zeros((1, 1))
        )["params"]
    )
    assert len(results["bars"]) == 4


def _closed_form_sawtooth(x, k):
    # t^k(x) = 1 - |2 frac(2^(k-1) x) - 1|: the tent map doubles the frequency of a triangle wave.
    return 1.0 - np.abs(2.0 * np.mod(2.0 ** (k - 1) * x, 1.0) - 1.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0, width=32), min_size=1, max_size=20), st.integers(1, 8))
def test_sawtooth_is_the_triangle_wave(xs, k):
    x = np.asarray(xs, np.float32)
    ours = np.asarray(ua.sawtooth(jnp.asarray(x), k))
    # Each composition can double a float32 rounding error.
    np.testing.assert_allclose(
        ours, _closed_form_sawtooth(x.astype(np.float64), k), atol=2.0**k * 1e-7
    )


@pytest.mark.parametrize("k", [1, 2, 5, 6, 8])
def test_deep_construction_is_exact_with_6k_plus_1_params(k):
    model = MLP(hidden=(2,) * k, out=1, activation="relu")
    params = ua.deep_sawtooth_params(k)
    init = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.float32))["params"]
    assert jax.tree.structure(params) == jax.tree.structure(init)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, init)
    assert param_count(params) == 6 * k + 1
    # Every kink j / 2^k is a dyadic rational: float32 represents the grid and the net exactly.
    x = np.concatenate(
        [np.arange(2**k + 1) / 2**k, np.random.default_rng(k).uniform(0, 1, 200)]
    ).astype(np.float32)
    out = np.asarray(model.apply({"params": params}, jnp.asarray(x)[:, None]))[:, 0]
    np.testing.assert_allclose(
        out, _closed_form_sawtooth(x.astype(np.float64), k), atol=2.0**k * 1e-7
    )


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
    mask = ua.width_mask(max_width, jnp.asarray(width))
    np.testing.assert_array_equal(np.asarray(mask), [1] * width + [0] * (max_width - width))
    ours = ua.one_hidden(padded, x, mask, activation=activation)
    np.testing.assert_allclose(
        ours, model.apply({"params": p}, x[:, None])[:, 0], rtol=1e-6, atol=1e-6
    )
    # Padding units get exactly zero gradient, so training never lets them into the net.
    grads = jax.grad(lambda q: jnp.sum(ua.one_hidden(q, x, mask, activation=activation) ** 2))(
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
        lambda k: ua.hidden_init(k, width, low=-2.0, high=2.0, positive=False, dtype=jnp.float32)
    )(keys)
    assert abs(float(jnp.std(p["w"])) - 1.0) < 0.03
    centres = np.asarray(-p["b"] / p["w"]).ravel()
    assert centres.min() >= -2.0 - 1e-4 and centres.max() <= 2.0 + 1e-4
    assert abs(centres.mean()) < 0.05 and abs(centres.var() - 16.0 / 12.0) < 0.05  # U[-2, 2]
    head = jax.vmap(lambda k, q: ua.random_head(k, q, jnp.asarray(width)))(keys, p)
    assert abs(float(jnp.std(head["v"])) * math.sqrt(width) - 1.0) < 0.03
    positive = ua.hidden_init(keys[0], width, low=0.0, high=1.0, positive=True, dtype=jnp.float32)
    assert float(jnp.min(positive["w"])) > 0.0


def test_lstsq_head_matches_numpy():
    max_width, width = 12, 8
    with jax.enable_x64(True):
        x = jnp.linspace(0.0, 1.0, 101, dtype=jnp.float64)
        y = ua.sawtooth(x, 3)
        mask = ua.width_mask(max_width, jnp.asarray(width), jnp.float64)
        p = ua.hidden_init(jax.random.PRNGKey(3), max_width, low=0.0, high=1.0, positive=True)
        ours = ua.lstsq_head(p, mask, x, y, activation="relu")
        fit_ours = np.asarray(ua.one_hidden(ours, x, mask, activation="relu"))
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
        y = ua.sawtooth(x, k)
        mask = ua.width_mask(n, jnp.asarray(n), jnp.float64)
        p = ua.hidden_init(jax.random.PRNGKey(0), n, low=0.0, high=1.0, positive=True)
        p = ua.lstsq_head(ua.even_kinks(p, jnp.asarray(n)), mask, x, y, activation="relu")
        rms, _ = ua.errors(ua.one_hidden(p, x, mask, activation="relu"), y)
    np.testing.assert_allclose(
        -np.asarray(p["b"]) / np.asarray(p["w"]), np.arange(n) / n, atol=1e-12
    )
    assert float(rms) < 1e-9


def test_lm_solves_linear_least_squares_and_rosenbrock():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        a, t = rng.normal(size=(30, 4)), rng.normal(size=30)
        params = {"w": jnp.zeros(4, jnp.float64)}
        fitted, losses = ua.fit_lm(
            params, lambda q, ai, ti: ai @ q["w"] - ti, jnp.asarray(a), jnp.asarray(t), steps=30
        )
        np.testing.assert_allclose(fitted["w"], np.linalg.lstsq(a, t, rcond=None)[0], atol=1e-8)
        assert np.all(np.diff(np.asarray(losses)) <= 0.0)  # only loss-lowering steps are kept
        # Rosenbrock as residuals (10 (y - x^2), 1 - x): the minimum is (1, 1) (Nocedal & Wright).
        rows = jnp.asarray([0, 1])

        def rosen(q, i, _):
            return jnp.where(i == 0, 10.0 * (q["z"][1] - q["z"][0] ** 2), 1.0 - q["z"][0])

        fitted, losses = ua.fit_lm(
            {"z": jnp.asarray([-1.2, 1.0], jnp.float64)},
            rosen,
            rows,
            jnp.zeros(2, jnp.float64),
            steps=100,
        )
    np.testing.assert_allclose(fitted["z"], [1.0, 1.0], atol=1e-8)
    assert np.all(np.diff(np.asarray(losses)) <= 0.0)


def test_lm_step_with_more_params_than_residuals_is_the_damped_gauss_newton_step():
    # m = 3 residuals, p = 5 parameters: fit_lm takes the m x m (dual) route; one step must equal
    # the textbook p x p formula -(J^T J + mu I)^{-1} J^T r, computed here in numpy.
    rng = np.random.default_rng(1)
    a, t, w0 = rng.normal(size=(3, 5)), rng.normal(size=3), rng.normal(size=5)
    with jax.enable_x64(True):
        fitted, _ = ua.fit_lm(
            {"w": jnp.asarray(w0)},
            lambda q, ai, ti: ai @ q["w"] - ti,
            jnp.asarray(a),
            jnp.asarray(t),
            steps=1,
        )
    mu = 1e-3 * np.mean(np.sum(a * a, axis=0))
    step = -np.linalg.solve(a.T @ a + mu * np.eye(5), a.T @ (a @ w0 - t))
    np.testing.assert_allclose(fitted["w"], w0 + step, rtol=1e-10, atol=1e-12)


def test_bucket_sweep_pads_groups_and_keeps_the_best_candidate():
    calls = []

    def make_one(max_width):
        calls.append(max_width)

        def one(key, width, candidate):
            del key
            # Error = width + 3 - candidate on a grid of zeros: the last candidate is the best.
            return jnp.full(4, 1.0, jnp.float32) * (width + 3 - candidate).astype(jnp.float32)

        return one

    out = ua.bucket_sweep(
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


def test_errors_and_monotone_check():
    pred = jnp.asarray([[0.0, 1.0, -3.0, 0.0]])
    rms, mx = ua.errors(pred, jnp.zeros((1, 4)))
    np.testing.assert_allclose(rms, [np.sqrt(10.0 / 4)], rtol=1e-6)
    np.testing.assert_allclose(mx, [3.0])
    assert ua.monotone_ok([1.0, 0.5, 0.6, 0.1], rel_tol=1.25, abs_tol=0.0)
    assert not ua.monotone_ok([1.0, 0.5, 0.7], rel_tol=1.25, abs_tol=0.0)
    assert ua.monotone_ok([1.0, 0.5, 0.7], rel_tol=1.25, abs_tol=0.1)
