"""Translated MNIST: exact mass, digit inside the canvas at its offset, determinism."""

import numpy as np
import pytest

from dl.data import ArrayData
from dl.data.translated import paste, translate, translate_offsets, translated_splits


def _digits(n, seed=0):
    rng = np.random.default_rng(seed)
    return ArrayData(rng.random((n, 28, 28, 1), dtype=np.float32), np.arange(n, dtype=np.int32))


def test_mass_position_and_zeros_elsewhere():
    d = _digits(7)
    out = translate(d, canvas=60, seed=3)
    off = translate_offsets(7, canvas=60, seed=3)
    assert out.x.shape == (7, 60, 60, 1) and out.x.dtype == np.float32
    assert ((off >= 0) & (off <= 32)).all()
    mass = lambda a: a.sum(axis=(1, 2, 3), dtype=np.float64)
    np.testing.assert_allclose(mass(out.x), mass(d.x), rtol=1e-12)
    for i, (r, c) in enumerate(off):
        np.testing.assert_array_equal(out.x[i, r : r + 28, c : c + 28], d.x[i])
        rest = out.x[i].copy()
        rest[r : r + 28, c : c + 28] = 0.0
        assert not rest.any()
    np.testing.assert_array_equal(out.y, d.y)


def test_deterministic_and_prefix_stable():
    d = _digits(20)
    a, b = translate(d, canvas=40, seed=5), translate(d, canvas=40, seed=5)
    np.testing.assert_array_equal(a.x, b.x)
    short = translate(d, canvas=40, seed=5, limit=6)  # example i's placement ignores n
    np.testing.assert_array_equal(short.x, a.x[:6])
    assert not np.array_equal(translate(d, canvas=40, seed=6).x, a.x)


def test_splits_differ_and_bad_canvas():
    d = _digits(5)
    s = translated_splits({"train": d, "test": d}, canvas=50, seed=0)
    assert not np.array_equal(s["train"].x, s["test"].x)  # independent placement streams
    with pytest.raises(ValueError, match="canvas"):
        translate_offsets(2, canvas=20, seed=0)
    assert paste(d.x[:1], np.array([[0, 0]]), canvas=28)[0].sum() == d.x[0].sum()
