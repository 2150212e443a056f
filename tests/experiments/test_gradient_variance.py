"""Smoke test of experiments/gradient_variance.py, and its quadrature variances against closed
forms (mu = sigma = 1 unless stated)."""

import json
import math
import os

import numpy as np
import pytest

from experiments import gradient_variance as gv
from experiments._runner import run_experiment


def test_smoke(tmp_path):
    results = run_experiment(
        "gradient_variance",
        {"gradient_variance": gv},
        scale="smoke",
        workdir=str(tmp_path),
        overrides=['functions=("quadratic",)', "num_k=2"],  # one compile
    )
    for name in ("config.json", "results.json", "gradient_variance.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "gradient_variance"
    m = results["metrics"]
    assert len(m["table"]) == 2 * len(gv.ESTIMATORS) * len(gv.PARAMETERS)
    for row in m["table"]:
        assert row["exact"] > 0 and math.isfinite(row["mc"]) and row["mc"] > 0
        # 2000 samples: the MC variance is within 6 of its own (exact) standard errors.
        assert row["z"] < 6, row
    assert len(results["bars"]) == 3  # MC vs exact, pathwise < score, baseline on (x - k)^2


@pytest.mark.parametrize("k", [0.3, 2.0])
def test_quadratic_variances_match_closed_forms(k):
    # f = (x - k)^2, x = 1 + eps, a = 1 - k. Score d/dmu: g = (eps + a)^2 eps;
    # baseline E f = 1 + a^2; optimal constant c = E[f eps^2] = 3 + a^2; pathwise 2(x - k).
    a = 1 - k
    m = gv.exact_moments("quadratic", k, 1.0, 1.0)
    want = {
        ("score", "mean"): 15 + 14 * a**2 + a**4,
        ("score_baseline", "mean"): 10 + 8 * a**2,
        ("score_cv", "mean"): 6 + 8 * a**2,
        ("pathwise", "mean"): 4.0,
        ("pathwise", "std"): 8 + 4 * a**2,  # 2 (eps + a) eps
    }
    for (e, p), v in want.items():
        assert m[e][p][0] == pytest.approx(v, rel=1e-9), (e, p)
    assert m["pathwise"]["mean"][1] == pytest.approx(3 * 4.0**2, rel=1e-9)  # Gaussian m4


def test_cosine_pathwise_variance_matches_closed_form():
    # g = -k sin(k x), x ~ N(mu, 1): E sin(kx) = sin(k mu) e^{-k^2/2},
    # E sin^2(kx) = (1 - cos(2 k mu) e^{-2 k^2}) / 2.
    mu, k = 1.0, 2.5
    want = k**2 * (
        (1 - np.cos(2 * k * mu) * np.exp(-2 * k**2)) / 2
        - (np.sin(k * mu) * np.exp(-(k**2) / 2)) ** 2
    )
    got = gv.exact_moments("cosine", k, mu, 1.0)["pathwise"]["mean"][0]
    assert got == pytest.approx(want, rel=1e-9)
