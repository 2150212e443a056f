"""Synthetic generators: the stated geometry holds, and equal seeds give equal arrays; the
closed-form targets (tent map, sawtooth) against their triangle-wave formula."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dl.data import load, sawtooth, separable, tent, two_spirals, xor

PROPERTY = settings(max_examples=40, deadline=None)
F32_RTOL = 1e-6  # the guarantees hold in float64 before the cast to float32


@PROPERTY
@given(
    n=st.integers(1, 300),
    dim=st.integers(1, 30),
    radius=st.floats(0.1, 10.0),
    margin_frac=st.floats(1e-3, 1.0),
    seed=st.integers(0, 2**31),
)
def test_separable_has_the_stated_margin_radius_and_separator(n, dim, radius, margin_frac, seed):
    margin = margin_frac * radius
    data, w = separable(n, dim=dim, margin=margin, radius=radius, seed=seed)
    assert data.x.shape == (n, dim) and data.x.dtype == np.float32
    assert data.y.shape == (n,) and data.y.dtype == np.int32 and w.dtype == np.float32
    assert set(np.unique(data.y)) <= {-1, 1}
    assert np.sum(data.y == 1) == (n + 1) // 2  # balanced classes
    x, w64 = data.x.astype(np.float64), w.astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(w64), 1.0, rtol=F32_RTOL)
    assert np.all(np.linalg.norm(x, axis=1) <= radius * (1 + F32_RTOL))
    functional_margin = data.y * (x @ w64)
    assert np.all(functional_margin >= margin * (1 - F32_RTOL) - 1e-7 * radius)
    # w*'s margin on the sample is exactly the requested one (up to float32 rounding).
    np.testing.assert_allclose(functional_margin.min(), margin, rtol=1e-5, atol=1e-6 * radius)


@pytest.mark.parametrize("dim, margin", [(2, 0.1), (10, 0.05), (50, 0.2)])
def test_perceptron_mistakes_obey_novikoffs_bound(dim, margin):
    """The data meets the perceptron convergence theorem's hypotheses: mistakes <= (R/gamma)^2."""
    data, _ = separable(400, dim=dim, margin=margin, radius=1.0, seed=dim)
    x, y = data.x.astype(np.float64), data.y
    w, mistakes = np.zeros(dim), 0
    for _ in range(10_000):  # epochs; the bound guarantees an error-free pass long before this
        errors = 0
        for xi, yi in zip(x, y):
            if yi * (w @ xi) <= 0:
                w += yi * xi
                errors += 1
        mistakes += errors
        if errors == 0:
            break
    assert errors == 0
    assert mistakes <= (1.0 / margin) ** 2


def test_separable_one_dimension_is_two_rays():
    data, w = separable(50, dim=1, margin=0.3, radius=1.0, seed=1)
    assert abs(float(w[0])) == 1.0
    proj = data.y * data.x[:, 0] * w[0]
    assert np.all((proj >= 0.3 - 1e-7) & (proj <= 1.0))


@pytest.mark.parametrize("kwargs", [{"margin": 0.0}, {"margin": 2.0, "radius": 1.0}, {"dim": 0}])
def test_separable_rejects_impossible_geometry(kwargs):
    with pytest.raises(ValueError):
        separable(5, **kwargs)


def test_xor_without_noise_is_the_truth_table():
    data = xor(400, noise=0.0, seed=0)
    assert data.x.dtype == np.float32 and data.y.dtype == np.int32
    assert set(map(tuple, data.x.tolist())) == {(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)}
    np.testing.assert_array_equal(data.y, (data.x[:, 0] * data.x[:, 1] < 0).astype(np.int32))
    _, counts = np.unique(data.x, axis=0, return_counts=True)
    np.testing.assert_array_equal(counts, [100, 100, 100, 100])


def test_xor_clusters_have_the_stated_spread():
    noise = 0.2
    data = xor(8000, noise=noise, seed=3)
    centres = np.sign(data.x)  # correct for all but ~1e-6 of points at noise 0.2
    np.testing.assert_array_equal(data.y, (centres[:, 0] != centres[:, 1]).astype(np.int32))
    residual = (data.x - centres).astype(np.float64)
    # Sample std of 16000 N(0, 0.2^2) draws: standard error about 0.2 / sqrt(32000) ~ 0.0011.
    assert abs(residual.std() - noise) < 0.006
    assert np.all(np.abs(residual.mean(axis=0)) < 0.01)


def test_two_spirals_default_is_the_1988_benchmark():
    """Lang & Witbrock's generator, written out point by point from the paper's formula."""
    expected_x, expected_y = [], []
    for i in range(97):
        angle = i * math.pi / 16.0
        r = 6.5 * (104 - i) / 104.0
        expected_x.append((r * math.sin(angle), r * math.cos(angle)))
        expected_y.append(0)
    for i in range(97):
        angle = i * math.pi / 16.0
        r = 6.5 * (104 - i) / 104.0
        expected_x.append((-r * math.sin(angle), -r * math.cos(angle)))
        expected_y.append(1)
    data = two_spirals()
    assert data.x.dtype == np.float32 and data.y.dtype == np.int32
    np.testing.assert_allclose(data.x, np.array(expected_x), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(data.y, expected_y)


def test_two_spirals_geometry_for_other_sizes():
    data = two_spirals(301, turns=2.0)
    assert data.x.shape == (301, 2) and np.sum(data.y == 0) == 151 and np.sum(data.y == 1) == 150
    r = np.linalg.norm(data.x.astype(np.float64), axis=1)
    np.testing.assert_allclose([r.max(), r[150]], [6.5, 0.5], rtol=1e-6)
    # Spiral 1 is spiral 0 rotated by pi on the same grid.
    np.testing.assert_allclose(data.x[151:], -data.x[:150], rtol=1e-6)
    # The winding angle of spiral 0 grows by 2 pi * turns over the arm.
    angle = np.unwrap(np.arctan2(data.x[:151, 0], data.x[:151, 1]).astype(np.float64))
    np.testing.assert_allclose(angle[-1] - angle[0], 2 * np.pi * 2.0, rtol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: separable(64, dim=5, seed=seed)[0],
        lambda seed: xor(64, seed=seed),
        lambda seed: two_spirals(64, noise=0.3, seed=seed),
    ],
)
def test_generators_are_deterministic_in_the_seed(make):
    a, b, c = make(7), make(7), make(8)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


def test_noise_free_spirals_ignore_the_seed():
    np.testing.assert_array_equal(two_spirals(seed=0).x, two_spirals(seed=5).x)


@pytest.mark.parametrize("name, kwargs", [("xor", {}), ("two_spirals", {"noise": 0.2})])
def test_registered_splits_are_independent_draws(name, kwargs):
    splits = load(name, n_train=40, n_val=40, n_test=40, seed=1, **kwargs)
    assert set(splits) == {"train", "val", "test"}
    assert not np.array_equal(splits["train"].x, splits["val"].x)
    assert not np.array_equal(splits["val"].x, splits["test"].x)
    again = load(name, n_train=40, n_val=40, n_test=40, seed=1, **kwargs)
    for key in splits:
        np.testing.assert_array_equal(splits[key].x, again[key].x)


def _triangle_wave(x, k):
    # t^k(x) = 1 - |2 frac(2^(k-1) x) - 1|: the tent map doubles the frequency of a triangle wave.
    return 1.0 - np.abs(2.0 * np.mod(2.0 ** (k - 1) * x, 1.0) - 1.0)


@PROPERTY
@given(st.lists(st.floats(0.0, 1.0, width=32), min_size=1, max_size=20), st.integers(1, 8))
def test_sawtooth_is_the_triangle_wave(xs, k):
    x = np.asarray(xs, np.float32)
    ours = np.asarray(sawtooth(jnp.asarray(x), k))
    assert ours.dtype == np.float32
    # Each composition can double a float32 rounding error.
    np.testing.assert_allclose(ours, _triangle_wave(x.astype(np.float64), k), atol=2.0**k * 1e-7)
    np.testing.assert_array_equal(np.asarray(sawtooth(jnp.asarray(x), 1)), tent(jnp.asarray(x)))


def test_sawtooth_keeps_float64_under_x64():
    with jax.enable_x64(True):
        x = np.random.default_rng(0).uniform(0.0, 1.0, 100)
        ours = sawtooth(jnp.asarray(x), 6)
        assert ours.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(ours), _triangle_wave(x, 6), atol=1e-12)
