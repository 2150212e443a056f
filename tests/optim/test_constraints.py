"""max_norm_projection against the closed form of one projected SGD step, in a chain and jitted."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl.optim import max_norm_projection, nesterov, sgd


def _params():
    # Column norms 5, 0.6, 0 and 13; a bias far outside any ball.
    return {
        "Dense_0": {
            "kernel": jnp.array([[3.0, 0.6, 0.0, 5.0], [4.0, 0.0, 0.0, 12.0]]),
            "bias": jnp.array([100.0, -100.0, 0.0, 1.0]),
        }
    }


def _closed_form(w, limit):
    """w scaled column by column by min(1, limit / ||w[:, j]||)."""
    w = np.asarray(w, np.float64)
    norms = np.linalg.norm(w, axis=0)
    return w * np.minimum(1.0, limit / np.where(norms > 0, norms, 1.0))


def test_one_sgd_step_lands_on_the_projection_of_the_sgd_step():
    params = _params()
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    tx = optax.chain(sgd(0.1), max_norm_projection(2.0))
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    stepped = np.asarray(params["Dense_0"]["kernel"]) - 0.05
    np.testing.assert_allclose(new["Dense_0"]["kernel"], _closed_form(stepped, 2.0), rtol=1e-6)
    # Columns 1 and 2 stay inside the ball: plain SGD there. Biases are never projected.
    np.testing.assert_allclose(new["Dense_0"]["kernel"][:, 1:3], stepped[:, 1:3], rtol=1e-6)
    np.testing.assert_allclose(new["Dense_0"]["bias"], params["Dense_0"]["bias"] - 0.05)
    norms = np.linalg.norm(np.asarray(new["Dense_0"]["kernel"]), axis=0)
    assert np.all(norms <= 2.0 * (1 + 1e-6))


def test_constraint_holds_over_many_jitted_momentum_steps():
    params = {"l": {"kernel": jax.random.normal(jax.random.key(0), (6, 3)), "bias": jnp.zeros(3)}}
    tx = optax.chain(nesterov(0.5, beta=0.9), max_norm_projection(1.5))
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        # Gradient of -sum(kernel): pushes every column to grow without bound.
        grads = jax.tree.map(lambda p: -jnp.ones_like(p), params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(20):
        params, state = step(params, state)
    norms = np.linalg.norm(np.asarray(params["l"]["kernel"]), axis=0)
    np.testing.assert_allclose(norms, 1.5, rtol=1e-5)  # pinned to the sphere, not past it
    # The direction a column is pushed toward: all ones / sqrt(6) times the limit.
    np.testing.assert_allclose(params["l"]["kernel"], 1.5 / np.sqrt(6.0), rtol=1e-3)


def test_needs_params_and_a_positive_limit():
    tx = max_norm_projection(1.0)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(_params(), tx.init(_params()))
    with pytest.raises(ValueError, match="must be > 0"):
        max_norm_projection(0.0)
