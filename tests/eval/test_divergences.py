"""Jensen-Shannon divergence and squared error against scipy and closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import jensenshannon as scipy_js_distance
from scipy.special import rel_entr

from dl.eval.divergences import jensen_shannon, squared_error

PROPERTY = settings(max_examples=40, deadline=None)


def _simplex_rows(draw_weights):
    """Rows with many exact zeros (sparse, like sparsemax outputs), renormalised to sum to 1."""
    w = np.asarray(draw_weights, np.float64)
    w[np.arange(w.shape[0]), np.argmax(w, axis=1)] += 1.0  # at least one positive entry per row
    return w / w.sum(axis=1, keepdims=True)


# No float64 subnormals: scipy, the reference, forms m = (p + q) / 2, which underflows to 0 for
# q_k = 5e-324 and makes its answer inf (CI drew exactly that). Our float32 subnormal case, which
# is the one that matters for sigmoid/softmax outputs, is tested on its own below.
WEIGHTS = hnp.arrays(
    np.float64,
    (5, 7),
    elements=st.one_of(
        st.just(0.0),
        st.floats(0.0, 1.0, allow_subnormal=False),
        st.sampled_from([1e-30, 1e-8, 1e4]),
    ),
)


@PROPERTY
@given(wp=WEIGHTS, wq=WEIGHTS)
def test_matches_scipy_squared_distance(wp, wq):
    # scipy returns the Jensen-Shannon *distance*, the square root of the divergence.
    p, q = _simplex_rows(wp), _simplex_rows(wq)
    ours = np.asarray(jensen_shannon(p=jnp.asarray(p, jnp.float32), q=jnp.asarray(q, jnp.float32)))
    ref = scipy_js_distance(p, q, axis=1) ** 2
    np.testing.assert_allclose(ours, ref, atol=2e-6)
    ours2 = np.asarray(
        jensen_shannon(p=jnp.asarray(p, jnp.float32), q=jnp.asarray(q, jnp.float32), base=2.0)
    )
    np.testing.assert_allclose(ours2, scipy_js_distance(p, q, base=2.0, axis=1) ** 2, atol=3e-6)
    assert np.all(ours >= -1e-7) and np.all(ours <= math.log(2) + 1e-6)


def test_definition_with_scipy_rel_entr_and_float64_precision():
    # 1/2 KL(p||m) + 1/2 KL(q||m) with scipy's rel_entr (which has 0 log 0 = 0), in float64.
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        p = rng.dirichlet(np.full(6, 0.3), size=20)
        q = rng.dirichlet(np.full(6, 0.3), size=20)
        p[:, 0] = 0.0
        p /= p.sum(1, keepdims=True)
        m = 0.5 * (p + q)
        ref = 0.5 * rel_entr(p, m).sum(1) + 0.5 * rel_entr(q, m).sum(1)
        ours = jensen_shannon(p=jnp.asarray(p), q=jnp.asarray(q))
        assert ours.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-12, atol=1e-15)


def test_closed_forms_and_axis():
    one_hot = jnp.eye(4, dtype=jnp.float32)
    # Disjoint supports: log 2 nats, 1 bit; equal vectors: exactly 0 (also with zeros).
    np.testing.assert_allclose(jensen_shannon(p=one_hot[0], q=one_hot[1]), math.log(2), rtol=1e-6)
    np.testing.assert_allclose(jensen_shannon(p=one_hot[0], q=one_hot[1], base=2), 1.0, rtol=1e-6)
    assert float(jensen_shannon(p=one_hot[2], q=one_hot[2])) == 0.0
    # p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4);
    # JS = 1/2 log(4/3) + 1/2 [1/2 log(2/3) + 1/2 log 2].
    closed = 0.5 * math.log(4 / 3) + 0.25 * (math.log(2 / 3) + math.log(2))
    got = jensen_shannon(p=jnp.array([1.0, 0.0]), q=jnp.array([0.5, 0.5]))
    np.testing.assert_allclose(got, closed, rtol=1e-6)
    # axis=0 on the transpose equals axis=-1; symmetric in (p, q).
    rng = np.random.default_rng(1)
    p = jnp.asarray(rng.dirichlet(np.ones(5), size=3), jnp.float32)
    q = jnp.asarray(rng.dirichlet(np.ones(5), size=3), jnp.float32)
    np.testing.assert_allclose(
        jensen_shannon(p=p.T, q=q.T, axis=0), jensen_shannon(p=p, q=q), rtol=1e-6
    )
    np.testing.assert_array_equal(jensen_shannon(p=p, q=q), jensen_shannon(p=q, q=p))
    with pytest.raises(ValueError, match="same shape"):
        jensen_shannon(p=p, q=q[:, :4])


def test_subnormal_probabilities_stay_finite():
    # p_0 = 1e-45 (the smallest float32 subnormal) against q_0 = 0: m_0 = p_0 / 2 underflows to 0
    # in float32, yet the term p_0 log(2 p_0 / (p_0 + q_0)) = p_0 log 2 is ~1e-45.
    tiny = float(np.nextafter(np.float32(0), np.float32(1)))
    p = jnp.array([tiny, 0.5, 0.5 - tiny], jnp.float32)
    q = jnp.array([0.0, 0.5, 0.5], jnp.float32)
    assert float(jnp.float32(0.5) * p[0]) == 0.0  # the underflow this guards against
    value = jensen_shannon(p=p, q=q)
    assert np.isfinite(float(value)) and 0.0 <= float(value) < 1e-6
    assert np.all(np.isfinite(np.asarray(jax.grad(lambda a: jensen_shannon(p=a, q=q))(p))))


def test_gradient_finite_at_zeros_and_matches_finite_differences():
    p = jnp.array([0.0, 0.3, 0.7, 0.0], jnp.float32)
    q = jnp.array([0.5, 0.0, 0.5, 0.0], jnp.float32)
    g = jax.grad(lambda a: jensen_shannon(p=a, q=q))(p)
    assert np.all(np.isfinite(np.asarray(g)))
    # Where p_k > 0: d JS / d p_k = 1/2 log(p_k / m_k) (the other terms cancel), in closed form.
    m = 0.5 * (np.asarray(p, np.float64) + np.asarray(q, np.float64))
    for k in (1, 2):
        np.testing.assert_allclose(g[k], 0.5 * math.log(p[k] / m[k]), rtol=1e-5)
    # Central differences on an interior direction (keeps both supports; float64 for accuracy).
    with jax.enable_x64(True):
        a = jnp.array([0.2, 0.3, 0.5], jnp.float64)
        b = jnp.array([0.6, 0.1, 0.3], jnp.float64)
        f = lambda v: jensen_shannon(p=v, q=b)
        v = jnp.array([1.0, -2.0, 0.5], jnp.float64)
        h = 1e-6
        fd = (f(a + h * v) - f(a - h * v)) / (2 * h)
        np.testing.assert_allclose(jnp.dot(jax.grad(f)(a), v), fd, rtol=1e-7)


def test_squared_error_against_numpy():
    rng = np.random.default_rng(2)
    p, q = rng.normal(size=(2, 3, 6)).astype(np.float32)
    np.testing.assert_allclose(
        squared_error(p=jnp.asarray(p), q=jnp.asarray(q)),
        np.sum((p.astype(np.float64) - q) ** 2, axis=-1),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        squared_error(p=jnp.asarray(p), q=jnp.asarray(q), axis=0),
        np.sum((p.astype(np.float64) - q) ** 2, axis=0),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="same shape"):
        squared_error(p=jnp.asarray(p), q=jnp.asarray(q[:, :2]))
