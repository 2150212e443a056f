"""Sparsemax and its loss against references written here: the sort-based threshold of the
paper in float64 NumPy, a bisection for the same threshold, eq. 18 taken literally, the
closed-form Jacobian, and central finite differences. Every test runs for both ways of finding
the threshold (`method`: the sort and the sort-free fixed point), and the two must agree."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dl.ops.gradcheck import assert_gradcheck
from dl.ops.sparsemax import (
    FIXED_POINT_MAX_K,
    FIXED_POINT_MAX_PASSES,
    _fixed_point_iterate,
    sparsemax,
    sparsemax_loss,
    sparsemax_threshold,
)

EPS32 = float(np.finfo(np.float32).eps)
METHODS = ("sort", "fixed_point")
each_method = pytest.mark.parametrize("method", METHODS)


# ------------------------------------------------------------------------------ references


def ref_sparsemax_1d(z):
    """Sort-based projection onto the simplex in float64: returns (p, tau)."""
    z = np.asarray(z, np.float64)
    z_sorted = np.sort(z)[::-1]
    cumsum = np.cumsum(z_sorted)
    k = np.arange(1, z.size + 1)
    k_z = k[1 + k * z_sorted > cumsum].max()
    tau = (cumsum[k_z - 1] - 1) / k_z
    return np.maximum(z - tau, 0.0), tau


def ref_sparsemax(z, axis=-1):
    return np.apply_along_axis(lambda row: ref_sparsemax_1d(row)[0], axis, np.asarray(z))


def bisection_tau(z, iters=200):
    """tau with sum(max(z - tau, 0)) = 1, found without sorting; float64, one row."""
    z = np.asarray(z, np.float64)
    lo, hi = z.max() - 1.0, z.max()  # the sum is >= 1 at lo and 0 at hi
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.maximum(z - mid, 0).sum() >= 1.0 else (lo, mid)
    return 0.5 * (lo + hi)


def ref_loss_eq18(z, q):
    """Eq. 18 of Martins & Astudillo (2016) written literally, float64, one row."""
    z, q = np.asarray(z, np.float64), np.asarray(q, np.float64)
    p, tau = ref_sparsemax_1d(z)
    support = p > 0
    return -z @ q + 0.5 * np.sum(z[support] ** 2 - tau**2) + 0.5 * q @ q


def closed_form_jacobian(p):
    s = (np.asarray(p) > 0).astype(np.float64)
    return np.diag(s) - np.outer(s, s) / s.sum()


def tolerance(z):
    """Absolute float32 error budget for sparsemax: the threshold sums up to K values of size
    at most 1 (the logits within 1 of the maximum, taken relative to it), whatever |z| is."""
    return 8 * z.shape[-1] * EPS32


def tolerance_at_scale(z):
    """The budget for quantities at the scale of the logits themselves (tau, or z + c), which
    float32 rounds at a relative 1e-7 of max|z|."""
    return tolerance(z) + 2 * EPS32 * float(np.max(np.abs(z)))


# Logits with ties (values drawn from a small set) and huge magnitudes.
LOGITS = hnp.arrays(
    np.float32,
    (4, 6),
    elements=st.one_of(
        st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e4, -1e4]),
        st.floats(-1e4, 1e4, width=32),
        st.floats(-3, 3, width=32),
    ),
)
# Jitted once at module level: eager dispatch compiles every primitive per shape, which costs
# more than these tests themselves.
# Keyed by method.
_SPARSEMAX = {
    m: jax.jit(functools.partial(sparsemax, method=m), static_argnames="axis") for m in METHODS
}
_THRESHOLD = {
    m: jax.jit(functools.partial(sparsemax_threshold, method=m), static_argnames="axis")
    for m in METHODS
}
_LOSS = {
    m: jax.jit(functools.partial(sparsemax_loss, method=m), static_argnames="reduce")
    for m in METHODS
}
_PER_EXAMPLE_LOSS = {m: functools.partial(_LOSS[m], reduce=False) for m in METHODS}


# ------------------------------------------------------------------------------- sparsemax


@each_method
@settings(max_examples=50, deadline=None)
@given(LOGITS)
def test_sparsemax_matches_sort_reference_and_lies_on_simplex(method, z):
    p = np.asarray(_SPARSEMAX[method](jnp.asarray(z)))
    assert p.dtype == np.float32 and p.shape == z.shape
    assert np.all(np.isfinite(p)) and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=0, atol=1e-5)
    np.testing.assert_allclose(p, ref_sparsemax(z), rtol=0, atol=tolerance(z))


@each_method
@settings(max_examples=50, deadline=None)
@given(LOGITS)
def test_threshold_matches_bisection(method, z):
    tau = np.asarray(_THRESHOLD[method](jnp.asarray(z)))
    assert tau.shape == (4,)
    expected = [bisection_tau(row) for row in z]
    np.testing.assert_allclose(tau, expected, rtol=0, atol=tolerance_at_scale(z))


@each_method
@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(np.float32, (3, 5), elements=st.floats(-10, 10, width=32)),
    st.floats(-1e3, 1e3, width=32),
)
def test_sparsemax_is_shift_invariant(method, z, c):
    shifted = (z + np.float32(c)).astype(np.float32)
    p_shifted, p = _SPARSEMAX[method](jnp.asarray(shifted)), _SPARSEMAX[method](jnp.asarray(z))
    np.testing.assert_allclose(p_shifted, p, rtol=0, atol=tolerance_at_scale(shifted))


@each_method
def test_sparsemax_is_the_closest_point_of_the_simplex(method):
    # Euclidean projection: no other probability vector is closer to z.
    rng = np.random.default_rng(0)
    z = rng.normal(scale=2.0, size=(8, 5)).astype(np.float32)
    p = np.asarray(_SPARSEMAX[method](jnp.asarray(z)), np.float64)
    others = rng.dirichlet(np.full(5, 0.3), size=(200, 8))
    dist_p = np.linalg.norm(p - z, axis=-1)
    dist_others = np.linalg.norm(others - z, axis=-1)
    assert np.all(dist_p <= dist_others.min(axis=0) + 1e-6)


@each_method
@pytest.mark.parametrize(
    "z, expected",
    [
        ([2.0, 2.0, 2.0, 2.0], [0.25, 0.25, 0.25, 0.25]),  # all equal: uniform
        ([3.0, 3.0, 1.0], [0.5, 0.5, 0.0]),  # tied maxima share the mass
        ([1.0, 1.0, 1.0, -5.0], [1 / 3, 1 / 3, 1 / 3, 0.0]),
        ([0.9, 0.5, 0.3], [2 / 3, 4 / 15, 1 / 15]),  # hand-solved: tau = 7/30
        ([1e4, -1e4, 0.0], [1.0, 0.0, 0.0]),
        ([1e4, 1e4 - 0.5, -1e4], [0.75, 0.25, 0.0]),
        ([-1e4, -1e4, -1e4], [1 / 3, 1 / 3, 1 / 3]),
    ],
)
def test_sparsemax_known_values_ties_and_huge_logits(method, z, expected):
    np.testing.assert_allclose(_SPARSEMAX[method](jnp.asarray(z, jnp.float32)), expected, atol=2e-7)


@each_method
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
def test_sparsemax_on_any_axis_of_3d_input(method, axis):
    z = np.random.default_rng(1).normal(scale=2.0, size=(3, 4, 5)).astype(np.float32)
    p = _SPARSEMAX[method](jnp.asarray(z), axis=axis)
    np.testing.assert_allclose(p, ref_sparsemax(z, axis=axis), atol=1e-6)
    np.testing.assert_allclose(jnp.sum(p, axis=axis), 1.0, atol=1e-6)
    tau = _THRESHOLD[method](jnp.asarray(z), axis=axis)
    assert tau.shape == tuple(np.delete(np.array(z.shape), axis))


@each_method
def test_sparsemax_under_vmap_and_jit_equals_batched_call(method):
    z = jnp.asarray(np.random.default_rng(2).normal(size=(6, 5)).astype(np.float32))
    batched = _SPARSEMAX[method](z)
    np.testing.assert_allclose(
        jax.jit(jax.vmap(functools.partial(sparsemax, method=method)))(z), batched, atol=1e-7
    )
    # vmap over the second axis of the transpose, and axis=0 of it: the same rows.
    np.testing.assert_allclose(jax.jit(jax.vmap(sparsemax, in_axes=1))(z.T), batched, atol=1e-7)
    np.testing.assert_allclose(_SPARSEMAX[method](z.T, axis=0).T, batched, atol=1e-7)
    np.testing.assert_allclose(sparsemax(z, method=method), batched, atol=1e-7)  # eager


@each_method
def test_float64_matches_reference_to_rounding(method):
    z = np.random.default_rng(3).normal(scale=3.0, size=(5, 7))
    with jax.enable_x64(True):
        p = np.asarray(_SPARSEMAX[method](jnp.asarray(z, jnp.float64)))
        tau = np.asarray(_THRESHOLD[method](jnp.asarray(z, jnp.float64)))
    assert p.dtype == np.float64
    np.testing.assert_allclose(p, ref_sparsemax(z), rtol=0, atol=1e-14)
    np.testing.assert_allclose(tau, [ref_sparsemax_1d(row)[1] for row in z], rtol=0, atol=1e-14)


@each_method
def test_integer_logits_are_rejected(method):
    with pytest.raises(TypeError, match="floating"):
        sparsemax(jnp.arange(3), method=method)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown sparsemax method"):
        sparsemax(jnp.zeros(3), method="bisect")


# Wide rows too (K up to 300, past FIXED_POINT_MAX_K), with ties and huge values.
WIDE_LOGITS = st.integers(1, 300).flatmap(
    lambda k: hnp.arrays(
        np.float32,
        (3, k),
        elements=st.one_of(
            st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e4, -1e4]),
            st.floats(-1e4, 1e4, width=32),
            st.floats(-3, 3, width=32),
        ),
    )
)


@settings(max_examples=50, deadline=None)
@given(WIDE_LOGITS)
def test_fixed_point_and_sort_agree(z):
    # The two methods find the same support, so they agree up to the order of float32 sums.
    p = {m: np.asarray(_SPARSEMAX[m](jnp.asarray(z))) for m in METHODS}
    np.testing.assert_allclose(p["fixed_point"], p["sort"], rtol=0, atol=tolerance(z))
    np.testing.assert_array_equal(p["fixed_point"] > 0, p["sort"] > 0)  # the same support
    tau = {m: np.asarray(_THRESHOLD[m](jnp.asarray(z))) for m in METHODS}
    np.testing.assert_allclose(tau["fixed_point"], tau["sort"], rtol=0, atol=tolerance_at_scale(z))
    q = np.asarray(_SPARSEMAX["sort"](jnp.asarray(z[::-1])))  # any simplex targets
    loss = {m: np.asarray(_PER_EXAMPLE_LOSS[m](logits=jnp.asarray(z), targets=q)) for m in METHODS}
    np.testing.assert_allclose(loss["fixed_point"], loss["sort"], rtol=1e-5, atol=tolerance(z))


def test_auto_is_the_fixed_point_up_to_its_width():
    # "auto" gives exactly what the fixed point gives there: the same computation.
    z = jnp.asarray(np.random.default_rng(14).normal(size=(4, FIXED_POINT_MAX_K)), jnp.float32)
    np.testing.assert_array_equal(jax.jit(sparsemax)(z), _SPARSEMAX["fixed_point"](z))


_AUTO = jax.jit(sparsemax)
_AUTO_THRESHOLD = jax.jit(sparsemax_threshold)


def _assert_auto_equals_sort(z):
    p, p_sort = np.asarray(_AUTO(jnp.asarray(z))), np.asarray(_SPARSEMAX["sort"](jnp.asarray(z)))
    np.testing.assert_array_equal(p > 0, p_sort > 0)  # the same support
    np.testing.assert_allclose(p, p_sort, rtol=0, atol=tolerance(z))
    tau = np.asarray(_AUTO_THRESHOLD(jnp.asarray(z)))
    tau_sort = np.asarray(_THRESHOLD["sort"](jnp.asarray(z)))
    np.testing.assert_allclose(tau, tau_sort, rtol=0, atol=tolerance_at_scale(z))


@pytest.mark.parametrize("k", [5, 50, 300, 1000])
def test_auto_equals_sort_on_random_inputs(k):
    rng = np.random.default_rng(k)
    for scale in (0.1, 2.0, 100.0):
        z = rng.normal(scale=scale, size=(8, k)).astype(np.float32)
        z[0, : k // 2] = z[0, 0]  # ties
        _assert_auto_equals_sort(z)


def fixed_point_passes(z):
    """Threshold evaluations Michelot's iteration makes on the row z until it repeats itself,
    counted in z's dtype the way `_fixed_point_iterate` does."""
    z = z - z.max()
    one = z.dtype.type(1)
    tau, passes = -one, 0
    while True:
        support = z > tau
        new_tau = (z[support].sum(dtype=z.dtype) - one) / z.dtype.type(support.sum())
        passes += 1
        if new_tau == tau:
            return passes
        tau = new_tau


def slow_fixed_point_row(dtype, top=2, ratio=1.3, delta=1e-15, growth=4.0):
    """A row on which the fixed point needs many passes: blocks of equal values below `top`
    zeros, the j-th of about top * ratio^j entries, each placed delta_j below the threshold of
    the blocks above it (delta_j = delta * growth^j). Then each pass drops exactly one block:
    the threshold of blocks 0..j+1 stays above v_(j+1) but below v_j."""
    values, counts = [0.0], [top]
    size, total = top, 0.0
    while True:
        j = len(values)
        v = (total - 1.0) / size - delta * growth ** (j - 1)
        if v <= -1.0:
            break
        c = round(top * ratio**j)
        values.append(v)
        counts.append(c)
        size, total = size + c, total + c * v
    return np.repeat(np.asarray(values, dtype), counts)


def test_auto_falls_back_to_the_sort_on_a_slow_input_and_still_equals_it():
    with jax.enable_x64(True):
        row = slow_fixed_point_row(np.float64)
        passes = fixed_point_passes(row)
        assert row.size > FIXED_POINT_MAX_K and passes > FIXED_POINT_MAX_PASSES, (row.size, passes)
        # The JAX iteration agrees: not converged within the bound, converged with the passes.
        z = np.stack([row, np.random.default_rng(15).permutation(row)])
        zj = jnp.asarray(z - z.max(-1, keepdims=True))
        assert not _fixed_point_iterate(zj, FIXED_POINT_MAX_PASSES)[1]
        assert _fixed_point_iterate(zj, passes)[1]
        # One slow row sends the whole call to the sort; a fast row beside it is unaffected.
        fast = np.random.default_rng(16).normal(scale=2.0, size=row.size)
        z = np.stack([z[0], z[1], fast])
        p = np.asarray(_AUTO(jnp.asarray(z)))
        np.testing.assert_array_equal(p, np.asarray(_SPARSEMAX["sort"](jnp.asarray(z))))
        np.testing.assert_allclose(p, ref_sparsemax(z), rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            _AUTO_THRESHOLD(jnp.asarray(z)), _THRESHOLD["sort"](jnp.asarray(z)), rtol=0, atol=0
        )
    # In float32 the same construction stays within the bound: the fixed point answers.
    row32 = slow_fixed_point_row(np.float32, ratio=1.5, delta=1e-6, growth=2.2)
    assert 15 <= fixed_point_passes(row32) <= FIXED_POINT_MAX_PASSES
    _assert_auto_equals_sort(row32[None])


@pytest.mark.parametrize("k", [50, 1000])
def test_auto_under_jit_vmap_and_grad(k):
    rng = np.random.default_rng(17)
    z = rng.normal(scale=2.0, size=(6, k)).astype(np.float32)
    with jax.enable_x64(True):
        slow = slow_fixed_point_row(np.float64)[:k].astype(np.float32)  # a prefix: still valid
    z[-1] = slow
    w = rng.normal(size=z.shape).astype(np.float32)
    batched = np.asarray(_AUTO(jnp.asarray(z)))
    np.testing.assert_allclose(batched, ref_sparsemax(z), rtol=0, atol=tolerance(z))
    # vmap over rows: the cond's predicate is batched and both branches run; same result.
    np.testing.assert_allclose(jax.jit(jax.vmap(sparsemax))(jnp.asarray(z)), batched, atol=1e-7)
    np.testing.assert_allclose(sparsemax(jnp.asarray(z)), batched, atol=1e-7)  # eager
    # Gradients equal the sort path's (the closed-form rules on the same support).
    for f in (
        lambda m: lambda z: jnp.sum(w * sparsemax(z, method=m)),
        lambda m: lambda z: jnp.sum(w[:, 0] * sparsemax_threshold(z, method=m)),
        lambda m: lambda z: sparsemax_loss(logits=z, targets=jnp.asarray(batched[::-1]), method=m),
    ):
        g = jax.jit(jax.grad(f("auto")))(jnp.asarray(z))
        np.testing.assert_allclose(g, jax.jit(jax.grad(f("sort")))(jnp.asarray(z)), atol=1e-6)
    per_row = jax.vmap(jax.grad(lambda z, w: jnp.sum(w * sparsemax(z))))
    np.testing.assert_allclose(
        jax.jit(per_row)(jnp.asarray(z), jnp.asarray(w)),
        jax.grad(lambda z: jnp.sum(w * sparsemax(z, method="sort")))(jnp.asarray(z)),
        atol=1e-6,
    )


# ----------------------------------------------------------------------------- derivatives


def _points_away_from_the_support_boundary(n, k, seed):
    z = np.random.default_rng(seed).normal(scale=1.5, size=(n, k))
    for row in z:
        _, tau = ref_sparsemax_1d(row)
        assert np.min(np.abs(row - tau)) > 1e-3  # the seed gives clean points; guard it
    return z.astype(np.float32)


@each_method
@pytest.mark.parametrize("jac", [jax.jacfwd, jax.jacrev])
def test_jacobian_is_diag_s_minus_ss_over_support_size(method, jac):
    z = _points_away_from_the_support_boundary(6, 5, seed=4)
    jacobians = jax.jit(jax.vmap(jac(functools.partial(sparsemax, method=method))))(jnp.asarray(z))
    for row, jacobian in zip(z, jacobians):
        expected = closed_form_jacobian(ref_sparsemax_1d(row)[0])
        np.testing.assert_allclose(jacobian, expected, atol=1e-6)


@each_method
@pytest.mark.parametrize(
    "z", [[2.0, 2.0, 2.0], [3.0, 3.0, 1.0], [1e4, 1e4 - 0.5, -1e4], [2.0, 1.0, 0.0]]
)
def test_jacobian_at_ties_boundaries_and_huge_logits(method, z):
    # Tied logits share the Jacobian symmetrically. In [2, 1, 0] the middle entry sits exactly
    # on tau = 1; it counts as outside the support (p = 0), so the Jacobian is 0 there, where
    # autodiff through max(z - tau, 0) would give it half a derivative.
    jacobian = jax.jit(jax.jacfwd(functools.partial(sparsemax, method=method)))(
        jnp.asarray(z, jnp.float32)
    )
    assert np.all(np.isfinite(jacobian))
    np.testing.assert_allclose(jacobian, closed_form_jacobian(ref_sparsemax_1d(z)[0]), atol=1e-6)


@each_method
def test_threshold_gradient_is_support_over_its_size(method):
    z = _points_away_from_the_support_boundary(4, 6, seed=5)
    grads = jax.jit(jax.vmap(jax.grad(functools.partial(sparsemax_threshold, method=method))))(
        jnp.asarray(z)
    )
    for row, g in zip(z, grads):
        s = (ref_sparsemax_1d(row)[0] > 0).astype(np.float64)
        np.testing.assert_allclose(g, s / s.sum(), atol=1e-6)


@each_method
def test_sparsemax_passes_gradcheck_on_any_axis(method):
    z = _points_away_from_the_support_boundary(5, 4, seed=6)
    w = np.random.default_rng(7).normal(size=z.shape).astype(np.float32)
    assert_gradcheck(lambda z, w: jnp.sum(w * sparsemax(z, method=method)), z, w, tol=1e-6)
    # The same rows laid out as columns.
    assert_gradcheck(
        lambda z, w: jnp.sum(w * sparsemax(z, axis=0, method=method)), z.T, w.T, tol=1e-6
    )


# -------------------------------------------------------------------------- sparsemax loss


def _simplex_targets(draw_seed, shape):
    rng = np.random.default_rng(draw_seed)
    q = rng.dirichlet(np.full(shape[-1], 0.5), size=shape[:-1])
    q[rng.random(q.shape) < 0.3] = 0.0  # targets with zeros, like sparsemax outputs
    q[..., 0] += 1e-3  # never an all-zero row
    return (q / q.sum(-1, keepdims=True)).astype(np.float32)


@each_method
@settings(max_examples=50, deadline=None)
@given(LOGITS, st.integers(0, 2**32 - 1))
def test_loss_matches_literal_eq18_and_is_nonnegative(method, z, seed):
    q = _simplex_targets(seed, z.shape)
    loss = np.asarray(_PER_EXAMPLE_LOSS[method](logits=jnp.asarray(z), targets=jnp.asarray(q)))
    assert loss.shape == (4,) and np.all(np.isfinite(loss))
    assert np.all(loss >= 0)
    expected = [ref_loss_eq18(zi, qi) for zi, qi in zip(z, q)]
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=tolerance_at_scale(z))
    # L >= 1/2 ||q - sparsemax(z)||^2, so L = 0 only when q = sparsemax(z).
    p = ref_sparsemax(z)
    assert np.all(loss >= 0.5 * np.sum((q - p) ** 2, -1) * (1 - 1e-5) - tolerance_at_scale(z))


@each_method
@settings(max_examples=30, deadline=None)
@given(LOGITS)
def test_loss_is_zero_at_its_own_sparsemax(method, z):
    q = _SPARSEMAX[method](jnp.asarray(z))
    loss = np.asarray(_PER_EXAMPLE_LOSS[method](logits=jnp.asarray(z), targets=q))
    np.testing.assert_allclose(loss, 0.0, atol=1e-6)
    # and strictly positive at any other target: a one-hot off the support.
    off_support = np.argmin(np.asarray(q), axis=-1)
    has_zero = np.asarray(q).min(-1) == 0
    other = _PER_EXAMPLE_LOSS[method](logits=jnp.asarray(z), targets=jnp.asarray(off_support))
    assert np.all(np.asarray(other)[has_zero] > 0.4)  # >= 1/2 ||e_j - p||^2 >= 1/2


@each_method
def test_loss_gradient_is_sparsemax_minus_targets(method):
    z = np.random.default_rng(8).normal(scale=2.0, size=(5, 6)).astype(np.float32)
    q = _simplex_targets(9, z.shape)
    expected = ref_sparsemax(z) - q
    per_example_sum = jax.grad(lambda z: jnp.sum(_PER_EXAMPLE_LOSS[method](logits=z, targets=q)))
    np.testing.assert_allclose(per_example_sum(jnp.asarray(z)), expected, atol=1e-6)
    mean = jax.grad(lambda z: _LOSS[method](logits=z, targets=q))
    np.testing.assert_allclose(mean(jnp.asarray(z)), expected / 5, atol=1e-6)


@each_method
def test_loss_passes_gradcheck_for_logits_and_targets(method):
    z = np.random.default_rng(10).normal(scale=2.0, size=(4, 5)).astype(np.float32)
    q = _simplex_targets(11, z.shape)
    labels = np.array([0, 3, 1, 4])
    assert_gradcheck(lambda zq: _LOSS[method](logits=zq[0], targets=zq[1]), (z, q), tol=1e-6)
    assert_gradcheck(lambda z, y: _LOSS[method](logits=z, targets=y), z, labels, tol=1e-6)


@each_method
def test_loss_gradcheck_at_ties_on_the_threshold(method):
    # z_1 = tau exactly: the loss is still C^1 there (its gradient p - q is continuous), so the
    # custom rule must agree with finite differences. (The one-sided curvature adds an O(eps)
    # error to the differences, about 1e-7 here.)
    z = np.array([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]], np.float32)
    q = np.array([[0.2, 0.5, 0.3], [0.0, 0.0, 1.0]], np.float32)
    assert_gradcheck(lambda z, q: _LOSS[method](logits=z, targets=q), z, q, tol=1e-6)


@each_method
def test_integer_labels_equal_one_hot_targets(method):
    z = jnp.asarray(np.random.default_rng(12).normal(size=(5, 4)).astype(np.float32))
    labels = jnp.array([0, 3, 1, 1, 2])
    one_hot = np.eye(4, dtype=np.float32)[np.asarray(labels)]
    for reduce in (True, False):
        np.testing.assert_allclose(
            _LOSS[method](logits=z, targets=labels, reduce=reduce),
            _LOSS[method](logits=z, targets=jnp.asarray(one_hot), reduce=reduce),
            atol=1e-7,
        )


@each_method
def test_mask_weights_the_mean_and_zeroes_masked_examples(method):
    z = jnp.asarray(np.random.default_rng(13).normal(size=(5, 4)).astype(np.float32))
    labels = jnp.array([0, 3, 1, 1, 2])
    per_example = np.asarray(_LOSS[method](logits=z, targets=labels, reduce=False))
    mask = np.array([1, 0, 1, 1, 0])
    for m in (mask, mask.astype(bool), mask.astype(np.float32)):
        reduced = _LOSS[method](logits=z, targets=labels, mask=jnp.asarray(m))
        np.testing.assert_allclose(reduced, per_example[mask == 1].mean(), rtol=1e-6)
        unreduced = _LOSS[method](logits=z, targets=labels, mask=jnp.asarray(m), reduce=False)
        np.testing.assert_allclose(unreduced, per_example * mask, rtol=1e-6)
    np.testing.assert_allclose(
        _LOSS[method](logits=z, targets=labels), per_example.mean(), rtol=1e-6
    )
    # A NaN logit in a padded example does not reach the value.
    z_padded = z.at[1, 0].set(jnp.nan)
    reduced = _LOSS[method](logits=z_padded, targets=labels, mask=jnp.asarray(mask))
    np.testing.assert_allclose(reduced, per_example[mask == 1].mean(), rtol=1e-6)
    # No real example: 0, not 0/0; and masked examples get no gradient.
    assert _LOSS[method](logits=z, targets=labels, mask=jnp.zeros(5)) == 0.0
    g = jax.grad(lambda z: _LOSS[method](logits=z, targets=labels, mask=jnp.asarray(mask)))(z)
    assert np.all(np.asarray(g)[mask == 0] == 0) and np.any(np.asarray(g)[mask == 1] != 0)


@each_method
def test_loss_rejects_mismatched_shapes(method):
    z = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match="integer targets"):
        _LOSS[method](logits=z, targets=jnp.zeros((3, 1), jnp.int32))
    with pytest.raises(ValueError, match="probability targets"):
        _LOSS[method](logits=z, targets=jnp.zeros((3, 5)))
    with pytest.raises(ValueError, match="mask shape"):
        _LOSS[method](logits=z, targets=jnp.zeros(3, jnp.int32), mask=jnp.ones(4))


@each_method
def test_loss_with_huge_logits_is_exact_and_has_finite_gradient(method):
    z = jnp.array([[1e4, -1e4, 0.0]], jnp.float32)
    # p = (1, 0, 0), tau = 1e4 - 1: eq. 18 gives 1e4 + (2e4 - 1)/2 + 1/2 = 2e4 for
    # q = e_2 and 0 + (2e4 - 1)/2 + 1/2 = 1e4 for q = e_3.
    np.testing.assert_allclose(_LOSS[method](logits=z, targets=jnp.array([1])), 2e4, rtol=1e-7)
    np.testing.assert_allclose(_LOSS[method](logits=z, targets=jnp.array([2])), 1e4, rtol=1e-7)
    g = jax.grad(lambda z: _LOSS[method](logits=z, targets=jnp.array([1])))(z)
    np.testing.assert_allclose(g, [[1.0, -1.0, 0.0]])
