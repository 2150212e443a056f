"""cyclegan_digits end to end on synthetic IDX files, and its fixed transform."""

import json
import os

import numpy as np
import pytest

from dl import data
from experiments import cyclegan_digits as cg
from experiments._runner import run_experiment


def test_transform_is_inversion_then_rotation():
    x = np.zeros((1, 28, 28, 1), np.float32)
    x[0, 0, 27, 0] = 1.0  # ink at the top-right corner
    inverted = cg.transform(x, "invert")
    np.testing.assert_array_equal(inverted, 1.0 - x)
    np.testing.assert_array_equal(cg.inverse_transform(inverted, "invert"), x)
    y = cg.transform(x, "invert_rotate90")
    # inverted: ink -> 0, background -> 1; rotated 90 degrees counter-clockwise: the top-right
    # corner goes to the top-left.
    assert y[0, 0, 0, 0] == 0.0 and y.sum() == 28 * 28 - 1
    np.testing.assert_array_equal(cg.inverse_transform(y, "invert_rotate90"), x)
    with pytest.raises(ValueError, match="transform must be one of"):
        cg.transform(x, "rotate")


def test_domains_are_disjoint_halves():
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1) * np.ones((1, 28, 28, 1), np.float32)
    dx, dy = cg.domains(data.ArrayData(x / 10, np.arange(10)), seed=0)
    assert len(dx.x) == len(dy.x) == 5
    assert not set(dx.y.tolist()) & set(dy.y.tolist())  # no image in both domains
    # image k is the constant k / 10 (label k): X keeps it, Y inverts it; both scaled to [-1, 1]
    np.testing.assert_allclose(
        dx.x, np.broadcast_to(dx.y[:, None, None, None] / 5 - 1, dx.x.shape), atol=1e-6
    )
    np.testing.assert_allclose(
        dy.x, np.broadcast_to(1 - dy.y[:, None, None, None] / 5, dy.x.shape), atol=1e-6
    )


def test_smoke_on_synthetic_idx_files(tmp_path, synthetic_mnist):
    r = run_experiment(
        "cyclegan_digits",
        {"cyclegan_digits": cg},
        scale="smoke",
        workdir=str(tmp_path / "w"),
        data_dir=str(synthetic_mnist),
        overrides=[f"scorer_dir={tmp_path}"],
    )
    m = r["metrics"]
    for key in ("label_agreement_y_to_x", "label_agreement_x_to_y", "label_agreement_ceiling"):
        assert 0.0 <= m[key] <= 1.0
    for key in ("translation_error_y_to_x", "cycle_error_x", "cycle_error_y"):
        assert 0.0 <= m[key] <= 1.0
    for png in ("translations.png", "curves.png"):
        assert os.path.getsize(tmp_path / "w" / png) > 0
    rows = [
        json.loads(line)
        for line in (tmp_path / "w" / "cyclegan" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [row["step"] for row in rows if "g_cycle" in row] == [1, 2]
