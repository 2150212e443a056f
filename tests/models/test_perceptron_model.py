"""dl.models.perceptron against a plain-Python Rosenblatt loop, Novikoff's bound, and vmap.

(Named *_model so that its basename differs from tests/experiments/test_perceptron.py: the test
folders are not packages, so pytest needs unique basenames.)
"""

import functools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from dl.data.synthetic import separable
from dl.models import perceptron

MAX_EPOCHS = 50


def reference(x: np.ndarray, y: np.ndarray, max_epochs: int):
    """Rosenblatt's rule written out with Python loops (float64), independent of the jnp code."""
    w = np.zeros(x.shape[1])
    total, per_epoch = 0, []
    for _ in range(max_epochs):
        mistakes = 0
        for xi, yi in zip(x.astype(np.float64), y):
            if yi * (w @ xi) <= 0:
                w = w + yi * xi
                mistakes += 1
        total += mistakes
        per_epoch.append(mistakes)
        if mistakes == 0:
            break
    return w, total, per_epoch


# Jitted once at module level; tests call them with fixed shapes so nothing recompiles per example.
_train = jax.jit(functools.partial(perceptron.train, max_epochs=MAX_EPOCHS))
_train_epochs = jax.jit(functools.partial(perceptron.train_epochs, num_epochs=6))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_matches_reference_on_small_integers(seed):
    # Small integer inputs keep every sum exact in float32, so the jnp and float64 loops must agree
    # bit for bit, including the ties y <w, x> = 0 that count as mistakes. Some draws are
    # separable, most are not: both paths (convergence and the max_epochs stop) get exercised.
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=(12, 3)).astype(np.float32)
    y = rng.choice(np.array([-1, 1], np.int32), size=12)
    w_ref, total_ref, per_epoch_ref = reference(x, y, MAX_EPOCHS)
    result = _train(jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_array_equal(np.asarray(result.w), w_ref)
    assert int(result.mistakes) == total_ref
    assert int(result.epochs) == len(per_epoch_ref)
    assert bool(result.converged) == (per_epoch_ref[-1] == 0)
    ws, mistakes = _train_epochs(jnp.asarray(x), jnp.asarray(y))
    padded = (per_epoch_ref + [0] * 6)[:6]  # after convergence, passes make no mistakes
    np.testing.assert_array_equal(np.asarray(mistakes), padded)
    for k in range(6):
        np.testing.assert_array_equal(np.asarray(ws[k]), reference(x, y, k + 1)[0])


def test_update_rule_closed_form():
    w = jnp.array([1.0, -2.0])
    x = jnp.array([3.0, 1.0])
    # <w, x> = 1: correct for y = +1 (no change), a mistake for y = -1 (w - x).
    w1, m1 = perceptron.update(w, (x, jnp.int32(1)))
    w2, m2 = perceptron.update(w, (x, jnp.int32(-1)))
    np.testing.assert_array_equal(w1, w)
    np.testing.assert_array_equal(w2, jnp.array([-2.0, -3.0]))
    assert not bool(m1) and bool(m2)
    # A zero score is a mistake: from w = 0 the first example is always added.
    w3, m3 = perceptron.update(jnp.zeros(2), (x, jnp.int32(1)))
    np.testing.assert_array_equal(w3, x)
    assert bool(m3)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.05, 0.1, 0.3]), st.integers(2, 6))
def test_novikoff_bound_and_separation(seed, margin, dim):
    data, w_star = separable(40, dim=dim, margin=margin, seed=seed)
    x64 = data.x.astype(np.float64)
    radius = np.linalg.norm(x64, axis=1).max()
    gamma = (data.y * (x64 @ w_star.astype(np.float64))).min()
    bound = (radius / gamma) ** 2
    result = _train_bound(jnp.asarray(data.x), jnp.asarray(data.y))
    assert bool(result.converged)
    assert int(result.mistakes) <= bound
    # Converged means the final pass was mistake-free, i.e. w strictly separates the data.
    assert np.all(data.y * (data.x @ np.asarray(result.w)) > 0)


# (R / gamma)^2 <= (1 / 0.05)^2 = 400 mistakes, hence at most 401 passes.
_train_bound = jax.jit(functools.partial(perceptron.train, max_epochs=402))


def test_vmap_over_instances_equals_one_at_a_time():
    instances = [separable(30, dim=3, margin=m, seed=s) for m in (0.1, 0.2) for s in range(4)]
    x = jnp.stack([d.x for d, _ in instances])
    y = jnp.stack([d.y for d, _ in instances])
    batched = jax.jit(jax.vmap(functools.partial(perceptron.train, max_epochs=402)))(x, y)
    for i in range(len(instances)):
        single = _train_bound(x[i], y[i])
        np.testing.assert_array_equal(batched.w[i], single.w)
        assert int(batched.mistakes[i]) == int(single.mistakes)
        assert int(batched.epochs[i]) == int(single.epochs)
    assert bool(jnp.all(batched.converged))


def test_xor_never_converges_and_stops_at_max_epochs():
    # XOR with a bias feature: no w separates it (Minsky & Papert 1969), so every pass errs.
    x = perceptron.with_bias_feature(jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]))
    y = jnp.array([-1, 1, 1, -1], jnp.int32)
    result = jax.jit(functools.partial(perceptron.train, max_epochs=25))(x, y)
    assert not bool(result.converged)
    assert int(result.epochs) == 25
    assert int(result.mistakes) >= 25


def test_with_bias_feature():
    x = jnp.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(
        perceptron.with_bias_feature(x), np.array([[0, 1, 1], [2, 3, 1], [4, 5, 1]], np.float32)
    )
    w = jnp.array([1.0, 2.0, -3.0])
    np.testing.assert_allclose(
        perceptron.scores(w, perceptron.with_bias_feature(x)),
        np.asarray(x) @ np.array([1.0, 2.0]) - 3.0,
    )


def test_shapes_are_checked_at_the_boundary():
    x, y = jnp.ones((4, 3)), jnp.ones(4)
    with pytest.raises(AssertionError):
        perceptron.train(x, y[:3], max_epochs=2)  # one label short
    with pytest.raises(AssertionError):
        perceptron.scores(jnp.ones(2), x)  # w of the wrong width
    with pytest.raises(AssertionError, match=r"\[n, d\]"):
        perceptron.epoch(jnp.ones(3), x[0], y[:1])  # one example, not a batch
