"""Corpus BLEU (Papineni et al., 2002) with sacreBLEU (Post, 2018) at its default settings.

Detokenized system output is scored against the raw references: sacreBLEU applies its own
tokenizer (13a), so scores are comparable across papers that report sacreBLEU, and the
signature string (``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:...``) records
exactly how. Keep the signature with every reported score (results.json).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Bleu(NamedTuple):
    score: float  # corpus BLEU in [0, 100]
    signature: str  # sacreBLEU's signature of the settings used


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> Bleu:
    """Corpus BLEU of detokenized ``hypotheses`` against one raw reference each.

    Raises:
      ValueError: the two lists differ in length or are empty.
    """
    import sacrebleu

    hypotheses, references = list(hypotheses), list(references)
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(
            f"need as many hypotheses as references (> 0), got {len(hypotheses)} and "
            f"{len(references)}"
        )
    metric = sacrebleu.BLEU()
    result = metric.corpus_score(hypotheses, [references])
    return Bleu(float(result.score), str(metric.get_signature()))
