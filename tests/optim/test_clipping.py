"""Clipping against optax and numpy, with huge, tiny and all-zero gradients."""

import chex
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dl.optim import clip_by_global_norm, clip_elementwise, global_norm, sgd

# XLA on CPU flushes subnormals to zero while numpy keeps them, so they are left out.
_ELEMENTS = st.one_of(
    st.sampled_from([0.0, 1e-30, -1e4, 1e4]), st.floats(-1e4, 1e4, width=32, allow_subnormal=False)
)


def _tree(a, b):
    """A nested pytree from two arrays of fixed shapes (fixed shapes: one compile per function)."""
    return {"layer": {"w": jnp.asarray(a), "b": jnp.asarray(b[:3])}, "s": jnp.asarray(b[3])}


_ARRAYS = (
    hnp.arrays(np.float32, (4, 5), elements=_ELEMENTS),
    hnp.arrays(np.float32, (4,), elements=_ELEMENTS),
)


@jax.jit
def _clip_both(tree, max_norm):
    ours = clip_by_global_norm(max_norm).update(tree, optax.EmptyState())[0]
    with jax.numpy_dtype_promotion("standard"):
        theirs = optax.clip_by_global_norm(max_norm).update(tree, optax.EmptyState())[0]
    return ours, theirs


@settings(max_examples=50, deadline=None)
@given(*_ARRAYS, st.floats(1e-3, 1e5))
def test_clip_by_global_norm_matches_optax_and_formula(a, b, max_norm):
    tree = _tree(a, b)
    ours, theirs = _clip_both(tree, jnp.float32(max_norm))
    norm = np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64))) for x in jax.tree.leaves(tree)))
    scale = (
        min(1.0, np.float32(max_norm) / norm) if norm > 0 else 1.0
    )  # Pascanu et al. 2013, Alg. 1
    for o, t, g in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), jax.tree.leaves(tree)):
        assert np.all(np.isfinite(o))
        np.testing.assert_allclose(o, t, rtol=1e-5, atol=1e-30)
        np.testing.assert_allclose(o, scale * np.asarray(g, np.float64), rtol=1e-5, atol=1e-30)
    assert float(global_norm(ours)) <= max_norm * (1 + 1e-5)


def test_below_threshold_is_identity_and_zero_stays_zero():
    tree = _tree(np.full((4, 5), 0.1, np.float32), np.zeros(4, np.float32))
    got = clip_by_global_norm(10.0).update(tree, optax.EmptyState())[0]
    chex.assert_trees_all_equal(got, tree)
    zeros = jax.tree.map(jnp.zeros_like, tree)
    got = clip_by_global_norm(1.0).update(zeros, optax.EmptyState())[0]
    chex.assert_trees_all_equal(got, zeros)


@settings(max_examples=50, deadline=None)
@given(*_ARRAYS, st.floats(1e-3, 1e5))
def test_clip_elementwise_matches_optax_and_numpy(a, b, max_delta):
    tree = _tree(a, b)
    max_delta = float(np.float32(max_delta))
    ours = clip_elementwise(max_delta).update(tree, optax.EmptyState())[0]
    theirs = optax.clip(max_delta).update(tree, optax.EmptyState())[0]
    for o, t, g in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), jax.tree.leaves(tree)):
        np.testing.assert_array_equal(o, t)
        np.testing.assert_array_equal(o, np.clip(np.asarray(g), -max_delta, max_delta))


def test_global_norm_of_bfloat16_and_empty_trees():
    tree = {"a": jnp.full((300,), 300.0, jnp.bfloat16), "b": jnp.ones((2, 2), jnp.float32)}
    # bfloat16 squares of 300 summed 300 times would lose most digits; the float32 sum does not.
    np.testing.assert_allclose(float(global_norm(tree)), np.sqrt(300 * 300.0**2 + 4), rtol=1e-5)
    assert float(global_norm({})) == 0.0
    clipped = clip_by_global_norm(1.0).update(tree, optax.EmptyState())[0]
    assert clipped["a"].dtype == jnp.bfloat16


@pytest.mark.parametrize("clip", [clip_by_global_norm(1.0), clip_elementwise(0.5)])
def test_chains_before_an_optimizer_and_jits_once(clip):
    chex.clear_trace_counter()  # the count is per source location, shared by the parameters
    tx = optax.chain(clip, sgd(0.1))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = {"w": jnp.zeros((3,), jnp.float32)}
    state = tx.init(params)
    for scale in (1.0, 10.0, 100.0):
        grads = {"w": jnp.asarray([3.0, -4.0, 0.0], jnp.float32) * scale}
        new_params, state = step(params, state, grads)
        expected = -0.1 * np.asarray(clip.update(grads, optax.EmptyState())[0]["w"])
        np.testing.assert_allclose(np.asarray(new_params["w"] - params["w"]), expected, rtol=1e-6)
        params = new_params
