"""Sparsemax attention (Martins & Astudillo 2016, sec. 4.3): replacing the softmax of
Bahdanau attention by sparsemax keeps translation quality while each target word attends to
only a few source words (exact zeros elsewhere).

Run:    python run.py sparse_attention --scale quick
Expect: quick (En->De, embed = hidden = 64, 400 steps, 264 val / 286 test2016 sentences of
        <= 15 pieces): 142 CPU-s (125 user + 17 sys; 134 s wall, quiet machine). Beam-5
        BLEU val / test2016: softmax 25.94 / 23.03, sparsemax 25.32 / 23.36; support: softmax
        100%, sparsemax 20.9%. Bars PASS: BLEU difference -0.62 >= -1; support 0.209 <= 0.25.

Two `dl.models.seq2seq.Seq2Seq` models with additive (Bahdanau) attention, identical but for
the normalizer ("softmax" or "sparsemax", `dl.nn.attention`), trained from the same seed on the
same batches (`experiments._seq2seq`, En->De). BLEU: sacreBLEU of beam-search output on val
and test2016. Support: over the real target tokens of val (teacher forcing on the references),
the mean fraction of real source positions with a nonzero weight
(`dl.train.translation.attention_support`); softmax's is 100% by construction. The heatmaps
(attention.png) show both models' weights on the same val sentences, references forced.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import ml_collections
import numpy as np

from dl.data.translation import pair_loader, seq2seq_batch
from dl.report import at_least, at_most
from dl.report.heatmaps import attention_heatmaps
from dl.train import translation as tr
from experiments import _seq2seq as s2s
from experiments._fields import Choice, Int

PAPER = {
    "citation": "Martins & Astudillo 2016 (From softmax to sparsemax), sec. 4.3; Bahdanau, "
    "Cho & Bengio 2015",
    "claim": "Sparsemax attention performs on par with softmax attention while selecting only "
    "a few source words per step, which makes the alignments easier to read.",
    "published": "SNLI with attention (their table 4): softmax 81.2, sparsemax 82.2 accuracy; "
    "sparsemax attends to a small subset of the premise words",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "val BLEU sparsemax - softmax >= -1 (no more than 1 point below); sparsemax "
        "mean attention support <= 25% of the source positions",
        "full": "the same two",
    },
}
NORMALIZERS = ("softmax", "sparsemax")


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = s2s.base_config(scale)
    c.direction = "en-de"  # the translation direction
    c.beam_size = 5  # beam of the BLEU decoding
    c.heatmap_sentences = 3  # val sentences drawn in attention.png
    return c


FIELDS = {
    **s2s.BASE_FIELDS,
    "direction": Choice(s2s.DIRECTIONS),
    "beam_size": Int(lo=1),
    "heatmap_sentences": Int(lo=1),
}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    start = time.perf_counter()
    data = s2s.load(config, workdir, config.direction)
    val = data.splits["val"]
    metrics: dict[str, Any] = {"sizes": s2s.split_sizes(data), "table": []}
    panels = {}
    # The first val sentences as one unshuffled batch (one bucket keeps their order).
    n = min(config.heatmap_sentences, len(val))
    head = dataclasses.replace(val, src=val.src[:n], tgt=val.tgt[:n])
    longest = max(len(x) for x in head.src + head.tgt)
    batch = seq2seq_batch(
        pair_loader(head, n, seed=0, boundaries=[longest], shuffle=False).batch(0)
    )
    for name in NORMALIZERS:
        model = s2s.build(config, data, attention="additive", normalize=name)
        r = s2s.train(config, model, data, os.path.join(workdir, name), desc=name)
        row = {"normalize": name, "val_perplexity": r["val_perplexity"][0]}
        for split, label in s2s.SPLIT_NAMES.items():
            texts, _ = s2s.decode(config, model, r["params"], data, split, config.beam_size)
            row[f"{label}_bleu"], metrics["bleu_signature"] = s2s.bleu(texts, data.splits[split])
        row["support"] = tr.attention_support(model, r["params"], val, fast=config.fast_compile)
        metrics["table"].append(row)
        for k, v in row.items():
            if k != "normalize":
                metrics[f"{name}_{k}"] = v
        w = tr.attention_weights(
            model,
            r["params"],
            batch["src"],
            batch["src_lengths"],
            batch["tgt_in"],
            fast=config.fast_compile,
        )
        panels[name] = [_panel(data, w[i], i) for i in range(n)]
    attention_heatmaps(
        panels,
        os.path.join(workdir, "attention.png"),
        title="additive attention on val (references forced): softmax vs sparsemax",
    )
    metrics["bars"] = make_bars(metrics)
    metrics["total_time_s"] = time.perf_counter() - start
    for row in metrics["table"]:
        print(
            f"  {row['normalize']:>9}: val BLEU {row['val_bleu']:5.2f}  test2016 "
            f"{row['test2016_bleu']:5.2f}  support {100 * row['support']:5.1f}%  val ppl "
            f"{row['val_perplexity']:.2f}"
        )
    print("  paper (SNLI, their table 4): softmax 81.2 vs sparsemax 82.2 accuracy")
    return metrics


def _panel(data, weights: np.ndarray, i: int):
    """(weights [T, S] cut to the real tokens, source pieces + <eos>, predicted target pieces)."""
    val = data.splits["val"]
    src = [data.src_vocab.sp.id_to_piece(int(t)) for t in val.src[i]]
    tgt = [data.tgt_vocab.sp.id_to_piece(int(t)) for t in val.tgt[i][1:]]
    return weights[: len(tgt), : len(src)], src, tgt


def make_bars(metrics: dict) -> list:
    return [
        at_least(
            "val BLEU sparsemax - softmax",
            metrics["sparsemax_val_bleu"] - metrics["softmax_val_bleu"],
            -1.0,
            paper="on par (SNLI: 82.2 vs 81.2)",
        ),
        at_most(
            "sparsemax mean attention support (fraction of source positions)",
            metrics["sparsemax_support"],
            0.25,
            paper="a few words per step (softmax: all)",
        ),
    ]
