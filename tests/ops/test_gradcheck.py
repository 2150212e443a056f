"""gradcheck: silent on correct gradients, loud (with the exact closed-form error) on wrong
ones, per leaf, in float64 whatever the input dtype, and without leaking 64-bit mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.ops.gradcheck import assert_gradcheck, gradcheck


@jax.custom_vjp
def square_with_doubled_gradient(x):
    return x * x


def _fwd(x):
    return x * x, x


def _bwd(x, g):
    return (2.0 * (2.0 * x) * g,)  # deliberately twice d(x^2)/dx


square_with_doubled_gradient.defvjp(_fwd, _bwd)


@jax.custom_jvp
def sin_with_flipped_derivative(x):
    return jnp.sin(x)


@sin_with_flipped_derivative.defjvp
def _sin_jvp(primals, tangents):
    (x,), (v,) = primals, tangents
    return jnp.sin(x), -jnp.cos(x) * v  # deliberately the wrong sign


def mlp_loss(params, x, y):
    """Two-layer tanh MLP with squared error, in plain jnp."""
    h = jnp.tanh(x @ params["hidden"]["w"] + params["hidden"]["b"])
    out = h @ params["out"]["w"] + params["out"]["b"]
    return jnp.mean(jnp.square(out - y))


def _mlp_problem():
    rng = np.random.default_rng(0)
    params = {
        "hidden": {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=(4,))},
        "out": {"w": rng.normal(size=(4, 2)), "b": rng.normal(size=(2,))},
    }
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    x = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(5, 2)), jnp.float32)
    return params, x, y


def test_correct_mlp_gradient_passes_with_float32_inputs():
    # The inputs are float32; errors this small are only reachable because the check runs in
    # float64 (float32 central differences are good to about 1e-3).
    params, x, y = _mlp_problem()
    errors = gradcheck(mlp_loss, params, x, y)
    assert jax.tree.structure(errors) == jax.tree.structure(params)
    for err in jax.tree.leaves(errors):
        assert isinstance(err, float)
        assert 0.0 <= err < 1e-8


def test_doubled_gradient_gives_exactly_one_third():
    # ||2g - g|| / (||2g|| + ||g||) = 1/3 for any nonzero g.
    w = jnp.array([0.3, -1.2, 2.0], jnp.float32)
    errors = gradcheck(lambda w: jnp.sum(square_with_doubled_gradient(w)), w)
    assert errors == pytest.approx(1 / 3, abs=1e-8)
    with pytest.raises(AssertionError, match="<root>"):
        assert_gradcheck(lambda w: jnp.sum(square_with_doubled_gradient(w)), w)


def test_wrong_leaf_is_isolated_and_named():
    params = {"good": jnp.array([0.5, -0.7]), "bad": jnp.array([[0.1, 0.9], [-0.4, 1.3]])}

    def f(params, scale):
        return scale * jnp.sum(jnp.sin(params["good"])) + jnp.sum(
            sin_with_flipped_derivative(params["bad"])
        )

    errors = gradcheck(f, params, 3.0)
    assert errors["good"] < 1e-8
    # A sign flip makes g_ad = -g_fd: relative error exactly 1.
    assert errors["bad"] == pytest.approx(1.0, abs=1e-8)
    with pytest.raises(AssertionError) as excinfo:
        assert_gradcheck(f, params, 3.0)
    message = str(excinfo.value)
    assert "['bad']" in message and "['good']" not in message


def test_keyword_arguments_and_integer_arguments_reach_f():
    w = jnp.array([1.0, 2.0, 3.0])
    labels = jnp.array([2, 0])

    def f(w, labels, *, power):
        assert labels.dtype == jnp.int32  # integer leaves are not cast
        return jnp.sum(w[labels] ** power)

    errors = gradcheck(f, w, labels, power=3)
    assert errors < 1e-8


def test_leaf_without_gradient_reports_zero_not_nan():
    params = {"used": jnp.array([1.0, 2.0]), "unused": jnp.array([3.0])}
    errors = gradcheck(lambda p: jnp.sum(p["used"] ** 2), params)
    assert errors["unused"] == 0.0 and errors["used"] < 1e-8


def test_nan_gradient_fails_the_assertion():
    # sqrt at 0: the autodiff gradient is inf, the differences are not; never silently pass.
    w = jnp.array([0.0, 1.0])
    with pytest.raises(AssertionError):
        assert_gradcheck(lambda w: jnp.sum(jnp.sqrt(w)), w)


def test_sixty_four_bit_mode_does_not_leak():
    gradcheck(lambda w: jnp.sum(w**2), jnp.ones(3))
    assert not jax.config.jax_enable_x64
    assert jnp.zeros(2).dtype == jnp.float32


def test_bad_inputs_are_rejected():
    with pytest.raises(TypeError, match="floating"):
        gradcheck(lambda w: jnp.sum(w), jnp.arange(3))
    with pytest.raises(ValueError, match="scalar"):
        gradcheck(lambda w: w**2, jnp.ones(3))
