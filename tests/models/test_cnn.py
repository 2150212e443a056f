"""dl.models.cnn: exact parameter counts from the closed forms, shapes, vmap, features, no
retrace. (Forward and gradient parity with PyTorch: tests/test_benchmarks_smoke.py, through
benchmarks/cnn_step.py, which copies these weights into torch before timing.)"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.models.cnn import CNNS, LeNet5, MnistCNN, get_cnn
from dl.ops.activations import scaled_tanh
from dl.train.state import param_count


def init(model, x):
    return model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x)


def images(*batch, seed=0):
    return jax.random.uniform(jax.random.PRNGKey(seed), (*batch, 28, 28, 1))


def test_lenet5_param_count_closed_form():
    c1 = 6 * (1 * 5 * 5 + 1)  # 6 maps, one 5x5 window over 1 channel, one bias each
    c3 = 16 * (6 * 5 * 5 + 1)  # full connection table (the paper's sparse one: 1516)
    c5 = 120 * (16 * 5 * 5 + 1)
    f6 = 84 * (120 + 1)
    out = 10 * (84 + 1)
    assert (c1, c3, c5, f6, out) == (156, 2416, 48120, 10164, 850)
    variables = init(LeNet5(), images(2))
    assert set(variables) == {"params"}  # subsampling has no parameters here
    assert param_count(variables["params"]) == c1 + c3 + c5 + f6 + out == 61706
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert shapes["c3"]["kernel"] == (5, 5, 6, 16) and shapes["c5"]["kernel"] == (5, 5, 16, 120)


def test_mnist_cnn_param_count_closed_form():
    conv0 = 32 * (5 * 5 * 1 + 1)
    conv1 = 64 * (5 * 5 * 32 + 1)
    dense = 1024 * (7 * 7 * 64 + 1)  # two 2x2 pools: 28 -> 14 -> 7
    head = 10 * (1024 + 1)
    variables = init(MnistCNN(), images(2))
    assert param_count(variables["params"]) == conv0 + conv1 + dense + head == 3274634
    # With batch norm the biases before each BN go (its shift replaces them), and BN adds a
    # scale and shift per channel; the running mean and variance live in batch_stats.
    bn = init(MnistCNN(batch_norm=True), images(2))
    no_bias = conv0 - 32 + conv1 - 64 + dense - 1024 + head
    assert param_count(bn["params"]) == no_bias + 2 * (32 + 64 + 1024)
    assert param_count(bn["batch_stats"]) == 2 * (32 + 64 + 1024)


@pytest.mark.parametrize("model", [LeNet5(), LeNet5(activation="relu"), MnistCNN()])
def test_shapes_and_vmap_over_an_extra_batch_axis(model):
    x = images(3, 4)
    variables = init(model, x[0])
    flat = model.apply(variables, x.reshape(12, 28, 28, 1))
    chex.assert_shape(flat, (12, 10))
    # Two leading axes directly, and vmapped over the first: the same logits.
    both = model.apply(variables, x)
    mapped = jax.vmap(lambda xi: model.apply(variables, xi))(x)
    chex.assert_shape((both, mapped), (3, 4, 10))
    np.testing.assert_allclose(both.reshape(12, 10), flat, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mapped, both, rtol=1e-5, atol=1e-5)
    one = model.apply(variables, x[0, 0])  # a single unbatched image
    np.testing.assert_allclose(one, flat[0], rtol=1e-5, atol=1e-5)


def test_wrong_input_shape_fails_with_the_expected_shape():
    with pytest.raises(AssertionError, match=r"\[\*batch, 28, 28, 1\]"):
        init(MnistCNN(), jnp.zeros((2, 784)))
    with pytest.raises(AssertionError, match=r"\[\*batch, 28, 28, 1\]"):
        init(LeNet5(), jnp.zeros((2, 32, 32, 1)))


def test_features_are_the_head_input():
    model = MnistCNN(dropout=0.5)
    x = images(5)
    variables = init(model, x)
    feats = model.apply(variables, x, method="features")
    chex.assert_shape(feats, (5, 1024))
    assert float(jnp.min(feats)) >= 0.0  # after the ReLU
    head = variables["params"]["head"]
    logits = model.apply(variables, x)  # eval: dropout off
    np.testing.assert_allclose(logits, feats @ head["kernel"] + head["bias"], rtol=1e-5, atol=1e-5)
    same = model.apply(variables, x, return_features=True)
    np.testing.assert_allclose(same, feats, rtol=0, atol=0)


def test_dropout_and_batch_norm_only_in_training():
    model = MnistCNN(batch_norm=True, dropout=0.5, spatial_dropout=0.2)
    x = images(4)
    variables = init(model, x)
    rngs = {"dropout": jax.random.PRNGKey(2)}
    a = model.apply(variables, x)
    b = model.apply(variables, x, rngs=rngs)  # eval ignores the dropout rng
    np.testing.assert_allclose(a, b, rtol=0, atol=0)
    out, updates = model.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
    assert not np.allclose(out, a)
    moved = jax.tree.map(
        lambda u, v: float(jnp.max(jnp.abs(u - v))),
        updates["batch_stats"],
        variables["batch_stats"],
    )
    assert all(d > 0 for d in jax.tree.leaves(moved))


def test_scaled_tanh_is_the_papers():
    # f(a) = 1.7159 tanh(2a/3): f(+-1) = +-1 (Appendix A's choice), odd, saturating at 1.7159.
    v = scaled_tanh(jnp.array([-1.0, 0.0, 1.0, 50.0]))
    np.testing.assert_allclose(v, [-1.0, 0.0, 1.0, 1.7159], atol=2e-4)


@pytest.mark.parametrize("name", list(CNNS))
def test_jitted_forward_does_not_retrace(name):
    model = get_cnn(name)
    variables = init(model, images(2))
    chex.clear_trace_counter()  # counts are per code object, shared by the parametrized runs

    @jax.jit
    @chex.assert_max_traces(n=1)
    def forward(v, x):
        return model.apply(v, x)

    for seed in range(3):
        forward(variables, images(8, seed=seed)).block_until_ready()


def test_registry_lists_the_valid_names():
    with pytest.raises(ValueError, match="lenet5, mnist_cnn"):
        get_cnn("alexnet")
    assert isinstance(get_cnn("lenet5", activation="relu"), LeNet5)


def test_global_max_readout_is_invariant_to_shifts_by_the_pooling_stride():
    # A blob moved by (4, 4) = the two pools' total stride: every map moves by exactly one cell,
    # so each map's maximum (the global-max readout) is unchanged, while the flatten readout,
    # tied to positions, is not. Rows and columns 10-13 (moved: 14-17) keep every window of the
    # second conv that the blob reaches (through the first conv's 5x5 spread) off that conv's
    # zero padding, which differs from the ReLU'd background of the first pool's maps.
    img = np.zeros((1, 28, 28, 1), np.float32)
    img[0, 10:14, 10:14, 0] = np.random.default_rng(0).uniform(size=(4, 4))
    moved = np.roll(img, (4, 4), axis=(1, 2))
    x = jnp.asarray(np.concatenate([img, moved]))
    out = {}
    for readout in ("global_max", "flatten"):
        model = MnistCNN(channels=(4, 8), hidden=16, readout=readout)
        params = model.init(jax.random.PRNGKey(0), x[:1])
        out[readout] = np.asarray(model.apply(params, x, return_features=True))
    np.testing.assert_allclose(out["global_max"][0], out["global_max"][1], rtol=1e-5, atol=1e-6)
    assert np.abs(out["flatten"][0] - out["flatten"][1]).max() > 1e-3


def test_unknown_readout_fails_with_the_valid_names():
    model = MnistCNN(channels=(2, 2), hidden=4, readout="mean")
    with pytest.raises(ValueError, match="'flatten' or 'global_max'"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
