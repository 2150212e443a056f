"""dl.data.scenes: labels agree with pixels, digit counts, determinism, split disjointness."""

import numpy as np
import pytest

from dl.data.pipeline import ArrayData
from dl.data.scenes import DIGIT, NUM_CLASSES, load_scenes, make_scenes


def _digits(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (n, DIGIT, DIGIT)).astype(np.float32)
    x[:, :3] = 0.0  # a blank rim, as MNIST's
    return x, rng.integers(0, 10, n)


def test_labels_agree_with_pixels_and_sources():
    images, labels = _digits(50, 0)
    scenes, sources, corners = make_scenes(images, labels, 40, seed=1, num_digits=(2, 3))
    assert scenes.x.shape == (40, 64, 84, 1) and scenes.x.dtype == np.float32
    assert scenes.y.shape == (40, 64, 84) and scenes.y.dtype == np.int32
    assert scenes.y.min() >= 0 and scenes.y.max() < NUM_CLASSES
    for s in range(40):
        expect_x = np.zeros((64, 84), np.float32)
        expect_y = np.zeros((64, 84), np.int32)
        for i, (r, c) in zip(sources[s], corners[s]):
            if i < 0:
                continue
            expect_x[r : r + DIGIT, c : c + DIGIT] = images[i]
            expect_y[r : r + DIGIT, c : c + DIGIT] = np.where(images[i] > 0.5, labels[i] + 1, 0)
        np.testing.assert_array_equal(scenes.x[s, ..., 0], expect_x)
        np.testing.assert_array_equal(scenes.y[s], expect_y)
    # Labels agree with intensities: digit pixels are bright, and every bright pixel is a digit.
    bright = scenes.x[..., 0] > 0.5
    np.testing.assert_array_equal(scenes.y > 0, bright)


def test_digit_counts_and_no_overlap():
    images, labels = _digits(30, 2)
    _, sources, corners = make_scenes(images, labels, 200, seed=3, num_digits=(2, 3))
    counts = (sources >= 0).sum(1)
    assert set(counts.tolist()) == {2, 3}
    for s in range(200):
        boxes = corners[s][sources[s] >= 0]
        assert len(set(sources[s][sources[s] >= 0].tolist())) == len(boxes)  # distinct digits
        assert np.all(boxes >= 0) and np.all(boxes[:, 0] <= 64 - DIGIT)
        assert np.all(boxes[:, 1] <= 84 - DIGIT)
        for a in range(len(boxes)):
            for b in range(a):
                dr, dc = np.abs(boxes[a] - boxes[b])
                assert dr >= DIGIT or dc >= DIGIT


def test_deterministic_given_seed():
    images, labels = _digits(30, 4)
    a, sa, _ = make_scenes(images, labels, 10, seed=5)
    b, sb, _ = make_scenes(images, labels, 10, seed=5)
    c, _, _ = make_scenes(images, labels, 10, seed=6)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(sa, sb)
    assert not np.array_equal(a.x, c.x)


def test_splits_draw_from_their_own_digits():
    # Each split's digit pool has its own intensity, so a scene's pixels name the pool they
    # came from.
    level = {"train": 0.6, "val": 0.7, "test": 0.8}
    pools = {}
    for k, (name, v) in enumerate(level.items()):
        x = np.zeros((20, DIGIT, DIGIT, 1), np.float32)
        x[:, 5:20, 8:18] = v
        pools[name] = ArrayData(x, np.full(20, k, np.int64))
    scenes = load_scenes(pools, {"train": 30, "val": 10, "test": 10}, seed=0)
    for k, (name, v) in enumerate(level.items()):
        assert set(np.unique(scenes[name].x).tolist()) == {0.0, np.float32(v)}
        assert set(np.unique(scenes[name].y).tolist()) == {0, k + 1}
    again = load_scenes(pools, {"train": 30, "val": 10, "test": 10}, seed=0)
    np.testing.assert_array_equal(again["test"].x, scenes["test"].x)
    assert not np.array_equal(scenes["val"].y, scenes["test"].y)


def test_rejects_a_canvas_too_small():
    images, labels = _digits(5, 0)
    with pytest.raises(ValueError, match="smaller"):
        make_scenes(images, labels, 1, seed=0, height=20, width=84)
    with pytest.raises(ValueError, match="fit"):
        make_scenes(images, labels, 1, seed=0, height=40, width=84, num_digits=(4,))
