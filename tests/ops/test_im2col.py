"""im2col against a loop over output positions; the three `conv` impls against each other (values
and gradients), XLA's convolution and finite differences; `conv_transpose` as the adjoint of
`conv`; padding arithmetic; batch shapes, vmap and the chunked weight gradient."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dl.ops.conv import (
    IMPLS,
    ConvConfig,
    _xla_split_conv,
    conv,
    conv_transpose,
    conv_transpose_output_shape,
    im2col_weight_grad,
    resolve_impl,
    split_parts,
)
from dl.ops.gradcheck import assert_gradcheck
from dl.ops.im2col import conv_im2col, conv_output_shape, conv_padding, im2col


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _loop_im2col(x, window, strides, pads, dilation):
    """Reference: for every output position, read its receptive field tap by tap (numpy)."""
    x = np.asarray(x)
    xp = np.pad(x, [(0, 0), *(tuple(max(v, 0) for v in p) for p in pads), (0, 0)])
    # Negative padding crops.
    crop = tuple(
        slice(-lo if lo < 0 else 0, xp.shape[1 + i] + min(hi, 0)) for i, (lo, hi) in enumerate(pads)
    )
    xp = xp[(slice(None), *crop, slice(None))]
    out = [
        (s - d * (k - 1) - 1) // st + 1
        for s, k, st, d in zip(xp.shape[1:-1], window, strides, dilation)
    ]
    rows = np.zeros((x.shape[0], *out, int(np.prod(window)) * x.shape[-1]), x.dtype)
    for pos in itertools.product(*(range(o) for o in out)):
        taps = [
            xp[
                (
                    slice(None),
                    *(p * st + o * d for p, o, st, d in zip(pos, offs, strides, dilation)),
                    slice(None),
                )
            ]
            for offs in itertools.product(*(range(k) for k in window))
        ]
        rows[(slice(None), *pos)] = np.concatenate(taps, axis=-1)
    return rows


@pytest.mark.parametrize(
    "shape, window, strides, pads, dilation",
    [
        ((2, 6, 7, 3), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
        ((1, 7, 6, 2), (2, 3), (2, 3), ((0, 1), (2, 0)), (2, 1)),
        ((2, 6, 6, 1), (3, 2), (1, 2), ((-1, 0), (0, -1)), (1, 1)),  # negative: cropping
        ((3, 9, 2), (4,), (2,), ((1, 2),), (2,)),  # 1-D
        ((1, 4, 5, 4, 2), (2, 2, 3), (1, 2, 1), ((0, 0), (1, 0), (1, 1)), (1, 1, 1)),  # 3-D
    ],
)
def test_im2col_matches_a_loop_over_positions(shape, window, strides, pads, dilation):
    x = _normal(0, shape)
    got = im2col(x, window, strides=strides, padding=pads, dilation=dilation)
    want = _loop_im2col(x, window, strides, pads, dilation)
    np.testing.assert_array_equal(np.asarray(got), want)


def test_padding_conventions():
    assert conv_padding("valid", (3, 3)) == ((0, 0), (0, 0))
    assert conv_padding(2, (3, 5)) == ((2, 2), (2, 2))
    assert conv_padding((1, (0, 2)), (3, 3)) == ((1, 1), (0, 2))
    # SAME, stride 1: total dilation * (k - 1), the odd element at the end (torch's 'same').
    assert conv_padding("SAME", (4, 3), dilation=(1, 2)) == ((1, 2), (2, 2))
    # SAME, stride 2 on 7: output ceil(7 / 2) = 4, total (4 - 1) * 2 + 3 - 7 = 2.
    assert conv_padding("SAME", (3,), strides=2, spatial_shape=(7,)) == ((1, 1),)
    assert conv_output_shape((7,), (3,), strides=2, padding="SAME") == (4,)
    # torch: floor((28 + 2 * 2 - 2 * (5 - 1) - 1) / 3) + 1 = 8
    assert conv_output_shape((28,), (5,), strides=3, padding=2, dilation=2) == (8,)
    with pytest.raises(ValueError, match="SAME"):
        conv_padding("SAME", (3,), strides=2)
    with pytest.raises(ValueError, match="'SAME' or 'VALID'"):
        conv_padding("FULL", (3,))
    with pytest.raises(ValueError, match="2 entries"):
        conv_padding((1, 1, 1), (3, 3))
    with pytest.raises(ValueError, match="smaller than the dilated window"):
        conv_output_shape((4,), (3,), dilation=2)


def _lax_conv(x, w, strides, padding, dilation, groups):
    n = w.ndim - 2
    pads = conv_padding(
        padding, w.shape[:-2], strides=strides, dilation=dilation, spatial_shape=x.shape[1:-1]
    )
    spec = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}[
        n
    ]
    return lax.conv_general_dilated(
        x,
        w,
        (strides,) * n if isinstance(strides, int) else strides,
        pads,
        rhs_dilation=(dilation,) * n if isinstance(dilation, int) else dilation,
        dimension_numbers=spec,
        feature_group_count=groups,
    )


CASES = [
    # x shape, kernel shape [*window, C / G, O], strides, padding, dilation, groups
    ((2, 7, 6, 3), (3, 3, 3, 4), 1, "SAME", 1, 1),
    ((2, 8, 7, 4), (3, 2, 2, 6), (2, 1), ((1, 2), 0), (1, 2), 2),
    ((1, 9, 9, 4), (3, 3, 1, 4), 2, "SAME", 2, 4),  # depthwise, strided SAME
    ((3, 11, 2), (3, 2, 5), 2, 1, 2, 1),  # 1-D
    ((1, 4, 5, 5, 2), (2, 3, 2, 2, 3), (1, 2, 1), "VALID", 1, 1),  # 3-D
]


@pytest.mark.parametrize("case", CASES)
def test_impls_agree_with_xla_in_values_and_gradients(case):
    xs, ws, strides, padding, dilation, groups = case
    x, w = _normal(0, xs), _normal(1, ws)
    want = _lax_conv(x, w, strides, padding, dilation, groups)
    cot = _normal(2, want.shape)

    def loss(x, w, impl):
        y = conv(
            x,
            w,
            strides=strides,
            padding=padding,
            dilation=dilation,
            feature_group_count=groups,
            impl=impl,
        )
        return jnp.vdot(y, cot), y

    # jitted: one compile per impl (op-by-op eager would compile each slice of im2col).
    g_ref = jax.jit(
        jax.grad(
            lambda x, w: jnp.vdot(_lax_conv(x, w, strides, padding, dilation, groups), cot), (0, 1)
        )
    )(x, w)
    for impl in IMPLS:
        grad = jax.jit(jax.grad(loss, (0, 1), has_aux=True), static_argnums=2)
        (gx, gw), got = grad(x, w, impl)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=impl)
        for g, r in zip((gx, gw), g_ref):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-4, err_msg=impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", [CASES[1], CASES[3]], ids=["2d_grouped", "1d"])
def test_gradcheck_every_impl(impl, case):
    xs, ws, strides, padding, dilation, groups = case
    xs = (1, *xs[1:])  # one example keeps the finite differences cheap

    def f(params, cot):
        x, w = params
        y = conv(
            x,
            w,
            strides=strides,
            padding=padding,
            dilation=dilation,
            feature_group_count=groups,
            impl=impl,
        )
        return jnp.sum(jnp.tanh(y) * cot)

    x, w = _normal(0, xs), _normal(1, ws)
    cot = _normal(2, _lax_conv(x, w, strides, padding, dilation, groups).shape)
    assert_gradcheck(f, (x, w), cot, tol=1e-7)


@pytest.mark.parametrize("n, chunk_bytes", [(5, 1), (5, 2 * 36 * 8 * 4), (4, 2**30)])
def test_chunked_weight_gradient_with_ragged_last_chunk(n, chunk_bytes):
    # Chunks of 1, 2 (images of 6 x 6 output rows x 8 tap-channels) and all images; a batch that is
    # not a whole number of chunks is zero-padded.
    x, g = _normal(0, (n, 6, 6, 2)), _normal(1, (n, 6, 6, 3))
    cfg = ConvConfig((1, 1), ((1, 0), (0, 1)), (1, 1), 1)
    got = jax.jit(lambda x, g: im2col_weight_grad(x, g, (2, 2), cfg, chunk_bytes=chunk_bytes))(x, g)
    w = jnp.zeros((2, 2, 2, 3))
    want = jax.grad(lambda w: jnp.vdot(_lax_conv(x, w, 1, cfg.padding, 1, 1), g))(w)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_batch_shapes_and_vmap(impl):
    w = _normal(1, (3, 3, 2, 4))
    xs = _normal(0, (3, 2, 6, 6, 2))  # [extra, batch, H, W, C]
    f = jax.jit(lambda x: conv(x, w, strides=2, padding="SAME", impl=impl))
    loop = jnp.stack([f(x) for x in xs])
    np.testing.assert_allclose(jax.vmap(f)(xs), loop, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(f(xs), loop, rtol=1e-6, atol=1e-6)  # two batch axes flattened
    np.testing.assert_allclose(f(xs[0, 0]), loop[0, 0], rtol=1e-6, atol=1e-6)  # unbatched
    # Gradients under vmap (per-example weight gradients) equal a loop too.
    gw = jax.jit(
        jax.vmap(jax.grad(lambda w, x: jnp.sum(jnp.sin(conv(x, w, impl=impl)))), (None, 0))
    )
    g1 = jax.jit(jax.grad(lambda w, x: jnp.sum(jnp.sin(conv(x, w)))))
    want = jnp.stack([g1(w, x) for x in xs])
    np.testing.assert_allclose(gw(w, xs), want, rtol=1e-5, atol=1e-5)


def test_only_im2col_vjp_is_reverse_mode_only_and_bad_impl_is_rejected():
    x, w = _normal(0, (1, 4, 4, 1)), _normal(1, (2, 2, 1, 1))
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda w: conv(x, w, impl="im2col_vjp"), (w,), (w,))
    for impl in ("auto", "xla_split"):  # the default keeps forward mode
        _, tangent = jax.jvp(lambda w, i=impl: conv(x, w, impl=i), (w,), (w,))
        np.testing.assert_allclose(tangent, conv(x, w, impl="xla"), rtol=1e-6)  # linear in w
    with pytest.raises(ValueError, match="impl must be"):
        conv(x, w, impl="fft")
    with pytest.raises(ValueError, match="channels"):
        conv(x, _normal(1, (2, 2, 3, 1)))


def test_auto_impl_split_batches_and_reverse_over_reverse():
    assert jax.default_backend() == "cpu"
    # One CPU device: split the gradients over its threads; simulated devices: plain XLA.
    want_auto = "xla_split" if jax.local_device_count() == 1 else "xla"
    assert resolve_impl("auto") == want_auto and resolve_impl("im2col") == "im2col"
    # Uneven slices (7 images in 3 parts: 2, 2, 3), and more parts than images, equal one conv.
    x, w = _normal(0, (7, 5, 5, 3)), _normal(1, (3, 3, 3, 4))
    cfg = ConvConfig((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    want = _lax_conv(x, w, 1, 1, 1, 1)
    for parts in (3, 7, 12):
        got = jax.jit(lambda x, w, p=parts: _xla_split_conv(x, w, cfg, p))(x, w)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert split_parts() >= 1
    # The custom rules are themselves differentiable: Hessian-vector products by grad of grad.
    x = x[:2]

    def hvp(impl):
        f = lambda w: jnp.sum(jnp.tanh(conv(x, w, padding=1, impl=impl)) ** 2)
        return jax.jit(jax.grad(lambda w: jnp.vdot(jax.grad(f)(w), w)))(w)

    for impl in ("im2col_vjp", "xla_split"):
        np.testing.assert_allclose(hvp(impl), hvp("xla"), rtol=1e-5, atol=1e-5, err_msg=impl)
    # xla_split's forward mode (its custom JVP rule) in both tangents equals XLA's.
    jvp = lambda impl: jax.jvp(lambda x, w: conv(x, w, impl=impl), (x, w), (2 * x, -w))[1]
    np.testing.assert_allclose(jvp("xla_split"), jvp("xla"), rtol=1e-5, atol=1e-5)


def test_conv_im2col_is_one_matmul_of_patches():
    x, w = _normal(0, (2, 5, 5, 3)), _normal(1, (3, 3, 3, 4))
    patches = im2col(x, (3, 3))
    np.testing.assert_allclose(conv_im2col(x, w), patches @ w.reshape(27, 4), rtol=1e-6)
    assert patches.shape == (2, 3, 3, 27)


@pytest.mark.parametrize(
    "size, k, s, p, d", [(7, 3, 2, 1, 1), (8, 3, 2, 1, 1), (9, 2, 3, 2, 2), (6, 3, 1, 0, 2)]
)
def test_conv_transpose_is_the_adjoint_of_conv(size, k, s, p, d):
    # <conv(x, w), y> = <x, conv_transpose(y, w with in/out swapped)>, with the output_padding
    # that recovers the input size: (size + 2p - d(k - 1) - 1) mod s.
    op = tuple((n + 2 * p - d * (k - 1) - 1) % s for n in (size, size + 1))
    x, w = _normal(0, (2, size, size + 1, 3)), _normal(1, (k, k, 3, 2))
    cx = conv(x, w, strides=s, padding=p, dilation=d)
    y = _normal(2, cx.shape)
    ty = conv_transpose(
        y, jnp.swapaxes(w, -1, -2), strides=s, padding=p, dilation=d, output_padding=op
    )
    assert ty.shape == x.shape
    assert ty.shape[1:3] == conv_transpose_output_shape(
        cx.shape[1:3], (k, k), strides=s, padding=p, dilation=d, output_padding=op
    )
    np.testing.assert_allclose(jnp.vdot(cx, y), jnp.vdot(x, ty), rtol=1e-4)


@pytest.mark.parametrize(
    "s, p, d, op, g",
    [(2, 1, 1, 1, 1), (2, 1, 1, 0, 2), (3, 2, 1, 2, 1), (1, 0, 2, 1, 1), (2, 0, 3, 2, 2)],
)
def test_conv_transpose_adjoint_gradients_equal_xla(s, p, d, op, g):
    # "adjoint" takes its gradients from a strided conv; XLA's own rule is the reference, for
    # the gradients and for a second-order term (grad of a function of the gradient). (1, 0, 2,
    # 1) and (2, 0, 3, 2) have output_padding >= stride, where that conv is cropped.
    x, w = _normal(0, (2, 4, 3, 4)), _normal(1, (3, 2, 4, 6 // g))

    def loss(impl):
        def f(x, w):
            y = conv_transpose(
                x,
                w,
                strides=s,
                padding=p,
                dilation=d,
                output_padding=op,
                feature_group_count=g,
                impl=impl,
            )
            return jnp.sum(jnp.sin(y))

        return f

    np.testing.assert_allclose(loss("adjoint")(x, w), loss("xla")(x, w), rtol=1e-6)
    got = jax.grad(loss("adjoint"), argnums=(0, 1))(x, w)
    want = jax.grad(loss("xla"), argnums=(0, 1))(x, w)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    def second(impl):
        return jax.grad(lambda w: jnp.sum(jax.grad(loss(impl))(x, w) ** 2))(w)

    np.testing.assert_allclose(second("adjoint"), second("xla"), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="impl"):
        conv_transpose(x, w, strides=s, padding=p, impl="im2col")


def test_conv_transpose_batch_shapes_and_bad_output_padding():
    w = _normal(1, (3, 3, 2, 4))
    xs = _normal(0, (3, 2, 4, 4, 2))
    f = jax.jit(lambda x: conv_transpose(x, w, strides=2, padding=1, output_padding=1))
    loop = jnp.stack([f(x) for x in xs])
    assert loop.shape == (3, 2, 8, 8, 4)
    np.testing.assert_allclose(jax.vmap(f)(xs), loop, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(f(xs), loop, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose(xs[0], w, strides=2, output_padding=2)
