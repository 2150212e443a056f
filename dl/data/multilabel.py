"""Synthetic multi-label documents for label proportion estimation (Martins & Astudillo 2016).

Section 4.1 of "From Softmax to Sparsemax" builds "multi-labeled documents" the way McCallum's
(1999) multi-label mixture model generates text. With K labels and a vocabulary of V words, each
label k owns a multinomial ``word_dists[k]`` over the words, and a document is drawn as:

1. its number of labels ``N ~ Poisson(label_rate)`` conditioned on ``{1, ..., K}`` (the paper
   rejection-samples; we invert the conditioned CDF, which gives the same distribution);
2. its N distinct labels, uniformly without replacement (the paper's "draw the N labels from a
   multinomial"; we take the multinomial uniform over labels);
3. its gold label proportions ``q`` (a point of the K-simplex, zero off the N labels):
   ``"uniform"``, ``q_k = 1/N`` on each label, or ``"random"``, a flat Dirichlet over the N labels;
4. its length ``T ~ Poisson(mean_length)``;
5. T words, each from the mixture ``sum_k q_k word_dists[k]``: pick a label with probability
   ``q_k``, then a word from that label's multinomial.

Words in step 5 are i.i.d. given ``q``, so the word counts are exactly
``Multinomial(T, q @ word_dists)``; we draw them that way (O(V) per document instead of O(T)).
The features are the word frequencies ``counts / T`` (bag of words normalised by length, so that
the map from ``q`` to the expected features, ``q @ word_dists``, is linear and the same at every
length; a document with T = 0 gets all-zero features). The paper does not say how the label-word
multinomials were drawn; `label_word_distributions` draws each from a symmetric Dirichlet (flat by
default), once per dataset, shared by its splits.

Deterministic given ``seed`` (int or sequence of ints, numpy's SeedSequence entropy), like
`dl.data.synthetic`. Steps 1-3 are drawn before the lengths, so two calls that differ only in
``mean_length`` give the same labels and proportions: a sweep over lengths changes nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

Seed = int | Sequence[int]


class MultilabelData(NamedTuple):
    """One split of multi-label documents (the `x`/`y` fields match `dl.data.ArrayData`).

    Attributes:
      x: [n, V] float32 word frequencies counts / T (rows sum to 1; all zero if T = 0).
      y: [n, K] float32 gold label proportions q (rows on the simplex; q_k > 0 iff k is a label).
      counts: [n, V] int32 word counts (rows sum to the document length T).
    """

    x: np.ndarray
    y: np.ndarray
    counts: np.ndarray


def label_word_distributions(
    num_labels: int, vocab_size: int, *, concentration: float = 1.0, seed: Seed = 0
) -> np.ndarray:
    """One multinomial over the vocabulary per label, each ~ Dirichlet(concentration * 1_V).

    Returns:
      [num_labels, vocab_size] float64, rows non-negative and summing to 1.
    """
    if num_labels < 1 or vocab_size < 1:
        raise ValueError(
            f"need num_labels >= 1 and vocab_size >= 1, got {num_labels}, {vocab_size}"
        )
    if concentration <= 0:
        raise ValueError(f"need concentration > 0, got {concentration}")
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(vocab_size, float(concentration)), size=num_labels)


def _uniform_proportions(active: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    del rng
    return active / active.sum(axis=1, keepdims=True)


def _random_proportions(active: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # A flat Dirichlet over the active labels: normalised Exp(1) = Gamma(1) draws (the standard
    # construction), with the inactive labels' draws zeroed before normalising.
    g = rng.standard_exponential(active.shape) * active
    return g / g.sum(axis=1, keepdims=True)


# name -> (active: [n, K] float64 0/1 with >= 1 one per row, rng) -> proportions [n, K] float64.
PROPORTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "uniform": _uniform_proportions,
    "random": _random_proportions,
}


def _truncated_poisson(
    rate: float, low: int, high: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """n draws of Poisson(rate) conditioned on {low, ..., high}, by inverting its CDF.

    The same distribution as the paper's rejection sampling (redraw until in range), without
    its unbounded loop when the range has little mass (e.g. rate 20 and high 3).
    """
    k = np.arange(low, high + 1)
    log_pmf = k * math.log(rate) - np.array([math.lgamma(j + 1.0) for j in k])
    pmf = np.exp(log_pmf - log_pmf.max())
    cdf = np.cumsum(pmf / pmf.sum())
    return k[np.minimum(np.searchsorted(cdf, rng.uniform(size=n), side="right"), len(k) - 1)]


def documents(
    n: int,
    word_dists: np.ndarray,
    *,
    mean_length: float,
    proportions: str = "uniform",
    label_rate: float = 1.0,
    seed: Seed = 0,
) -> MultilabelData:
    """n documents from the generative process in the module docstring.

    Args:
      n: number of documents, >= 1.
      word_dists: [K, V] label-word multinomials (e.g. from `label_word_distributions`).
      mean_length: the Poisson mean L of the document length, >= 0.
      proportions: a key of `PROPORTIONS`.
      label_rate: the Poisson mean of the number of labels before rejection into [1, K].
      seed: see the module docstring.

    Returns:
      `MultilabelData` with x: [n, V], y: [n, K], counts: [n, V].
    """
    if proportions not in PROPORTIONS:
        raise ValueError(
            f"unknown proportions {proportions!r}; valid: {', '.join(sorted(PROPORTIONS))}"
        )
    if n < 1 or mean_length < 0 or label_rate <= 0:
        raise ValueError(
            f"need n >= 1, mean_length >= 0, label_rate > 0; got n={n}, "
            f"mean_length={mean_length}, label_rate={label_rate}"
        )
    word_dists = np.asarray(word_dists, np.float64)
    num_labels = word_dists.shape[0]
    rng = np.random.default_rng(seed)
    num_active = _truncated_poisson(label_rate, 1, num_labels, n, rng)
    # N distinct labels uniformly at random: the N smallest of K i.i.d. uniform keys.
    ranks = np.argsort(np.argsort(rng.uniform(size=(n, num_labels)), axis=1), axis=1)
    active = (ranks < num_active[:, None]).astype(np.float64)
    q = PROPORTIONS[proportions](active, rng)
    lengths = rng.poisson(mean_length, n)
    mixture = q @ word_dists
    # Rounding can push a row's sum a hair above 1, which numpy's multinomial rejects.
    mixture /= mixture.sum(axis=1, keepdims=True)
    counts = rng.multinomial(lengths, mixture)
    x = counts / np.maximum(lengths, 1)[:, None]
    return MultilabelData(x.astype(np.float32), q.astype(np.float32), counts.astype(np.int32))


def multilabel_splits(
    *,
    data_dir: str | None = None,
    num_labels: int = 10,
    vocab_size: int | None = None,
    mean_length: float = 200.0,
    proportions: str = "uniform",
    label_rate: float = 1.0,
    concentration: float = 1.0,
    n_train: int = 1200,
    n_val: int = 200,
    n_test: int = 1000,
    seed: int = 0,
) -> dict[str, MultilabelData]:
    """train/val/test documents sharing one set of label-word multinomials.

    The paper's sizes (1,200 train, 1,000 test; we add a 200-document dev split for choosing
    the regularization) and vocabulary (V = K) are the defaults. The word multinomials use seed
    ``[seed, 3]`` and the splits ``[seed, 0]``, ``[seed, 1]``, ``[seed, 2]``, so the splits are
    independent draws from the same model. ``data_dir`` is unused (registry signature).
    """
    del data_dir
    word_dists = label_word_distributions(
        num_labels, vocab_size or num_labels, concentration=concentration, seed=[seed, 3]
    )
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    return {
        name: documents(
            size,
            word_dists,
            mean_length=mean_length,
            proportions=proportions,
            label_rate=label_rate,
            seed=[seed, k],
        )
        for k, (name, size) in enumerate(sizes.items())
    }
