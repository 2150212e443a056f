"""Reversing the source sentence (Sutskever, Vinyals & Le 2014, sec. 3.3): the attention-free
encoder-decoder reads the source backwards, which puts the first source words next to the
first target words and lowers perplexity and raises BLEU.

Run:    python run.py source_reversal --scale quick
Expect: quick (En->De, forward LSTM reader, embed = hidden = 64, 400 steps, sentences of <= 15
        pieces): 80 CPU-s (78 user + 2 sys; 80 s wall, quiet machine). Val perplexity forward
        26.29 -> reversed 25.89 (bar PASSES: ratio 0.985, paper 0.81). BLEU val greedy / beam
        5: forward 5.83 / 7.97, reversed 6.58 / 6.97; test2016 forward 4.82 / 6.27, reversed
        5.95 / 7.43 (a small, mixed gain at this size). Full scale not run.

Both arms are the same `dl.models.seq2seq.Seq2Seq` with no attention and a forward (not
bidirectional) LSTM reader, as Sutskever et al.'s, trained from the same seed on the same
batches; they differ only in the order of the source pieces (`<eos>` stays last,
`dl.data.translation.reversed_source`). Val perplexity is per target token (teacher forcing,
`<eos>` included); BLEU is sacreBLEU of greedy and beam-search output (`experiments._seq2seq`).
Quick trains En->De only on pairs of at most 15 pieces a side.
"""

from __future__ import annotations

import os
import time
from typing import Any

import ml_collections

from dl.data.translation import Translation, reversed_source
from dl.report import at_most
from experiments import _seq2seq as s2s
from experiments._fields import Choice, Int

PAPER = {
    "citation": "Sutskever, Vinyals & Le 2014 (Sequence to sequence learning with neural "
    "networks), sec. 3.3",
    "claim": "Reversing the source words lowers test perplexity and raises BLEU of a plain "
    "LSTM encoder-decoder, by introducing many short-term dependencies.",
    "published": "WMT'14 En->Fr: test perplexity 5.8 -> 4.7, BLEU 25.9 -> 30.6",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "val perplexity with the reversed source < with the source in order",
        "full": "val perplexity with the reversed source < with the source in order (BLEU "
        "reported)",
    },
}
ARMS = ("forward", "reversed")


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = s2s.base_config(scale)
    c.cell = "lstm"  # Sutskever et al.'s LSTM
    c.direction = "en-de"  # the translation direction
    c.beam_size = 5  # the beam of the "beam" decoding (greedy is the other)
    return c


FIELDS = {**s2s.BASE_FIELDS, "direction": Choice(s2s.DIRECTIONS), "beam_size": Int(lo=1)}


def arm_data(data: Translation, arm: str) -> Translation:
    if arm == "forward":
        return data
    splits = {k: reversed_source(v) for k, v in data.splits.items()}
    return Translation(data.src_lang, data.tgt_lang, data.src_vocab, data.tgt_vocab, splits, True)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    start = time.perf_counter()
    base = s2s.load(config, workdir, config.direction)
    metrics: dict[str, Any] = {"sizes": s2s.split_sizes(base), "table": []}
    for arm in ARMS:
        data = arm_data(base, arm)
        model = s2s.build(config, data, attention=None, bidirectional=False)
        r = s2s.train(config, model, data, os.path.join(workdir, arm), desc=arm)
        row = {"arm": arm, "val_perplexity": r["val_perplexity"][0]}
        for decoding, beam in (("greedy", 0), (f"beam{config.beam_size}", config.beam_size)):
            for split, label in s2s.SPLIT_NAMES.items():
                texts, _ = s2s.decode(config, model, r["params"], data, split, beam)
                row[f"{label}_bleu_{decoding}"], metrics["bleu_signature"] = s2s.bleu(
                    texts, data.splits[split]
                )
        row["train_time_s"] = r["train_time_s"]
        metrics["table"].append(row)
        for k, v in row.items():
            if k != "arm":
                metrics[f"{arm}_{k}"] = v
    metrics["bars"] = make_bars(metrics)
    metrics["total_time_s"] = time.perf_counter() - start
    beam = f"beam{config.beam_size}"
    for row in metrics["table"]:
        print(
            f"  {row['arm']:>8}: val perplexity {row['val_perplexity']:6.2f}  BLEU val greedy "
            f"{row['val_bleu_greedy']:5.2f} {beam} {row[f'val_bleu_{beam}']:5.2f}  test2016 "
            f"greedy {row['test2016_bleu_greedy']:5.2f} {beam} {row[f'test2016_bleu_{beam}']:5.2f}"
        )
    print("  paper (WMT'14 En->Fr): perplexity 5.8 -> 4.7, BLEU 25.9 -> 30.6")
    return metrics


def make_bars(metrics: dict) -> list:
    return [
        at_most(
            "val perplexity reversed / forward",
            metrics["reversed_val_perplexity"] / metrics["forward_val_perplexity"],
            1.0,
            paper="4.7 / 5.8 = 0.81 (test, WMT'14 En->Fr)",
        )
    ]
