"""The Fréchet distance between Gaussians fitted to features, and "MNIST FID".

The Fréchet (2-Wasserstein) distance between N(mu_1, C_1) and N(mu_2, C_2) is (Dowson & Landau
1982; the FID of Heusel et al. 2017, eq. 6, is its square on Inception features):

    d^2 = |mu_1 - mu_2|^2 + tr(C_1) + tr(C_2) - 2 tr((C_1 C_2)^{1/2}).

(C_1 C_2)^{1/2} is not symmetric, but it is similar to (C_1^{1/2} C_2 C_1^{1/2})^{1/2}, which is
symmetric positive semi-definite, so its trace is the sum of the square roots of the eigenvalues
of M = C_1^{1/2} C_2 C_1^{1/2}. That is what `frechet_distance` computes (two symmetric
eigendecompositions in float64, negative round-off eigenvalues clipped to 0), instead of the
general `scipy.linalg.sqrtm` of the non-symmetric product that pytorch-fid uses, whose complex
round-off it then has to discard. Tests compare the two.

"MNIST FID" (`feature_fid`) applies the same formula to the penultimate features of an MNIST
classifier (`dl.models.cnn.MnistCNN.features`) instead of Inception's pool3 features: numbers are
comparable only between runs that share the classifier's weights and the sample sizes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features: [n, d] (n >= 2) -> (mean [d], covariance [d, d] with ddof = 1, as np.cov), in
    float64."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be [n >= 2, d], got shape {f.shape}")
    mu = f.mean(axis=0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric PSD matrix (negative round-off clipped)."""
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """d^2 of the module docstring between N(mu1 [d], cov1 [d, d]) and N(mu2, cov2), float64.

    Covariances must be symmetric positive semi-definite (any sample covariance is)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    d = mu1.shape[-1]
    for name, c in (("cov1", cov1), ("cov2", cov2)):
        if c.shape != (d, d):
            raise ValueError(f"{name} must be [{d}, {d}] for means of size {d}, got {c.shape}")
    s1 = _psd_sqrt(cov1)
    m = s1 @ cov2 @ s1
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_sqrt = float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)


def frechet_distance_of_features(a: np.ndarray, b: np.ndarray) -> float:
    """d^2 between Gaussians fitted (`gaussian_stats`) to features a [n, d] and b [m, d]."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


def batched_features(
    feature_fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int = 1000
) -> np.ndarray:
    """feature_fn over x [n, ...] in slices of `batch` rows, concatenated (bounded memory)."""
    return np.concatenate(
        [np.asarray(feature_fn(x[i : i + batch])) for i in range(0, len(x), batch)]
    )


def feature_fid(
    feature_fn: Callable[[np.ndarray], np.ndarray],
    real: np.ndarray,
    fake: np.ndarray,
    *,
    batch: int = 1000,
) -> float:
    """FID-style distance between image sets real [n, ...] and fake [m, ...] on the features
    `feature_fn(images) -> [k, d]` (for MNIST FID: a trained MnistCNN's penultimate layer)."""
    return frechet_distance_of_features(
        batched_features(feature_fn, real, batch), batched_features(feature_fn, fake, batch)
    )
