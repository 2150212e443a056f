"""dl.train.translation's stack helpers: a vmapped optimizer equals one optimizer per model
(clipping included: each model's gradient norm is its own), and host-side stack slicing."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl import optim
from dl.train.translation import first_models, per_model, slice_stack, stack


def test_per_model_equals_separate_optimizers():
    tx = optax.chain(optim.clip_by_global_norm(1.0), optim.adam(0.1))
    rng = np.random.default_rng(0)
    params = [{"w": jnp.asarray(rng.normal(size=(3,)), jnp.float32)} for _ in range(2)]
    grads = [{"w": jnp.asarray(s * rng.normal(size=(3,)), jnp.float32)} for s in (0.1, 10.0)]
    stacked_tx = per_model(tx)
    state = stacked_tx.init(stack(params))
    for _ in range(2):
        updates, state = stacked_tx.update(stack(grads), state, stack(params))
    for i in range(2):
        s = tx.init(params[i])
        for _ in range(2):
            u, s = tx.update(grads[i], s, params[i])
        np.testing.assert_allclose(updates["w"][i], u["w"], rtol=1e-6)


def test_slices_of_a_stack():
    params = {"a": jnp.arange(12.0).reshape(4, 3), "b": {"c": jnp.arange(4)}}
    one = slice_stack(params, 2)
    assert one["a"].shape == (1, 3) and np.array_equal(one["a"][0], params["a"][2])
    two = first_models(params, 2)
    assert jax.tree.map(jnp.shape, two) == {"a": (2, 3), "b": {"c": (2,)}}
    assert np.array_equal(two["b"]["c"], [0, 1])
