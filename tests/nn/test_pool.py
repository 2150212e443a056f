"""Pooling against PyTorch, ties included: values, argmax indices, gradients and unpooling.

Tie-heavy inputs (integers in {0, 1, 2}, or constant images) make most windows hold several
maxima, so these tests pin down the rule documented in `dl.nn.pool`: the first maximum in
scan order, padding never, the last NaN.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dl.nn.pool import avg_pool, max_pool, max_pool_with_argmax, max_unpool, unpool_size

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _nchw(x):
    return torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()


def _nhwc(t):
    return t.detach().permute(0, 2, 3, 1).numpy()


# (H, W), window, strides, padding, ceil_mode: non-overlapping, overlapping (stride < window),
# padded, ceil-mode, rectangular and degenerate geometries. A fixed list keeps compilation
# bounded (one jit per geometry); hypothesis draws the tie-heavy values.
GEOMETRIES = [
    ((6, 6), (2, 2), (2, 2), (0, 0), False),
    ((5, 7), (2, 2), (2, 2), (0, 0), True),
    ((6, 5), (3, 3), (1, 1), (1, 1), False),
    ((7, 6), (3, 3), (2, 2), (1, 1), True),
    ((5, 5), (2, 3), (1, 2), (1, 0), False),
    ((6, 7), (3, 2), (3, 1), (0, 1), True),
    ((4, 6), (1, 3), (1, 1), (0, 1), False),
    ((5, 4), (3, 3), (3, 3), (1, 1), True),
]


@functools.cache
def _jax_pool(geometry):
    """Jitted (values, indices, values' vjp, max_pool, its vjp) for one geometry."""
    _, k, s, p, ceil = geometry

    def run(x, g):
        (v, i), pull = jax.vjp(lambda x: max_pool_with_argmax(x, k, s, p, ceil_mode=ceil), x)
        y, pull_plain = jax.vjp(lambda x: max_pool(x, k, s, p, ceil_mode=ceil), x)
        return v, i, pull((g, jnp.zeros_like(i)))[0], y, pull_plain(g)[0]

    return jax.jit(run)


@functools.cache
def _jax_unpool(size):
    def run(f, i, cot):
        u, pull = jax.vjp(lambda f: max_unpool(f, i, size), f)
        return u, pull(cot)[0]

    return jax.jit(run)


@st.composite
def pool_case(draw):
    """A tie-heavy [2, H, W, 2] image, a geometry, and the seed of the cotangents."""
    geometry = draw(st.sampled_from(GEOMETRIES))
    kind = draw(st.sampled_from(["integers", "constant", "binary"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    shape = (2, *geometry[0], 2)
    if kind == "constant":
        x = np.full(shape, rng.integers(-2, 3), np.float32)
    else:
        x = rng.integers(0, 3 if kind == "integers" else 2, shape).astype(np.float32)
    return x, geometry, rng


def _torch_pool(x, geometry, rng):
    _, k, s, p, ceil = geometry
    t = _nchw(x).requires_grad_(True)
    v, i = F.max_pool2d(t, k, s, p, ceil_mode=ceil, return_indices=True)
    g = torch.tensor(rng.normal(size=v.shape).astype(np.float32))
    v.backward(g)
    return v, i, g, t.grad


@settings(max_examples=30)
@given(pool_case())
def test_max_pool_with_argmax_equals_torch_on_ties(case):
    x, geometry, rng = case
    tv, ti, g, tgrad = _torch_pool(x, geometry, rng)
    v, i, grad, y, grad_plain = _jax_pool(geometry)(x, _nhwc(g))
    np.testing.assert_array_equal(v, _nhwc(tv))
    np.testing.assert_array_equal(i, _nhwc(ti))
    # The values' gradient reaches the chosen index only, summed over overlapping windows.
    np.testing.assert_allclose(grad, _nhwc(tgrad), rtol=1e-6, atol=1e-6)
    # Plain max_pool: same values, and XLA's select-and-scatter gradient picks the same pixel.
    np.testing.assert_array_equal(y, _nhwc(tv))
    np.testing.assert_allclose(grad_plain, _nhwc(tgrad), rtol=1e-6, atol=1e-6)


@settings(max_examples=25)
@given(pool_case())
def test_max_unpool_equals_torch_values_and_gradient(case):
    x, geometry, rng = case
    size, k, s, p, _ = geometry
    tv, ti, g, _ = _torch_pool(x, geometry, rng)
    # Decoder features distinct from the maxima where windows cannot share a pixel; the pooled
    # maxima themselves where they can (stride < window), so that shared writes are equal.
    feats = g if all(a >= b for a, b in zip(s, k)) else tv.detach()
    ft = feats.clone().requires_grad_(True)
    tu = F.max_unpool2d(ft, ti, k, s, p, output_size=size)
    cot = torch.tensor(rng.normal(size=tu.shape).astype(np.float32))
    tu.backward(cot)
    i = _nhwc(ti).astype(np.int32)
    u, grad = _jax_unpool(size)(_nhwc(feats), i, _nhwc(cot))
    np.testing.assert_array_equal(u, _nhwc(tu))
    # Shared indices: every window's input gathers the output gradient, as PyTorch's backward.
    np.testing.assert_allclose(grad, _nhwc(ft.grad), rtol=1e-6, atol=1e-6)


# Jitted once per shape: eager dispatch would compile each of the ~30 primitives separately.
_POOL_ARGS = ("window", "strides", "padding", "ceil_mode")
_argmax = jax.jit(max_pool_with_argmax, static_argnames=_POOL_ARGS)
_max = jax.jit(max_pool, static_argnames=_POOL_ARGS)
_avg = jax.jit(avg_pool, static_argnames=(*_POOL_ARGS, "count_include_pad"))
_unpool = jax.jit(max_unpool, static_argnames=("output_size",))


def test_tie_rule_first_maximum_in_scan_order():
    x = np.ones((1, 3, 3, 1), np.float32)  # every window is all ties
    _, i = _argmax(x, 2, 1)
    np.testing.assert_array_equal(i[0, :, :, 0], [[0, 1], [3, 4]])  # each window's top-left
    g = jax.grad(lambda x: _argmax(x, 2, 1)[0].sum())(jnp.asarray(x))
    np.testing.assert_array_equal(g[0, :, :, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    # Padding never wins, even against a real -inf: the first real pixel of the window does.
    neg = np.full((1, 3, 3, 1), -np.inf, np.float32)
    v, i = _argmax(neg, 2, 2, 1)
    tv, ti = F.max_pool2d(_nchw(neg), 2, 2, 1, return_indices=True)
    np.testing.assert_array_equal(v, _nhwc(tv))
    np.testing.assert_array_equal(i, _nhwc(ti))
    np.testing.assert_array_equal(i[0, :, :, 0], [[0, 1], [3, 4]])


def test_nan_window_returns_nan_at_its_last_nan():
    nan = np.nan
    x = np.array([[nan, 1, nan], [1, nan, 1], [1, 1, 1]], np.float32)[None, :, :, None]
    v, i = _argmax(x, 2, 1)
    _, ti = F.max_pool2d(_nchw(x), 2, 1, return_indices=True)
    np.testing.assert_array_equal(i, _nhwc(ti))
    np.testing.assert_array_equal(i[0, :, :, 0], [[4, 4], [4, 4]])
    assert np.isnan(v[0, 0, 0, 0]) and np.isnan(_max(x, 2, 1)[0, 0, 0, 0])


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("k, s, p, ceil", [(2, 2, 0, False), (3, 2, 1, True), (3, 1, 1, False)])
def test_avg_pool_equals_torch(k, s, p, ceil, count_include_pad):
    x = np.random.default_rng(0).normal(size=(2, 7, 6, 3)).astype(np.float32)
    want = F.avg_pool2d(_nchw(x), k, s, p, ceil_mode=ceil, count_include_pad=count_include_pad)
    got = _avg(x, k, s, p, ceil_mode=ceil, count_include_pad=count_include_pad)
    np.testing.assert_allclose(got, _nhwc(want), rtol=1e-5, atol=1e-6)


def test_same_padding_equals_flax_and_indices_point_at_values():
    x = jnp.asarray(np.random.default_rng(0).integers(0, 3, (2, 7, 5, 2)).astype(np.float32))
    v, i = _argmax(x, (3, 2), (2, 2), "SAME")
    np.testing.assert_array_equal(v, nn.max_pool(x, (3, 2), (2, 2), "SAME"))
    np.testing.assert_array_equal(_max(x, (3, 2), (2, 2), "SAME"), v)
    flat = x.reshape(2, 35, 2)
    np.testing.assert_array_equal(
        jnp.take_along_axis(flat, i.reshape(2, -1, 2), axis=1), v.reshape(2, -1, 2)
    )
    with jax.numpy_dtype_promotion("standard"):  # flax divides by an int32 window size
        want = nn.avg_pool(x, (3, 3), (2, 2), "SAME")
    np.testing.assert_allclose(_avg(x, 3, 2, "SAME"), want, rtol=1e-6)


def test_any_leading_batch_shape_and_vmap():
    x = jnp.asarray(np.random.default_rng(0).integers(0, 3, (2, 3, 6, 6, 2)).astype(np.float32))
    v, i = _argmax(x, 2)
    vv, vi = jax.vmap(lambda a: _argmax(a, 2))(x)
    fv, fi = _argmax(x.reshape(6, 6, 6, 2), 2)
    uv, ui = _argmax(x[1, 2], 2)  # no batch axis at all
    np.testing.assert_array_equal(v, vv)
    np.testing.assert_array_equal(i, vi)
    np.testing.assert_array_equal(v.reshape(fv.shape), fv)
    np.testing.assert_array_equal(i.reshape(fi.shape), fi)
    np.testing.assert_array_equal(uv, v[1, 2])
    np.testing.assert_array_equal(ui, i[1, 2])
    u = _unpool(v, i, (6, 6))
    np.testing.assert_array_equal(jax.vmap(lambda a, b: _unpool(a, b, (6, 6)))(v, i), u)
    np.testing.assert_array_equal(_unpool(uv, ui, (6, 6)), u[1, 2])
    np.testing.assert_array_equal(_max(x, 2), v)
    np.testing.assert_array_equal(_avg(x, 2).reshape(6, 3, 3, 2), _avg(x.reshape(6, 6, 6, 2), 2))


def test_unpool_size_is_torch_default():
    assert unpool_size((3, 4), 2) == (6, 8)
    assert unpool_size((4, 3), 3, 2, 1) == (7, 5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"padding": "FULL"}, "padding must be"),
        ({"padding": -1}, "non-negative"),
        ({"window": 0}, "window must be"),
        ({"window": 9}, "larger than"),
        ({"window": 2, "padding": 3}, "no input pixel"),
    ],
)
def test_bad_geometry_is_rejected(kwargs, match):
    kwargs = {"window": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        max_pool_with_argmax(jnp.zeros((1, 4, 4, 1)), **kwargs)
