"""Activations against independent references: closed forms in float64 NumPy/SciPy, jax.nn, and
PyTorch (values and autograd gradients), plus property tests at extreme inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dl.ops import activations as act

torch = pytest.importorskip("torch")
F = torch.nn.functional

# Extremes, values near the kinks at 0, and ordinary values, as exact float32 numbers.
GRID = np.array(
    [-1e4, -100.0, -20.0, -3.0, -1.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.0, 3.0, 20.0, 100.0, 1e4],
    dtype=np.float32,
)
RNG_POINTS = np.random.default_rng(0).normal(scale=3.0, size=64).astype(np.float32)
POINTS = np.concatenate([GRID, RNG_POINTS])

# case -> (registry name, kwargs for ours, float64 NumPy/SciPy closed form, torch function)
CASES = {
    "sigmoid": ("sigmoid", {}, scipy.special.expit, torch.sigmoid),
    "tanh": ("tanh", {}, np.tanh, torch.tanh),
    "relu": ("relu", {}, lambda x: np.where(x > 0, x, 0.0), F.relu),
    "leaky_relu": ("leaky_relu", {}, lambda x: np.where(x >= 0, x, 0.01 * x), F.leaky_relu),
    "leaky_relu_slope_0.2": (
        "leaky_relu",
        {"negative_slope": 0.2},
        lambda x: np.where(x >= 0, x, 0.2 * x),
        lambda t: F.leaky_relu(t, 0.2),
    ),
    "elu": ("elu", {}, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))), F.elu),
    "elu_alpha_0.5": (
        "elu",
        {"alpha": 0.5},
        lambda x: np.where(x > 0, x, 0.5 * np.expm1(np.minimum(x, 0))),
        lambda t: F.elu(t, alpha=0.5),
    ),
    # torch's softplus switches to x above threshold=20, an error of log1p(exp(-20)) = 2e-9.
    "softplus": ("softplus", {}, lambda x: np.logaddexp(0.0, x), F.softplus),
    "softsign": ("softsign", {}, lambda x: x / (1 + np.abs(x)), F.softsign),
    "identity": ("identity", {}, lambda x: x, lambda t: t),
    "scaled_tanh": (
        "scaled_tanh",
        {},
        lambda x: 1.7159 * np.tanh(2.0 * x / 3.0),
        lambda t: 1.7159 * torch.tanh(2.0 * t / 3.0),
    ),
}


_VALUE_AND_GRAD = {
    name: jax.jit(jax.vmap(jax.value_and_grad(fn))) for name, fn in act.ACTIVATIONS.items()
}


def _ours(case):
    name, kwargs = CASES[case][:2]
    fn = act.get_activation(name)
    return lambda x: fn(x, **kwargs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_elementwise_values_match_numpy_and_torch(case):
    ref_np, ref_torch = CASES[case][2:]
    ours = np.asarray(jax.jit(_ours(case))(jnp.asarray(POINTS)))
    assert ours.dtype == np.float32
    x64 = POINTS.astype(np.float64)
    np.testing.assert_allclose(ours, ref_np(x64), rtol=2e-7, atol=1e-7)
    np.testing.assert_allclose(ours, ref_torch(torch.from_numpy(x64)).numpy(), rtol=2e-7, atol=1e-7)


@pytest.mark.parametrize("case", sorted(CASES))
def test_elementwise_gradients_match_torch_autograd(case):
    ref_torch = CASES[case][3]
    ours = np.asarray(jax.jit(jax.vmap(jax.grad(_ours(case))))(jnp.asarray(POINTS)))
    t = torch.from_numpy(POINTS.astype(np.float64)).requires_grad_(True)
    ref_torch(t).sum().backward()
    # Conventions at the kink x = 0 agree with torch's: relu' = 0, leaky_relu' = slope for torch
    # but 1 here (the jax.nn convention, checked below), elu' = alpha.
    keep = POINTS != 0 if case.startswith("leaky_relu") else slice(None)
    # tanh' = 1 - tanh^2 cancels in float32 where tanh is near 1: absolute error about eps32.
    atol = 3e-7 if case.endswith("tanh") else 1e-7
    np.testing.assert_allclose(ours[keep], t.grad.numpy()[keep], rtol=1e-6, atol=atol)


@pytest.mark.parametrize("name", sorted(act.ACTIVATIONS))
def test_elementwise_agree_with_jax_nn_in_value_and_gradient(name):
    reference = {
        "sigmoid": jax.nn.sigmoid,
        "tanh": jnp.tanh,
        "relu": jax.nn.relu,
        "leaky_relu": jax.nn.leaky_relu,
        "elu": jax.nn.elu,
        "softplus": jax.nn.softplus,
        "softsign": jax.nn.soft_sign,
        "identity": lambda x: x,
        "scaled_tanh": lambda x: 1.7159 * jax.nn.tanh(x * (2.0 / 3.0)),
    }[name]
    x = jnp.asarray(POINTS)
    value, grad = _VALUE_AND_GRAD[name](x)
    value_ref, grad_ref = jax.jit(jax.vmap(jax.value_and_grad(reference)))(x)
    np.testing.assert_allclose(value, value_ref, rtol=2e-7, atol=1e-7)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-6, atol=1e-7)


_ANY_FINITE = hnp.from_dtype(np.dtype(np.float32), allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, (16,), elements=_ANY_FINITE))
def test_elementwise_finite_with_finite_gradients_anywhere(x):
    for name, value_and_grad in _VALUE_AND_GRAD.items():
        value, grad = value_and_grad(jnp.asarray(x))
        assert np.all(np.isfinite(value)), name
        assert np.all(np.isfinite(grad)), name
    # The saturating ones stay in their ranges even where exp overflows.
    s = np.asarray(_VALUE_AND_GRAD["sigmoid"](jnp.asarray(x))[0])
    assert np.all((s >= 0) & (s <= 1))
    np.testing.assert_allclose(s, scipy.special.expit(x.astype(np.float64)), rtol=1e-6, atol=1e-38)


def test_registry_lists_the_elementwise_activations_and_rejects_unknown_names():
    expected = {"sigmoid", "tanh", "scaled_tanh", "relu", "leaky_relu", "elu", "softplus"}
    expected |= {"softsign", "identity"}
    assert set(act.ACTIVATIONS) == expected
    for name in expected:
        assert act.get_activation(name) is getattr(act, name)
    with pytest.raises(ValueError) as excinfo:
        act.get_activation("swish")
    for name in expected:
        assert name in str(excinfo.value)


# ----------------------------------------------------------------------------- softmax family


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_softmax_and_log_softmax_match_scipy_and_torch_on_any_axis(axis):
    x = np.random.default_rng(1).normal(scale=5.0, size=(3, 4, 5)).astype(np.float32)
    x64 = x.astype(np.float64)
    sm = np.asarray(act.softmax(jnp.asarray(x), axis=axis))
    lsm = np.asarray(act.log_softmax(jnp.asarray(x), axis=axis))
    np.testing.assert_allclose(sm, scipy.special.softmax(x64, axis=axis), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(lsm, scipy.special.log_softmax(x64, axis=axis), rtol=1e-6, atol=1e-6)
    t = torch.from_numpy(x64)
    np.testing.assert_allclose(lsm, F.log_softmax(t, dim=axis).numpy(), rtol=1e-6, atol=1e-6)


def test_softmax_gradients_match_jax_nn():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 6)).astype(np.float32))
    w = jnp.asarray(np.random.default_rng(3).normal(size=(4, 6)).astype(np.float32))
    for ours, ref in [(act.softmax, jax.nn.softmax), (act.log_softmax, jax.nn.log_softmax)]:
        g = jax.jit(jax.grad(lambda x: jnp.sum(w * ours(x))))(x)  # noqa: B023 (called at once)
        g_ref = jax.jit(jax.grad(lambda x: jnp.sum(w * ref(x))))(x)  # noqa: B023 (called at once)
        np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)


def test_softmax_ignores_minus_inf_entries_with_finite_gradient():
    x = jnp.array([[0.0, -jnp.inf, 1.0], [-jnp.inf, 2.0, -jnp.inf]])
    ref = scipy.special.softmax(np.asarray(x, np.float64), axis=-1)
    np.testing.assert_allclose(jax.jit(act.softmax)(x), ref, rtol=1e-6, atol=1e-7)
    g = jax.jit(jax.grad(lambda x: act.softmax(x)[0, 0]))(x)
    assert np.all(np.isfinite(g))


_LOGITS = hnp.arrays(
    np.float32,
    (3, 7),
    elements=st.one_of(
        st.sampled_from([0.0, 1.0, -1.0, 1e4, -1e4]),  # ties and huge values
        st.floats(-1e4, 1e4, width=32),
    ),
)
_SOFTMAX_BOTH = jax.jit(lambda x: (act.softmax(x), act.log_softmax(x)))


@settings(max_examples=50, deadline=None)
@given(_LOGITS)
def test_softmax_family_stable_at_huge_logits(x):
    sm, lsm = (np.asarray(a) for a in _SOFTMAX_BOTH(jnp.asarray(x)))
    x64 = x.astype(np.float64)
    assert np.all(np.isfinite(sm)) and np.all(np.isfinite(lsm))
    np.testing.assert_allclose(sm.sum(axis=-1), 1.0, rtol=0, atol=1e-5)
    np.testing.assert_allclose(sm, scipy.special.softmax(x64, axis=-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lsm, scipy.special.log_softmax(x64, axis=-1), rtol=1e-6, atol=1e-5)
    # log_softmax = log(softmax) wherever softmax has not underflowed.
    finite = sm > 1e-30
    np.testing.assert_allclose(lsm[finite], np.log(sm[finite]), rtol=1e-5, atol=1e-5)
