"""The multi-label document generator: its stated structure, its distributions (against scipy
and a literal word-by-word sampler), and determinism."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from dl.data.multilabel import PROPORTIONS, documents, label_word_distributions, multilabel_splits

PROPERTY = settings(max_examples=25, deadline=None)


@PROPERTY
@given(
    k=st.integers(1, 30),
    v=st.integers(1, 30),
    n=st.integers(1, 200),
    length=st.floats(0.0, 300.0),
    proportions=st.sampled_from(sorted(PROPORTIONS)),
    seed=st.integers(0, 2**31),
)
def test_structure(k, v, n, length, proportions, seed):
    dists = label_word_distributions(k, v, seed=seed)
    assert dists.shape == (k, v) and np.all(dists >= 0)
    np.testing.assert_allclose(dists.sum(1), 1.0, rtol=1e-12)
    d = documents(n, dists, mean_length=length, proportions=proportions, seed=seed)
    assert d.x.shape == (n, v) and d.counts.shape == (n, v) and d.y.shape == (n, k)
    assert d.x.dtype == np.float32 and d.y.dtype == np.float32 and d.counts.dtype == np.int32
    num_labels = (d.y > 0).sum(1)
    assert np.all((num_labels >= 1) & (num_labels <= k))
    np.testing.assert_allclose(d.y.sum(1), 1.0, rtol=1e-6)
    assert np.all(d.y >= 0) and np.all(d.counts >= 0)
    if proportions == "uniform":
        active = d.y > 0
        np.testing.assert_allclose(d.y[active], np.repeat(1.0 / num_labels, num_labels), rtol=1e-6)
    lengths = d.counts.sum(1)
    expected_x = d.counts / np.maximum(lengths, 1)[:, None]
    np.testing.assert_allclose(d.x, expected_x, rtol=1e-6)
    np.testing.assert_allclose(d.x.sum(1), (lengths > 0).astype(np.float64), rtol=1e-6)


def test_number_of_labels_is_poisson_conditioned_on_1_to_k():
    # Chi-square goodness of fit of N against Poisson(1) truncated to {1, ..., K}, K = 4.
    k, n = 4, 20000
    d = documents(n, label_word_distributions(k, 5, seed=0), mean_length=1.0, seed=1)
    observed = np.bincount((d.y > 0).sum(1), minlength=k + 1)[1:]
    pmf = stats.poisson.pmf(np.arange(1, k + 1), 1.0)
    expected = n * pmf / pmf.sum()
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    # Which labels: uniform over the K labels (chisquare's default expectation is uniform).
    assert stats.chisquare((d.y > 0).sum(0)).pvalue > 1e-3


def test_lengths_are_poisson_with_mean_l():
    n, mean_length = 3000, 400.0
    d = documents(n, label_word_distributions(6, 6, seed=0), mean_length=mean_length, seed=2)
    lengths = d.counts.sum(1)
    # Mean within 4 standard errors of L; variance equal to the mean (Poisson) within 10%.
    assert abs(lengths.mean() - mean_length) < 4 * np.sqrt(mean_length / n)
    assert abs(lengths.var() / mean_length - 1.0) < 0.1


def test_random_proportions_are_flat_dirichlet_on_the_active_labels():
    # With two active labels, a flat Dirichlet's first coordinate is Uniform(0, 1): KS test.
    d = documents(
        20000,
        label_word_distributions(2, 3, seed=0),
        mean_length=1.0,
        proportions="random",
        label_rate=5.0,
        seed=3,
    )
    two = d.y[(d.y > 0).sum(1) == 2]
    assert len(two) > 5000
    assert stats.kstest(two[:, 0], "uniform").pvalue > 1e-3


def test_long_documents_approach_the_mixture():
    k, v = 5, 8
    dists = label_word_distributions(k, v, concentration=0.5, seed=4)
    d = documents(400, dists, mean_length=2000.0, proportions="random", label_rate=2.0, seed=5)
    mixture = d.y.astype(np.float64) @ dists
    lengths = d.counts.sum(1)
    # The frequencies are within 6 multinomial standard deviations of the mixture ...
    std = np.sqrt(mixture * (1 - mixture) / lengths[:, None])
    assert np.all(np.abs(d.x - mixture) <= 6 * std + 1e-6)
    # ... and the pooled Pearson statistic is chi-square with sum_i (|support_i| - 1) dof.
    expected = lengths[:, None] * mixture
    keep = expected > 0
    pearson = np.sum((d.counts[keep] - expected[keep]) ** 2 / expected[keep])
    dof = int(keep.sum() - len(lengths))
    assert stats.chi2.sf(pearson, dof) > 1e-3 and stats.chi2.cdf(pearson, dof) > 1e-3


def literal_counts(q, dists, length, rng):
    """McCallum's generative story word by word: a label ~ q, then a word ~ that label's row."""
    labels = rng.choice(len(q), size=length, p=q)
    cdfs = np.cumsum(dists, axis=1)
    words = (rng.uniform(size=length)[:, None] > cdfs[labels]).sum(1)
    return np.bincount(np.minimum(words, dists.shape[1] - 1), minlength=dists.shape[1])


def test_counts_equal_the_word_by_word_sampler_in_distribution():
    # K = 2 uniform: every two-label document has q = (1/2, 1/2). Pool their counts and compare
    # with the literal sampler at that q by a chi-square test of homogeneity.
    dists = label_word_distributions(2, 6, concentration=0.7, seed=7)
    d = documents(2000, dists, mean_length=100.0, label_rate=3.0, seed=8)
    both = (d.y > 0).sum(1) == 2
    ours = d.counts[both].sum(0)
    literal = literal_counts(np.array([0.5, 0.5]), dists, int(ours.sum()), np.random.default_rng(9))
    table = np.stack([ours, literal])
    assert stats.chi2_contingency(table[:, table.sum(0) > 0]).pvalue > 1e-3
    # One label only: the counts follow that label's own row (goodness of fit).
    for label in (0, 1):
        only = d.y[:, label] == 1.0
        counts = d.counts[only].sum(0)
        assert stats.chisquare(counts, counts.sum() * dists[label]).pvalue > 1e-3


def test_determinism_and_length_sweeps_keep_the_labels():
    a = multilabel_splits(num_labels=7, mean_length=50.0, n_train=30, n_val=5, n_test=20, seed=3)
    b = multilabel_splits(num_labels=7, mean_length=50.0, n_train=30, n_val=5, n_test=20, seed=3)
    c = multilabel_splits(num_labels=7, mean_length=900.0, n_train=30, n_val=5, n_test=20, seed=3)
    for split in ("train", "val", "test"):
        for field in ("x", "y", "counts"):
            np.testing.assert_array_equal(getattr(a[split], field), getattr(b[split], field))
        # Only the words change with the length: labels and proportions are drawn first.
        np.testing.assert_array_equal(a[split].y, c[split].y)
        assert not np.array_equal(a[split].counts, c[split].counts)
    assert a["train"].x.shape == (30, 7) and a["val"].y.shape == (5, 7)
    # The splits are different draws, and another seed gives another dataset.
    assert not np.array_equal(a["train"].y[:20], a["test"].y)
    d = multilabel_splits(num_labels=7, mean_length=50.0, n_train=30, n_val=5, n_test=20, seed=4)
    assert not np.array_equal(a["train"].counts, d["train"].counts)
    assert multilabel_splits(
        num_labels=4, vocab_size=9, n_train=3, n_val=2, n_test=2, mean_length=5.0
    )["test"].x.shape == (2, 9)


def test_errors():
    dists = label_word_distributions(3, 3)
    with pytest.raises(ValueError, match="valid: random, uniform"):
        documents(5, dists, mean_length=10.0, proportions="dirichlet")
    with pytest.raises(ValueError, match="mean_length"):
        documents(5, dists, mean_length=-1.0)
    # Poisson(50) has mass ~1e-18 on {1, 2, 3}, where a rejection loop would never end; the
    # conditioned law there has P(3) = 1 / (1 + 3/50 + 6/2500) ~ 0.94.
    n = (documents(400, dists, mean_length=1.0, label_rate=50.0).y > 0).sum(1)
    assert n.min() >= 1 and n.max() <= 3 and 0.9 < np.mean(n == 3) < 0.98
    with pytest.raises(ValueError, match="concentration"):
        label_word_distributions(3, 3, concentration=0.0)
