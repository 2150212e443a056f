"""Conv, ConvTranspose and SequenceConv against PyTorch (values and gradients for input, weight
and bias, NCHW/OIHW converted), finite differences, vmap, jit, trace counts, exact parameter
counts, and the padding invariance of masked sequence convolutions."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.nn import Conv, ConvTranspose, SequenceConv, sequence_padding
from dl.ops.conv import IMPLS
from dl.ops.gradcheck import assert_gradcheck

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _normal(seed, shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _t(a, perm=None):
    """numpy -> a float32 torch leaf that records its gradient, axes permuted first."""
    a = np.asarray(a)
    return torch.tensor(a if perm is None else a.transpose(perm), requires_grad=True)


def _params(model, *args):
    """Parameters of `model` drawn with numpy at the shapes `init` would give: jax.random's
    samplers take seconds to compile on a busy CPU, once per shape."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), *args)
    leaves, tree = jax.tree.flatten(shapes)
    return tree.unflatten([jnp.asarray(_normal(i, a.shape) * 0.3) for i, a in enumerate(leaves)])


def _jax_value_and_grads(model, params, x, cot):
    """y and d<y, cot>/d(params, x), jitted (one compile per case)."""

    def loss(params, x):
        y = model.apply({"params": params}, x)
        return jnp.vdot(y, cot), y

    (gp, gx), y = jax.jit(jax.grad(loss, (0, 1), has_aux=True))(params, x)
    return y, gp, gx


def _close(a, b, what):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-4, err_msg=what)


CONV_CASES = {
    # name: (x [N, H, W, C], features, kernel_size, strides, padding, dilation, groups, torch's
    # padding: "same", an int, or F.pad's (left, right, top, bottom))
    "3x3_valid": ((2, 6, 7, 3), 4, 3, 1, "VALID", 1, 1, 0),
    "3x3_same": ((2, 6, 7, 3), 4, 3, 1, "SAME", 1, 1, "same"),
    "1x1": ((2, 5, 5, 3), 2, 1, 1, 0, 1, 1, 0),
    "5x5_pad2_stride2": ((1, 9, 8, 2), 3, 5, 2, 2, 1, 1, 2),
    "2x3_stride21_dil12": ((2, 7, 8, 2), 3, (2, 3), (2, 1), 1, (1, 2), 1, 1),
    "per_side_pairs_dil2": ((1, 8, 8, 2), 2, 3, (1, 2), ((1, 2), (0, 1)), 2, 1, (0, 1, 1, 2)),
    "grouped_stride3": ((1, 9, 10, 4), 6, 3, 3, 1, 1, 2, 1),
    "depthwise_same_dil2": ((2, 7, 7, 3), 3, 3, 1, "SAME", 2, 3, "same"),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(CONV_CASES))
def test_conv_equals_torch_conv2d_values_and_gradients(name, impl):
    xs, features, k, s, pad, d, g, torch_pad = CONV_CASES[name]
    x = _normal(0, xs)
    model = Conv(features, k, strides=s, padding=pad, dilation=d, feature_group_count=g, impl=impl)
    # Parameters drawn here (no init to compile); shapes as Conv's: HWIO kernel, bias [O].
    kernel = _normal(2, (*((k, k) if isinstance(k, int) else k), xs[-1] // g, features)) * 0.3
    bias = _normal(3, (features,))
    params = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}
    xt, wt, bt = _t(x, (0, 3, 1, 2)), _t(kernel, (3, 2, 0, 1)), _t(bias)  # NCHW, OIHW
    if isinstance(torch_pad, tuple):
        yt = F.conv2d(F.pad(xt, torch_pad), wt, bt, stride=s, dilation=d, groups=g)
    else:
        yt = F.conv2d(xt, wt, bt, stride=s, padding=torch_pad, dilation=d, groups=g)
    cot = _normal(1, yt.shape)  # NCHW
    (yt * torch.from_numpy(cot)).sum().backward()
    y, gp, gx = _jax_value_and_grads(model, params, x, cot.transpose(0, 2, 3, 1))
    _close(y, yt.detach().numpy().transpose(0, 2, 3, 1), "output")
    _close(gx, xt.grad.numpy().transpose(0, 2, 3, 1), "input gradient")
    _close(gp["kernel"], wt.grad.numpy().transpose(2, 3, 1, 0), "kernel gradient")
    _close(gp["bias"], bt.grad.numpy(), "bias gradient")


def _transpose_grid():
    for s in (1, 2, 3):
        for p in (0, 1, 2):
            for d in (1, 2):
                for op in (0, 1):
                    if op < s or op < d:  # torch's validity rule
                        yield pytest.param(s, p, d, op, id=f"s{s}-p{p}-d{d}-op{op}")


@pytest.mark.parametrize("s, p, d, op", list(_transpose_grid()))
def test_conv_transpose_equals_torch_conv_transpose2d(s, p, d, op):
    x = _normal(0, (2, 3, 4, 2))
    ref = torch.nn.ConvTranspose2d(2, 3, (3, 2), stride=s, padding=p, output_padding=op, dilation=d)
    model = ConvTranspose(3, (3, 2), strides=s, padding=p, output_padding=op, dilation=d)
    params = {
        "kernel": jnp.asarray(ref.weight.detach().numpy().transpose(2, 3, 0, 1)),  # [in,out,kh,kw]
        "bias": jnp.asarray(ref.bias.detach().numpy()),
    }
    xt = _t(x, (0, 3, 1, 2))
    yt = ref(xt)
    assert yt.shape[2:] == ((3 - 1) * s - 2 * p + d * 2 + op + 1, (4 - 1) * s - 2 * p + d + op + 1)
    cot = _normal(1, yt.shape)
    (yt * torch.from_numpy(cot)).sum().backward()
    y, gp, gx = _jax_value_and_grads(model, params, x, cot.transpose(0, 2, 3, 1))
    _close(y, yt.detach().numpy().transpose(0, 2, 3, 1), "output")
    _close(gx, xt.grad.numpy().transpose(0, 2, 3, 1), "input gradient")
    _close(gp["kernel"], ref.weight.grad.numpy().transpose(2, 3, 0, 1), "kernel gradient")
    _close(gp["bias"], ref.bias.grad.numpy(), "bias gradient")


def test_conv_transpose_grouped_equals_torch():
    x = _normal(0, (1, 3, 3, 4))
    ref = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    model = ConvTranspose(6, 3, strides=2, padding=1, output_padding=1, feature_group_count=2)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
    assert shapes["kernel"].shape == (3, 3, 4, 3) == ref.weight.permute(2, 3, 0, 1).shape
    params = {
        "kernel": jnp.asarray(ref.weight.detach().numpy().transpose(2, 3, 0, 1)),
        "bias": jnp.asarray(ref.bias.detach().numpy()),
    }
    want = ref(_t(x, (0, 3, 1, 2))).detach().numpy().transpose(0, 2, 3, 1)
    _close(model.apply({"params": params}, x), want, "output")


@pytest.mark.parametrize(
    "model, x_shape",
    [
        (
            Conv(3, (2, 3), strides=(2, 1), padding=((1, 0), 1), dilation=(1, 2), impl="xla"),
            (1, 5, 6, 2),
        ),
        (Conv(4, 3, padding="SAME", feature_group_count=2, impl="im2col_vjp"), (1, 4, 4, 2)),
        (ConvTranspose(2, 3, strides=2, padding=1, output_padding=1, dilation=2), (1, 3, 3, 2)),
        (ConvTranspose(2, 2, strides=3, padding=2, output_padding=2), (1, 3, 2, 2)),
    ],
    ids=["conv_xla", "conv_im2col_vjp_grouped", "transpose_dil2", "transpose_op2"],
)
def test_gradcheck_layers(model, x_shape):
    x = jnp.asarray(_normal(0, x_shape))
    params = _params(model, x)["params"]

    def f(both):
        params, x = both
        return jnp.sum(jnp.tanh(model.apply({"params": params}, x)) ** 2)

    assert_gradcheck(f, (params, x), tol=1e-7)


@pytest.mark.parametrize(
    "model, x_shape, count",
    [
        (Conv(64, 5), (1, 28, 28, 32), 5 * 5 * 32 * 64 + 64),  # 51,264
        (Conv(64, 5, feature_group_count=4), (1, 28, 28, 32), 5 * 5 * 8 * 64 + 64),
        (Conv(16, (3,), use_bias=False), (1, 10, 8), 3 * 8 * 16),
        (ConvTranspose(32, 4, strides=2), (1, 7, 7, 64), 4 * 4 * 64 * 32 + 32),
        (SequenceConv(100, 3), (2, 9, 50), 3 * 50 * 100 + 100),
    ],
)
def test_exact_parameter_counts(model, x_shape, count):
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros(x_shape))
    assert sum(v.size for v in jax.tree.leaves(shapes["params"])) == count


def test_default_init_is_torchs_uniform_fan_in():
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)): fan_in 5 * 5 * 32 for Conv, 4 * 4 * 32 (torch's:
    # out channels) for ConvTranspose; bias the same bound. One jit: one sampler compile.
    cases = [
        (Conv(64, 5), jnp.zeros((1, 8, 8, 32)), 800),
        (ConvTranspose(32, 4), jnp.zeros((1, 3, 3, 64)), 512),
        (Conv(4, 3, kernel_init="he_normal", bias_init="zeros"), jnp.zeros((1, 5, 5, 2)), 18),
    ]
    key = jax.random.key(0, impl="rbg")  # threefry's sampler takes 5x longer to compile
    ps = jax.jit(lambda key: [m.init(key, x)["params"] for m, x, _ in cases])(key)
    for p, (_, _, fan_in) in zip(ps[:2], cases):
        bound = 1 / np.sqrt(fan_in)
        for leaf in (p["kernel"], p["bias"]):
            assert 0.8 * bound < float(jnp.max(jnp.abs(leaf))) <= bound
        np.testing.assert_allclose(jnp.var(p["kernel"]), bound**2 / 3, rtol=0.1)
    assert not jnp.any(ps[2]["bias"])
    np.testing.assert_allclose(jnp.std(ps[2]["kernel"]), np.sqrt(2 / 18), rtol=0.3)


@pytest.mark.parametrize("impl", IMPLS)
def test_vmap_and_extra_batch_axes_equal_a_loop(impl):
    model = Conv(3, 3, strides=2, padding="SAME", impl=impl)
    xs = jnp.asarray(_normal(0, (3, 2, 6, 6, 2)))  # [ensemble, batch, H, W, C]
    v = _params(model, xs[0])
    apply = jax.jit(model.apply)
    loop = jnp.stack([apply(v, x) for x in xs])
    np.testing.assert_allclose(jax.jit(jax.vmap(model.apply, (None, 0)))(v, xs), loop, atol=1e-6)
    np.testing.assert_allclose(apply(v, xs), loop, atol=1e-6)
    # vmap over parameters too: an ensemble of 3 convolutions, one per slice of xs.
    vs = jax.tree.map(lambda a: jnp.stack([a, -a, 2 * a]), v)
    ens = jax.jit(jax.vmap(model.apply))(vs, xs)
    want = jnp.stack([apply(jax.tree.map(lambda a, i=i: a[i], vs), xs[i]) for i in range(3)])
    np.testing.assert_allclose(ens, want, atol=1e-6)


@pytest.mark.parametrize(
    "model, x_shape",
    [
        (Conv(4, 3, padding=1, impl="im2col_vjp"), (2, 6, 6, 3)),
        (ConvTranspose(4, 3, strides=2, padding=1, output_padding=1), (2, 4, 4, 3)),
    ],
)
def test_jit_equals_eager_and_does_not_retrace(model, x_shape):
    x = jnp.asarray(_normal(0, x_shape))
    params = _params(model, x)["params"]

    def loss(params, x):
        return jnp.sum(model.apply({"params": params}, x) ** 2)

    chex.clear_trace_counter()
    step = jax.jit(jax.value_and_grad(chex.assert_max_traces(loss, n=1)))
    eager = jax.value_and_grad(loss)(params, x)
    chex.assert_trees_all_close(step(params, x), eager, rtol=1e-5, atol=1e-5)
    values = [step(params, x + shift)[0] for shift in (1.0, 2.0, 3.0)]  # same shapes: no retrace
    assert len({float(v) for v in values}) == 3


SEQ_PADDINGS = ["SAME", "VALID", "WIDE", "CAUSAL", 1, (0, 2)]


@pytest.mark.parametrize("padding", SEQ_PADDINGS)
@pytest.mark.parametrize("strides, dilation", [(1, 1), (2, 1), (1, 2)])
def test_sequence_conv_equals_torch_conv1d_on_each_unpadded_sequence(padding, strides, dilation):
    lengths = np.array([9, 6, 4])
    x = _normal(0, (3, 9, 2))
    model = SequenceConv(3, 3, strides=strides, dilation=dilation, padding=padding)
    params = _params(model, x, jnp.asarray(lengths))["params"]
    y, out_lengths = jax.jit(model.apply)({"params": params}, x, jnp.asarray(lengths))
    lo, hi = sequence_padding(padding, 3, dilation)
    w = torch.tensor(np.asarray(params["conv"]["kernel"]).transpose(2, 1, 0))  # [O, I, k]
    b = torch.tensor(np.asarray(params["conv"]["bias"]))
    for i, n in enumerate(lengths):
        if n + lo + hi < dilation * 2 + 1:  # shorter than the dilated window: no output at all
            assert int(out_lengths[i]) == 0 and not jnp.any(y[i])
            continue
        xi = torch.from_numpy(x[i, :n].T[None])  # [1, C, n]: the sequence alone, unpadded
        want = F.conv1d(F.pad(xi, (lo, hi)), w, b, stride=strides, dilation=dilation)
        want = want[0].detach().numpy().T
        assert int(out_lengths[i]) == len(want)
        _close(y[i, : len(want)], want, f"sequence {i}")
        np.testing.assert_array_equal(y[i, len(want) :], 0.0)  # nothing at padded steps


@pytest.mark.parametrize("padding", ["SAME", "WIDE", "CAUSAL", "VALID"])
def test_sequence_conv_padding_a_batch_changes_no_real_output(padding):
    # Garbage (large, not zeros) at the padded steps, and the same batch padded by 4 more steps
    # of garbage: every output is unchanged, the extra outputs are zero, and no gradient reaches
    # the padded steps.
    lengths = jnp.array([5, 3, 1])
    real = (jnp.arange(5) < lengths[:, None])[..., None]
    x = jnp.where(real, jnp.asarray(_normal(0, (3, 5, 2))), 100.0)
    x_long = jnp.concatenate([x, jnp.asarray(_normal(1, (3, 4, 2))) * 100], axis=1)
    model = SequenceConv(4, 3, padding=padding)
    params = _params(model, x, lengths)
    apply = jax.jit(model.apply)
    y, n_out = apply(params, x, lengths)
    y_long, n_out_long = apply(params, x_long, lengths)
    np.testing.assert_array_equal(n_out, n_out_long)
    t = y.shape[1]
    np.testing.assert_allclose(y_long[:, :t], y, atol=1e-6)
    np.testing.assert_array_equal(y_long[:, t:], 0.0)
    zeros_in = apply(params, jnp.where(real, x, 0.0), lengths)[0]
    np.testing.assert_allclose(zeros_in, y, atol=1e-6)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(apply(params, x, lengths)[0] ** 2)))(x_long)
    pad_steps = (jnp.arange(9) >= lengths[:, None])[..., None]
    np.testing.assert_array_equal(jnp.where(pad_steps, grad, 0.0), 0.0)
    # Real steps do get gradients (where the sequence has any output at all).
    np.testing.assert_array_equal(jnp.any(grad != 0, axis=(1, 2)), n_out > 0)


def test_sequence_conv_batch_shapes_and_defaults():
    model = SequenceConv(3, 4, padding="SAME")
    x = jnp.asarray(_normal(0, (2, 3, 7, 2)))  # two batch axes
    lengths = jnp.array([[7, 5, 2], [1, 7, 3]])
    v = _params(model, x, lengths)
    apply = jax.jit(model.apply)
    y, n = apply(v, x, lengths)
    assert y.shape == (2, 3, 7, 3)
    np.testing.assert_array_equal(n, lengths)  # SAME, stride 1: out length = length
    flat = apply(v, x.reshape(6, 7, 2), lengths.reshape(6))[0].reshape(y.shape)
    np.testing.assert_allclose(y, flat, atol=1e-6)
    full, n_full = apply(v, x[0, :1])  # no lengths: every step is real
    assert int(n_full[0]) == 7
    np.testing.assert_allclose(full[0], apply(v, x[0, :1], jnp.array([7]))[0][0])
    with pytest.raises(ValueError, match="lengths must have the batch shape"):
        apply(v, x, lengths[0])
    with pytest.raises(ValueError, match="padding must be one of"):
        sequence_padding("FULL", 3, 1)
