"""dl.eval.bleu: sacreBLEU corpus BLEU against an independent count of clipped n-grams."""

import math
from collections import Counter

import pytest

from dl.eval.bleu import corpus_bleu


def _bleu_by_hand(hyps, refs):
    """Papineni et al. (2002) corpus BLEU for whitespace-tokenized text (no smoothing needed:
    every n-gram order has a match below)."""
    matches, totals, hyp_len, ref_len = [0] * 4, [0] * 4, 0, 0
    for h, r in zip(hyps, refs):
        h, r = h.split(), r.split()
        hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
        for n in range(1, 5):
            hc = Counter(tuple(h[i : i + n]) for i in range(len(h) - n + 1))
            rc = Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
            matches[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            totals[n - 1] += max(len(h) - n + 1, 0)
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals)) / 4
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return 100 * bp * math.exp(log_p)


def test_references_against_themselves_score_100():
    refs = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "A &amp; B"]
    score, signature = corpus_bleu(refs, refs)
    assert score == pytest.approx(100.0)
    assert "tok:13a" in signature and "version:" in signature


def test_hand_example_matches_an_independent_count():
    hyps = ["the cat sat on the mat today", "a dog runs in the big park"]
    refs = ["the cat sat on a mat today", "the dog runs in the big green park now"]
    expected = _bleu_by_hand(hyps, refs)
    assert 0 < expected < 100
    assert corpus_bleu(hyps, refs).score == pytest.approx(expected, rel=1e-9)


def test_mismatched_lists_are_rejected():
    with pytest.raises(ValueError, match="as many"):
        corpus_bleu(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="as many"):
        corpus_bleu([], [])
