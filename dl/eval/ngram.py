"""Interpolated Kneser-Ney n-gram baselines (Kneser & Ney 1995; Chen & Goodman 1999) from
`nltk.lm.KneserNeyInterpolated`, scored fast.

The model is nltk's: `KneserNey.fit` counts the n-grams with nltk (`lm.fit`) and nltk's recursion
defines every probability. nltk's `score` recounts continuation types by a pass over all
higher-order n-grams at every call (seconds per token for a 5-gram on 400k tokens), so
`KneserNey` reads nltk's counts ONCE into tables and evaluates the same recursion from them
(`score`); the tests check it equals ``lm.score`` on every (word, context) of a small corpus.

nltk's recursion (nltk 3.8-3.10, `InterpolatedLanguageModel.unmasked_score` with the
`KneserNey` estimator), discount d, context c truncated to the last n - 1 tokens:

    p(w | c) = alpha(w, c) + gamma(c) p(w | c[1:])         if c was seen as a context
             = p(w | c[1:])                                 otherwise
    alpha = max(N(c w) - d, 0) / N(c .),  gamma = d |{v: N(c v) > 0}| / N(c .)   (|c| = n - 1)
    alpha = max(N1+(. c w) - d, 0) / N1+(. c .),  gamma = d |{v: N(c v) > 0}| / N1+(. c .)
                                                                                  (shorter c)
    p(w) = N1+(. w) / N1+(. .)                             (continuation unigram)

N counts n-grams, N1+(. c w) the distinct tokens seen before ``c w``. One deviation: where
N1+(. c .) = 0 (a lower-order context seen only at the very start of the training stream)
nltk divides by zero; here that level is skipped (alpha 0, gamma 1).

Streams: `fit` takes one token list (a whole split, sentences joined with <eos>, as the RNN
LMs read it), and `stream_log_probs` scores ``tokens[1:]``, each given up to n - 1 tokens
before it, so n-gram and RNN perplexities cover the same tokens.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np


class KneserNey:
    """An nltk `KneserNeyInterpolated` of order ``order`` with fast exact scoring.

    Args:
      order: n (>= 2; nltk's unigram is a continuation count over bigrams).
      discount: d in [0, 1] (nltk's default is 0.1; Chen & Goodman's usual value is 0.75).
    """

    def __init__(self, order: int, discount: float = 0.75):
        if order < 2 or not 0.0 <= discount <= 1.0:
            raise ValueError(f"need order >= 2 and discount in [0, 1]; got {order}, {discount}")
        self.order, self.discount = order, discount
        self.lm = None

    def fit(self, tokens: Sequence[str]) -> KneserNey:
        """Counts every 1..n-gram of the stream ``tokens`` with nltk, then builds the tables."""
        from nltk.lm import KneserNeyInterpolated
        from nltk.util import everygrams

        tokens = list(tokens)
        self.lm = KneserNeyInterpolated(self.order, discount=self.discount)
        self.lm.fit([everygrams(tokens, max_len=self.order)], vocabulary_text=tokens)
        self._tables()
        return self

    def _tables(self) -> None:
        counts = self.lm.counts
        # Per context (tuple of length k - 1 for k = 2..n): N(c .) and |{v: N(c v) > 0}|.
        self._total: dict[tuple, int] = {}
        self._types: dict[tuple, int] = {}
        self._count: dict[tuple, int] = {}  # N(c w) at the highest order only
        # N1+(. c w) and N1+(. c .) for the lower orders (|c w| <= n - 1).
        self._cont: Counter = Counter()
        self._cont_total: defaultdict = defaultdict(int)
        for k in range(2, self.order + 1):
            for context, dist in counts[k].items():
                seen = [w for w, c in dist.items() if c > 0]
                if not seen:
                    continue
                self._total[context] = dist.N()
                self._types[context] = len(seen)
                if k == self.order:
                    for w in seen:
                        self._count[context + (w,)] = dist[w]
                for w in seen:  # the n-gram context+w continues its suffix context[1:] + w
                    self._cont[context[1:] + (w,)] += 1
                self._cont_total[context[1:]] += len(seen)

    def score(self, word: str, context: Sequence[str] = ()) -> float:
        """p(word | context) as nltk's ``lm.score`` computes it (tokens must be in the
        vocabulary: map unknown ones to the <unk> token first)."""
        if self.lm is None:
            raise ValueError("fit the model first")
        return self._score(word, tuple(context)[-(self.order - 1) :])

    def _score(self, word: str, context: tuple) -> float:
        d = self.discount
        weight, prob = 1.0, 0.0
        while context:
            types = self._types.get(context, 0)
            if types:
                if len(context) + 1 == self.order:
                    num, total = self._count.get(context + (word,), 0), self._total[context]
                else:
                    num, total = self._cont[context + (word,)], self._cont_total.get(context, 0)
                if total:
                    prob += weight * max(num - d, 0.0) / total
                    weight *= d * types / total
            context = context[1:]
        return prob + weight * self._cont[(word,)] / self._cont_total[()]

    def stream_log_probs(self, tokens: Sequence[str]) -> np.ndarray:
        """[len(tokens) - 1] natural-log probabilities of ``tokens[1:]``, token i given
        ``tokens[max(0, i - n + 1):i]``."""
        tokens = list(tokens)
        n1 = self.order - 1
        out = np.empty(len(tokens) - 1, np.float64)
        for i in range(1, len(tokens)):
            p = self._score(tokens[i], tuple(tokens[max(0, i - n1) : i]))
            out[i - 1] = math.log(p) if p > 0 else -math.inf
        return out

    def perplexity(self, tokens: Sequence[str]) -> float:
        """exp of the mean negative log-probability of ``tokens[1:]`` (see
        `stream_log_probs`); inf if a token has probability 0."""
        return float(np.exp(-np.mean(self.stream_log_probs(tokens))))
