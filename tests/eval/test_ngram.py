"""dl.eval.ngram: the fast Kneser-Ney tables against nltk's own `lm.score` and a hand count."""

import itertools
import math

import numpy as np
import pytest

from dl.eval.ngram import KneserNey


def test_bigram_matches_a_hand_computed_example():
    # Stream a b a c, d = 0.5. Bigram types: (a,b) (b,a) (a,c), so the continuation unigram is
    # p(a) = p(b) = p(c) = 1/3. Context a: N(a .) = 2 with 2 types: alpha(b|a) = 0.5/2,
    # gamma(a) = 0.5*2/2, p(b|a) = 0.25 + 0.5/3; p(a|a) = 0.5/3. Context b: N = 1, one type:
    # p(a|b) = 0.5 + 0.5/3. Context c never precedes anything: p(a|c) = p(a) = 1/3.
    kn = KneserNey(2, discount=0.5).fit(list("abac"))
    assert kn.score("b", ("a",)) == pytest.approx(0.25 + 0.5 / 3)
    assert kn.score("c", ("a",)) == pytest.approx(0.25 + 0.5 / 3)
    assert kn.score("a", ("a",)) == pytest.approx(0.5 / 3)
    assert kn.score("a", ("b",)) == pytest.approx(0.5 + 0.5 / 3)
    assert kn.score("a", ("c",)) == pytest.approx(1 / 3)
    assert kn.score("b") == pytest.approx(1 / 3)
    logp = kn.stream_log_probs(list("abac"))
    expected = np.log([0.25 + 0.5 / 3, 0.5 + 0.5 / 3, 0.25 + 0.5 / 3])
    np.testing.assert_allclose(logp, expected)
    assert kn.perplexity(list("abac")) == pytest.approx(math.exp(-expected.mean()))


@pytest.mark.parametrize("order", [2, 3, 4])
def test_every_score_equals_nltk(order):
    rng = np.random.default_rng(order)
    words = list("abcde") + ["<eos>"]
    tokens = [words[i] for i in rng.choice(6, size=120, p=[0.3, 0.2, 0.2, 0.1, 0.05, 0.15])]
    kn = KneserNey(order, discount=0.75).fit(tokens)
    vocab = sorted(set(tokens))
    contexts = {()}
    for k in range(1, order):  # every context in the text, plus unseen ones
        contexts |= {tuple(tokens[i : i + k]) for i in range(len(tokens) - k)}
        contexts |= set(itertools.islice(itertools.product(vocab, repeat=k), 40))
    for context in sorted(contexts):
        ours = [kn.score(w, context) for w in vocab]
        theirs = [kn.lm.score(w, context) for w in vocab]
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
        # A distribution over the vocabulary (nltk's <UNK> gets none of it).
        assert sum(ours) == pytest.approx(1.0, abs=1e-9), context


def test_stream_scores_use_the_last_n_minus_1_tokens():
    tokens = list("abcabdabcacb")
    kn = KneserNey(3).fit(tokens)
    logp = kn.stream_log_probs(tokens)
    assert logp.shape == (len(tokens) - 1,)
    for i in range(1, len(tokens)):
        assert logp[i - 1] == pytest.approx(
            math.log(kn.lm.score(tokens[i], tokens[max(0, i - 2) : i]))
        )


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="order >= 2"):
        KneserNey(1)
    with pytest.raises(ValueError, match="discount"):
        KneserNey(3, discount=1.5)
    with pytest.raises(ValueError, match="fit"):
        KneserNey(3).score("a")
