"""Fréchet distance and classifier scores against closed forms and scipy's general sqrtm."""

import numpy as np
import pytest
import scipy.linalg

from dl.eval.classifier_scores import label_accuracy
from dl.eval.frechet import (
    feature_fid,
    frechet_distance,
    frechet_distance_of_features,
    gaussian_stats,
)


def scipy_reference(mu1, c1, mu2, c2):
    """pytorch-fid's formula: the general matrix square root of the product."""
    covmean = scipy.linalg.sqrtm(c1 @ c2)
    return float(
        np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean).real
    )


def random_psd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T


def test_diagonal_covariances_closed_form():
    # Diagonal (commuting) covariances: d^2 = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    a, b = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-12)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0)


@pytest.mark.parametrize("rank", [None, 2])  # full rank, and singular (rank 2 of 7)
def test_matches_scipy_sqrtm_on_random_covariances(rank):
    rng = np.random.default_rng(1)
    d = 7
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    c1, c2 = random_psd(rng, d), random_psd(rng, d, rank)
    got = frechet_distance(mu1, c1, mu2, c2)
    assert got == pytest.approx(scipy_reference(mu1, c1, mu2, c2), rel=1e-6, abs=1e-6)
    # symmetric (to sqrt(round-off) ~ 1e-8 relative: near-zero eigenvalues go through sqrt)
    assert got == pytest.approx(frechet_distance(mu2, c2, mu1, c1), rel=1e-6)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)


def test_gaussian_stats_and_sample_estimate_converges():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(50, 3))
    mu, cov = gaussian_stats(f)
    np.testing.assert_allclose(mu, f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(f, rowvar=False), rtol=1e-12)
    # Samples of N(0, I) and N(m, diag(4)): the estimate approaches |m|^2 + d (2 - 1)^2.
    m = np.array([1.0, -1.0, 0.5])
    a = rng.normal(size=(20000, 3))
    b = m + 2.0 * rng.normal(size=(20000, 3))
    assert frechet_distance_of_features(a, b) == pytest.approx(2.25 + 3.0, rel=0.03)
    with pytest.raises(ValueError, match="n >= 2"):
        gaussian_stats(f[:1])
    with pytest.raises(ValueError, match="cov2"):
        frechet_distance(mu, cov, mu, cov[:2, :2])


def test_feature_fid_batches_like_one_call():
    rng = np.random.default_rng(3)
    real, fake = rng.random((23, 4, 4, 1)), rng.random((17, 4, 4, 1)) + 0.3

    def flat(x):
        return x.reshape(len(x), -1)[:, :5]

    want = frechet_distance_of_features(flat(real), flat(fake))
    assert feature_fid(flat, real, fake, batch=4) == pytest.approx(want, rel=1e-12)


def test_label_accuracy_counts():
    images = np.array([0, 1, 2, 3, 4, 5])  # the "classifier" below predicts x mod 3
    labels = np.array([0, 1, 1, 0, 1, 2])
    out = label_accuracy(lambda x: x % 3, images, labels, classes=3, batch=4)
    # predictions 0 1 2 0 1 2: right at positions 0, 1, 3, 4, 5
    assert out["accuracy"] == pytest.approx(5 / 6)
    np.testing.assert_array_equal(out["confusion"], [[2, 0, 0], [0, 2, 1], [0, 0, 1]])
    assert out["per_class"] == pytest.approx([1.0, 2 / 3, 1.0])
    assert np.isnan(label_accuracy(lambda x: x, images[:2], labels[:2], classes=3)["per_class"][2])
