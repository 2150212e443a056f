"""Mixture samplers and the VEEGAN mode/high-quality protocol against numpy."""

import jax
import numpy as np
import pytest

from dl.eval import mixtures

# Jitted once: eagerly, each jnp op would compile on its own.
score_modes = jax.jit(mixtures.score_modes, static_argnames=("min_count",))
sample_mixture = jax.jit(mixtures.sample_mixture, static_argnums=2)


def _np_score(samples, means, std, threshold=3.0, min_count=1):
    d = np.linalg.norm(samples[:, None] - means[None], axis=-1)
    nearest, dist = d.argmin(1), d.min(1)
    good = dist <= threshold * std
    counts = np.bincount(nearest[good], minlength=len(means))
    return (counts >= min_count).sum(), good.mean(), counts


def test_means_layout():
    ring = mixtures.ring_means()
    assert ring.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 2.0, rtol=1e-6)
    np.testing.assert_allclose(ring[2], [0.0, 2.0], atol=1e-6)
    grid = mixtures.grid_means()
    assert grid.shape == (25, 2) and grid.min() == -4 and grid.max() == 4
    assert len({tuple(p) for p in grid.tolist()}) == 25
    with pytest.raises(ValueError, match="unknown mixture"):
        mixtures.mixture_means("spiral")


def test_samples_come_from_every_mode_with_the_right_spread():
    means = mixtures.grid_means()
    x = np.asarray(sample_mixture(jax.random.PRNGKey(0), means, 5000))
    score = score_modes(x, means)
    assert int(score.modes) == 25
    # Within 3 std in 2-D holds 1 - exp(-9/2) = 98.9% of a Gaussian's mass.
    assert float(score.high_quality) == pytest.approx(1 - np.exp(-4.5), abs=0.01)
    resid = x - means[np.linalg.norm(x[:, None] - means[None], axis=-1).argmin(1)]
    assert resid.std() == pytest.approx(0.02, rel=0.05)


def test_score_against_numpy_on_constructed_samples():
    rng = np.random.default_rng(0)
    means = mixtures.ring_means()
    std = 0.02
    # 3 modes hit; off-mode junk; one NaN; one just outside the 3-std boundary.
    good = np.concatenate(
        [means[0] + 0.01 * rng.normal(size=(5, 2)), means[[3]] + 0.03, means[[5, 5, 3]] * 1.0]
    )
    junk = rng.uniform(-0.5, 0.5, size=(6, 2))  # near the origin: far from every mode
    edge = means[1] + np.array([[0.06 * 1.001, 0.0]])  # just outside 3 std
    samples = np.concatenate([good, junk, edge, [[np.nan, 0.0]]]).astype(np.float32)
    for min_count in (1, 2, 3):
        got = score_modes(samples, means, std, min_count=min_count)
        m, hq, counts = _np_score(samples[:-1], means, std, min_count=min_count)
        assert int(got.modes) == m
        np.testing.assert_array_equal(np.asarray(got.counts), counts)
        assert float(got.high_quality) == pytest.approx(hq * (len(samples) - 1) / len(samples))
    # By construction: 5 good samples at mode 0, 2 at mode 3, 2 at mode 5; 9 of 17 good.
    got = score_modes(samples, means, std)
    np.testing.assert_array_equal(np.asarray(got.counts), [5, 0, 0, 2, 0, 2, 0, 0])
    assert int(got.modes) == 3 and float(got.high_quality) == pytest.approx(9 / 17)
    assert int(score_modes(samples, means, std, min_count=3).modes) == 1
    batched = jax.vmap(lambda s: score_modes(s, means, std).modes)(samples[None])
    assert int(batched[0]) == 3
