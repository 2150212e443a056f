"""Regularizers: closed forms on hand-built trees, flax trees, dropout statistics, max-norm vs torch."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from dl.ops import regularizers as reg


def _tree():
    """A hand-built flax-like tree: 2 kernels, an embedding, biases and norm parameters."""
    return {
        "params": {
            "Dense_0": {
                "kernel": jnp.array([[1.0, -2.0], [3.0, 0.5]]),
                "bias": jnp.array([10.0, -7.0]),
            },
            "Conv_0": {"kernel": jnp.full((2, 2, 1, 1), -1.5), "bias": jnp.array([4.0])},
            "Embed_0": {"embedding": jnp.array([[0.0, 2.0], [-1.0, 1.0]])},
            "BatchNorm_0": {"scale": jnp.array([3.0, 3.0]), "bias": jnp.array([5.0, 5.0])},
            "LayerNorm_0": {"scale": jnp.array([2.0]), "bias": jnp.array([1.0])},
        }
    }


def test_penalties_closed_form_exclude_biases_and_norms():
    weights = [[1, -2, 3, 0.5], [-1.5] * 4, [0, 2, -1, 1]]
    flat = np.concatenate([np.asarray(w, np.float64) for w in weights])
    np.testing.assert_allclose(reg.l2_penalty(_tree()), 0.5 * np.sum(flat**2), rtol=1e-6)
    np.testing.assert_allclose(reg.l1_penalty(_tree()), np.sum(np.abs(flat)), rtol=1e-6)
    # A tree of only biases and norm parameters carries no penalty.
    no_weights = {"b": {"bias": jnp.ones(3)}, "n": {"scale": jnp.ones(3)}}
    assert float(reg.l2_penalty(no_weights)) == 0.0 == float(reg.l1_penalty(no_weights))


def test_l2_gradient_equals_weights_and_zero_elsewhere():
    tree = _tree()
    grads = jax.grad(reg.l2_penalty)(tree)

    def expected(path, leaf):
        return leaf if reg.is_weight(path, leaf) else jnp.zeros_like(leaf)

    jax.tree_util.tree_map(
        np.testing.assert_array_equal, grads, jax.tree_util.tree_map_with_path(expected, tree)
    )
    g1 = jax.grad(reg.l1_penalty)(tree)
    np.testing.assert_array_equal(
        g1["params"]["Dense_0"]["kernel"], np.sign(tree["params"]["Dense_0"]["kernel"])
    )
    np.testing.assert_array_equal(g1["params"]["Dense_0"]["bias"], 0.0)


def test_is_weight_on_real_flax_tree():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, tokens):
            x = nn.Embed(7, 4)(tokens)
            x = nn.LayerNorm()(nn.Dense(5)(x))
            x = nn.Conv(3, (2,))(x)
            return nn.BatchNorm(use_running_average=False)(x)

    variables = Net().init(jax.random.key(0), jnp.zeros((2, 6), jnp.int32))
    chosen = sorted(
        "/".join(str(reg._key_name(k)) for k in path)
        for path, leaf in jax.tree_util.tree_flatten_with_path(variables["params"])[0]
        if reg.is_weight(path, leaf)
    )
    assert chosen == ["Conv_0/kernel", "Dense_0/kernel", "Embed_0/embedding"]
    # Plain string paths work too.
    assert reg.is_weight(("params", "Dense_0", "kernel")) and not reg.is_weight(("Dense_0", "bias"))
    assert not reg.is_weight(())


def test_penalties_mixed_dtypes_under_strict_promotion():
    tree = {"a": {"kernel": jnp.ones((2, 2), jnp.bfloat16)}, "b": {"kernel": jnp.ones(3)}}
    assert reg.l2_penalty(tree).dtype == jnp.float32
    np.testing.assert_allclose(reg.l2_penalty(tree), 3.5)


# --------------------------------------------------------------------------------------------
# Dropout.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_dropout_preserves_expectation_and_drops_rate(rate):
    x = jnp.linspace(-2.0, 3.0, 500)
    draws = 2000
    keys = jax.random.split(jax.random.key(1), draws)
    ys = np.asarray(jax.jit(jax.vmap(lambda k: reg.dropout(x, rate=rate, rng=k)))(keys), np.float64)
    xs = np.asarray(x, np.float64)
    kept = ys != 0
    # Kept units are exactly x / (1 - rate).
    np.testing.assert_allclose(
        ys[kept], np.broadcast_to(xs / (1 - rate), ys.shape)[kept], rtol=1e-6
    )
    # Dropped fraction ~ rate: binomial standard error over 1e6 units.
    n = ys.size
    assert abs((1 - kept.mean()) - rate) < 5 * math.sqrt(rate * (1 - rate) / n)
    # E[y] = x: per unit, the mean of `draws` samples has sd |x| sqrt(rate / (1 - rate) / draws).
    se = np.abs(xs) * math.sqrt(rate / (1 - rate) / draws)
    z = (ys.mean(0) - xs) / np.maximum(se, 1e-12)
    assert np.all(np.abs(z) < 5.5)  # 500 units: a few sigma with room for the max over units
    assert abs(z.mean()) < 5 / math.sqrt(len(z))


def test_dropout_identity_and_edge_rates():
    x = jnp.arange(1.0, 7.0).reshape(2, 3)
    key = jax.random.key(2)
    assert reg.dropout(x, rate=0.5, rng=key, deterministic=True) is x
    assert reg.dropout(x, rate=0.0, rng=None) is x
    np.testing.assert_array_equal(reg.dropout(x, rate=1.0, rng=key), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        reg.dropout(x, rate=1.5, rng=key)
    with pytest.raises(ValueError, match="rng"):
        reg.dropout(x, rate=0.5, rng=None)


def test_dropout_gradient_is_the_scaled_mask_and_deterministic_per_key():
    x = jnp.ones(100)
    key = jax.random.key(3)
    y = reg.dropout(x, rate=0.3, rng=key)
    np.testing.assert_array_equal(y, reg.dropout(x, rate=0.3, rng=key))
    g = jax.grad(lambda v: jnp.sum(reg.dropout(v, rate=0.3, rng=key)))(x)
    np.testing.assert_allclose(g, np.where(np.asarray(y) != 0, 1 / 0.7, 0.0), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Max-norm.
# --------------------------------------------------------------------------------------------


def test_max_norm_clips_long_columns_only():
    # Column norms 5, 0.6, 0 and 13 against max_norm 2.
    kernel = jnp.array([[3.0, 0.6, 0.0, 5.0], [4.0, 0.0, 0.0, 12.0]])
    tree = {
        "Dense_0": {"kernel": kernel, "bias": jnp.array([100.0, 0, 0, 0])},
        "Embed_0": {"embedding": 10 * jnp.ones((3, 2))},
    }
    out = reg.max_norm(tree, max_norm=2.0)
    k = np.asarray(out["Dense_0"]["kernel"], np.float64)
    np.testing.assert_array_equal(k[:, 1:3], kernel[:, 1:3])  # short and zero columns untouched
    np.testing.assert_allclose(np.linalg.norm(k, axis=0)[[0, 3]], 2.0, rtol=1e-6)
    np.testing.assert_allclose(k[:, 0], [1.2, 1.6], rtol=1e-6)  # direction kept
    np.testing.assert_array_equal(out["Dense_0"]["bias"], tree["Dense_0"]["bias"])
    np.testing.assert_array_equal(out["Embed_0"]["embedding"], tree["Embed_0"]["embedding"])
    assert np.all(np.isfinite(k))


@pytest.mark.parametrize("shape", [(8, 6), (3, 3, 4, 5)], ids=["dense", "conv"])
def test_max_norm_matches_torch_renorm_and_is_idempotent(shape):
    kernel = jax.random.normal(jax.random.key(4), shape)
    out = reg.max_norm({"kernel": kernel}, max_norm=2.5)["kernel"]
    # torch.renorm along dim=out caps the norm of each kernel[..., j] slice.
    ref = torch.renorm(torch.from_numpy(np.asarray(kernel, np.float64)), 2, len(shape) - 1, 2.5)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        reg.max_norm({"kernel": out}, max_norm=2.5)["kernel"], out, rtol=1e-6
    )
    norms = np.linalg.norm(np.asarray(out).reshape(-1, shape[-1]), axis=0)
    assert np.all(norms <= 2.5 * (1 + 1e-6))


def test_max_norm_is_jittable():
    tree = {"layer": {"kernel": 3 * jnp.ones((4, 2)), "bias": jnp.zeros(2)}}
    out = jax.jit(lambda p: reg.max_norm(p, max_norm=1.0))(tree)
    np.testing.assert_allclose(np.linalg.norm(out["layer"]["kernel"], axis=0), 1.0, rtol=1e-6)
