"""The MLP against a hand-written forward pass, exact parameter counts, and gradcheck."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.nn.mlp import MLP
from dl.ops.gradcheck import assert_gradcheck


def _init(model, x, seed=0):
    return model.init({"params": jax.random.PRNGKey(seed), "dropout": jax.random.PRNGKey(1)}, x)


def test_forward_matches_numpy():
    x = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    model = MLP(hidden=(6, 4), out=3, activation="tanh")
    p = _init(model, x)["params"]
    h = np.tanh(x @ np.asarray(p["dense_0"]["kernel"]) + np.asarray(p["dense_0"]["bias"]))
    h = np.tanh(h @ np.asarray(p["dense_1"]["kernel"]) + np.asarray(p["dense_1"]["bias"]))
    want = h @ np.asarray(p["head"]["kernel"]) + np.asarray(p["head"]["bias"])
    np.testing.assert_allclose(model.apply({"params": p}, x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "norm, residual, count",
    [
        # 784-1000-500-10: (784*1000+1000) + (1000*500+500) + (500*10+10)
        (None, False, 785_000 + 500_500 + 5_010),
        # LayerNorm adds scale and bias per hidden unit.
        ("layer", False, 785_000 + 500_500 + 5_010 + 2 * (1000 + 500)),
    ],
)
def test_exact_parameter_counts(norm, residual, count):
    model = MLP(hidden=(1000, 500), out=10, norm=norm, residual=residual)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 784)))
    assert sum(x.size for x in jax.tree.leaves(shapes["params"])) == count


def test_batch_norm_keeps_running_stats_outside_params():
    model = MLP(hidden=(8,), out=2, norm="batch")
    v = _init(model, jnp.ones((4, 3)))
    assert set(v) == {"params", "batch_stats"}
    out, upd = model.apply(v, jnp.arange(12.0).reshape(4, 3), train=True, mutable=["batch_stats"])
    assert out.shape == (4, 2)
    assert not np.allclose(upd["batch_stats"]["norm_0"]["mean"], 0.0)


def test_residual_pre_norm_block_is_identity_plus_branch():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
    model = MLP(hidden=(5, 5), out=2, residual=True, norm="layer", activation="relu")
    p = _init(model, x)["params"]
    # Zeroing a block's Dense kernel and bias turns its branch into act(0) = 0: the block is the
    # identity, so the output equals running the head on the input directly.
    for i in (0, 1):
        p["dense_" + str(i)] = jax.tree.map(jnp.zeros_like, p["dense_" + str(i)])
    want = x @ p["head"]["kernel"] + p["head"]["bias"]
    np.testing.assert_allclose(model.apply({"params": p}, x), want, rtol=1e-6, atol=1e-6)


def test_dropout_is_inverted_and_off_at_eval():
    model = MLP(hidden=(4,), out=4, dropout=0.5)
    x = jnp.ones((2, 3))
    v = _init(model, x)
    np.testing.assert_array_equal(model.apply(v, x), model.apply(v, x))
    a = model.apply(v, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    b = model.apply(v, x, train=True, rngs={"dropout": jax.random.PRNGKey(3)})
    assert not np.allclose(a, b)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"activation": "tanh"},
        {"activation": "softplus", "norm": "layer"},
        {"activation": "elu", "residual": True, "norm": "layer"},
        {"activation": "sigmoid", "norm": "batch"},
    ],
)
def test_gradcheck_every_layer_kind(kwargs):
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 4))
    y = jnp.array([0, 1, 2, 0, 1, 2])
    model = MLP(hidden=(4, 4), out=3, **kwargs)
    v = _init(model, x)
    extra = {k: val for k, val in v.items() if k != "params"}

    def loss(params, x, y):
        logits = model.apply({"params": params, **extra}, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    # Flax's norms promote float64 with float32 internally, which strict promotion rejects; the
    # check itself must run in float64, so allow standard promotion for it alone.
    with jax.numpy_dtype_promotion("standard"):
        assert_gradcheck(loss, v["params"], x, y, tol=1e-6)


def test_bad_norm_is_rejected():
    with pytest.raises(ValueError, match="norm must be"):
        _init(MLP(hidden=(2,), out=2, norm="group"), jnp.ones((1, 2)))


def test_shape_checks_reject_a_wrong_rank_and_pass_under_jit_and_vmap():
    model = MLP(hidden=(4,), out=3)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 2)), jnp.float32)
    p = _init(model, x)["params"]
    # An image-shaped batch would run through Dense on its last axis; the boundary refuses it.
    with pytest.raises(AssertionError, match=r"\[batch, in\]"):
        model.apply({"params": p}, x[:, None, :])
    # Stacked parameters (a sweep) and stacked batches: inside vmap each call sees [batch, in].
    stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), p)
    out = jax.jit(jax.vmap(lambda q, xb: model.apply({"params": q}, xb)))(
        stacked, jnp.stack([x, x])
    )
    assert out.shape == (2, 5, 3)
    np.testing.assert_allclose(out[0], model.apply({"params": p}, x), rtol=1e-6)
