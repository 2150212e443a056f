"""Shapeset-3x2-like generator: point-in-shape tests against matplotlib, areas against closed
forms, the label/shape bookkeeping, the paper's overlap rule, balance and determinism."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.path import Path

from dl.data import shapeset as S

PROPERTY = settings(max_examples=25, deadline=None)


@pytest.fixture(scope="module")
def sample():
    return S.sample(900, seed=3)


def test_classes_are_the_nine_shape_combinations():
    assert len(S.CLASSES) == 9 and len(set(S.CLASS_SHAPES)) == 9
    # 3 singles + 6 unordered pairs with repetition, each stored sorted.
    assert sum(len(c) == 1 for c in S.CLASS_SHAPES) == 3
    assert sum(len(c) == 2 for c in S.CLASS_SHAPES) == math.comb(3 + 1, 2)
    assert all(list(c) == sorted(c) for c in S.CLASS_SHAPES)
    assert S.CLASSES[3] == "triangle+triangle" and S.CLASSES[-1] == "ellipse+ellipse"


def test_shapes_dtypes_and_ranges(sample):
    n = 900
    assert sample["images"].shape == (n, 32, 32) and sample["images"].dtype == np.float32
    assert sample["labels"].shape == (n,) and sample["labels"].dtype == np.int32
    assert sample["masks"].shape == (n, 2, 32, 32)
    assert 0.0 <= sample["images"].min() and sample["images"].max() <= 1.0
    data = S.shapeset(20, seed=0)
    assert data.x.shape == (20, 1024) and data.x.dtype == np.float32 and data.y.shape == (20,)


def test_classes_are_balanced(sample):
    counts = np.bincount(sample["labels"], minlength=9)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 900
    counts = np.bincount(S.sample(31, seed=1)["labels"], minlength=9)
    assert counts.max() - counts.min() <= 1


def test_kinds_match_labels(sample):
    for label, kinds in zip(sample["labels"], sample["kinds"]):
        present = tuple(sorted(int(k) for k in kinds if k >= 0))
        assert present == S.CLASS_SHAPES[label]
    # Pairs of different shapes are painted in both orders.
    kinds = sample["kinds"]
    pair = kinds[(kinds[:, 1] >= 0) & (kinds[:, 0] != kinds[:, 1])]
    assert (pair[:, 0] < pair[:, 1]).any() and (pair[:, 0] > pair[:, 1]).any()


def test_pixels_are_background_or_the_top_shape(sample):
    s = sample
    top = np.where(
        s["masks"][:, 1],
        s["gray"][:, 1, None, None],
        np.where(s["masks"][:, 0], s["gray"][:, 0, None, None], s["background"][:, None, None]),
    )
    np.testing.assert_array_equal(s["images"], top.astype(np.float32))
    present = s["kinds"] >= 0
    assert np.all(np.abs(s["gray"] - s["background"][:, None])[present] >= 0.3 - 1e-12)
    assert np.all(s["masks"][~present] == 0)


def test_coverage_is_sane(sample):
    s = sample
    covered = (s["images"] != s["background"][:, None, None].astype(np.float32)).mean(axis=(1, 2))
    assert covered.min() > 0.01 and covered.max() < 0.8
    two = s["kinds"][:, 1] >= 0
    assert covered[two].mean() > covered[~two].mean()  # two shapes cover more than one


def test_second_shape_covers_at_most_half_of_either(sample):
    s = sample
    two = s["kinds"][:, 1] >= 0
    m1, m2 = s["masks"][two, 0], s["masks"][two, 1]
    overlap = (m1 & m2).sum(axis=(1, 2))
    assert np.all(overlap <= 0.5 * m1.sum(axis=(1, 2)))
    assert np.all(overlap <= 0.5 * m2.sum(axis=(1, 2)))
    # ...and both stay visible in the image: the first shape keeps >= half of its pixels.
    visible1 = (m1 & ~m2).sum(axis=(1, 2))
    assert np.all(visible1 >= 0.5 * m1.sum(axis=(1, 2)))


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_single_shape_pixel_count_matches_the_exact_area(kind):
    """The pixels differing from the background (counted from the image alone) estimate the
    continuous shape's area (shoelace for polygons, pi a b for ellipses): unbiased on average
    and within boundary-sampling error one by one."""
    s = S.sample(1800, seed=11)
    one = (s["kinds"][:, 1] < 0) & (s["kinds"][:, 0] == kind)
    assert one.sum() == 200
    bg = s["background"][one, None, None].astype(np.float32)
    count = (s["images"][one] != bg).sum(axis=(1, 2))
    area = s["areas"][one, 0]
    assert abs(np.mean(count / area) - 1.0) < 0.02
    assert np.all(np.abs(count - area) <= 0.15 * area + 3.0)
    assert area.min() > 10.0 and area.max() < 0.5 * 32 * 32


def test_deterministic_by_seed():
    a, b = S.sample(50, seed=[4, 2]), S.sample(50, seed=[4, 2])
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    c = S.sample(50, seed=[4, 3])
    assert not np.array_equal(a["images"], c["images"])
    splits = S.shapeset_splits(n_train=30, n_val=20, n_test=10, seed=5)
    assert [len(splits[k].y) for k in ("train", "val", "test")] == [30, 20, 10]
    np.testing.assert_array_equal(splits["val"].x, S.shapeset(20, seed=[5, 1]).x)
    assert not np.array_equal(splits["train"].x[:10], splits["test"].x)


@PROPERTY
@given(seed=st.integers(0, 2**31), n_vertices=st.sampled_from([3, 4, 6]), clockwise=st.booleans())
def test_convex_polygon_mask_matches_matplotlib(seed, n_vertices, clockwise):
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n_vertices))
    if clockwise:
        angles = angles[::-1]
    centre, radius = rng.uniform(8, 24, 2), rng.uniform(3, 8)
    v = centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    mask = S.convex_polygon_mask(v[None], 32)[0]
    p = S.pixel_centres(32)
    want = Path(np.concatenate([v, v[:1]]), closed=True).contains_points(p)
    # Points within float rounding of an edge may go either way in either implementation.
    edges = np.roll(v, -1, axis=0) - v
    rel = p[:, None] - v[None]
    cross = edges[None, :, 0] * rel[..., 1] - edges[None, :, 1] * rel[..., 0]
    dist = np.abs(cross) / np.linalg.norm(edges, axis=1)
    clear = dist.min(axis=1) > 1e-3
    np.testing.assert_array_equal(mask.ravel()[clear], want[clear])


@PROPERTY
@given(seed=st.integers(0, 2**31))
def test_ellipse_mask_matches_matplotlib(seed):
    rng = np.random.default_rng(seed)
    centre, angle = rng.uniform(10, 22, 2), rng.uniform(0, np.pi)
    a, b = rng.uniform(3, 9), rng.uniform(2, 9)
    mask = S.ellipse_mask(centre[None], np.array([[a, b]]), np.array([angle]), 32)[0]
    # The parametric ellipse c + R(angle) (a cos t, b sin t) as a 4000-gon (inscribed: within
    # 1e-6 of the curve, relative), tested by matplotlib's point-in-polygon.
    t = np.linspace(0, 2 * np.pi, 4000, endpoint=False)
    c, s = np.cos(angle), np.sin(angle)
    u, v = a * np.cos(t), b * np.sin(t)
    poly = centre + np.stack([c * u - s * v, s * u + c * v], axis=1)
    p = S.pixel_centres(32)
    want = Path(np.concatenate([poly, poly[:1]]), closed=True).contains_points(p)
    d = p - centre
    q = ((c * d[:, 0] + s * d[:, 1]) / a) ** 2 + ((-s * d[:, 0] + c * d[:, 1]) / b) ** 2
    clear = np.abs(np.sqrt(q) - 1.0) > 1e-3  # away from the boundary
    np.testing.assert_array_equal(mask.ravel()[clear], want[clear])


def test_polygon_area_is_the_shoelace_formula():
    square = np.array([[[0.0, 0.0], [2.0, 0.0], [2.0, 3.0], [0.0, 3.0]]])
    np.testing.assert_allclose(S.polygon_area(square), [6.0])
    np.testing.assert_allclose(S.polygon_area(square[:, ::-1]), [6.0])  # orientation-free
    tri = np.array([[[1.0, 1.0], [4.0, 1.0], [1.0, 5.0]]])
    np.testing.assert_allclose(S.polygon_area(tri), [6.0])


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        S.sample(0)
    with pytest.raises(ValueError):
        S.sample(10, r_min=0.4, r_max=0.3)
    with pytest.raises(ValueError):
        S.sample(10, contrast=0.5)
