"""Dynamic and fixed binarization: determinism, {0, 1} values, the Bernoulli mean, and the key
the engine uses at a step."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl.data.binarize import (
    BINARIZE_STREAM,
    dynamic_binarization,
    fixed_binarization,
    step_key,
    with_dynamic_binarization,
)


def test_dynamic_is_deterministic_binary_with_the_right_mean():
    x = jnp.full((200, 500), 0.3, jnp.float32)
    a = dynamic_binarization(x, jax.random.PRNGKey(0))
    assert a.dtype == x.dtype and set(np.unique(np.asarray(a))) == {0.0, 1.0}
    np.testing.assert_array_equal(a, dynamic_binarization(x, jax.random.PRNGKey(0)))
    assert not np.array_equal(a, dynamic_binarization(x, jax.random.PRNGKey(1)))
    se = math.sqrt(0.3 * 0.7 / x.size)
    assert abs(float(a.mean()) - 0.3) < 5 * se
    ends = dynamic_binarization(jnp.array([0.0, 1.0]), jax.random.PRNGKey(2))
    np.testing.assert_array_equal(ends, [0.0, 1.0])


def test_fixed_is_seeded_once():
    x = np.random.default_rng(0).random((100, 784)).astype(np.float32)
    a = fixed_binarization(x, seed=3)
    np.testing.assert_array_equal(a, fixed_binarization(x, seed=3))
    assert not np.array_equal(a, fixed_binarization(x, seed=4))
    assert a.dtype == np.float32 and set(np.unique(a)) == {0.0, 1.0}
    se = math.sqrt(np.sum(x * (1 - x))) / x.size
    assert abs(a.mean() - x.mean()) < 5 * se


def test_wrapped_loss_sees_the_batch_binarized_with_the_engine_step_key():
    from dl.train.state import TrainState

    seed, step = 5, 17
    state = TrainState.create(
        apply_fn=None,
        params={},
        tx=optax.identity(),
        rng=jax.random.split(jax.random.PRNGKey(seed), 3)[2],
        extra={},
    )
    seen = {}

    def loss(params, extra, batch, rng):
        seen["x"] = batch["x"]
        return 0.0, ({}, extra)

    x = jnp.full((4, 10), 0.5, jnp.float32)
    rng = jax.random.fold_in(state.rng, step)  # what dl.train.step.train_step passes
    with_dynamic_binarization(loss)({}, {}, {"x": x, "mask": jnp.ones(4)}, rng)
    np.testing.assert_array_equal(seen["x"], dynamic_binarization(x, step_key(seed, step)))
    assert BINARIZE_STREAM != 0
