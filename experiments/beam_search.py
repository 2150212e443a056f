"""Beam search and decode-time ensembles (Sutskever, Vinyals & Le 2014, table 1, reprinted by
seed 004): BLEU and the model's log-probability of its output against the beam size, with and
without length normalization, and for ensembles of 1, 2 and 4 attentive models.

Run:    python run.py beam_search --scale quick
Expect: quick (En->De, 4 Bahdanau models of embed = hidden = 64, 400 steps; 264 val sentences
        of <= 15 pieces): 136 CPU-s (109 user + 26 sys), 85 s wall on the idle 2 cores
        (253 CPU-s at load ~10). Val BLEU / mean log p, single model: greedy 24.29 / -14.14; beam
        1 24.29; beam 2 25.86 (alpha 0) 26.08 (alpha 0.6); beam 5 25.84 / 25.94 (log p
        -10.86); beam 12 24.92 / 25.52 (log p -10.05). Ensembles (alpha 0.6): 2 models beam 1
        25.27, beam 12 27.75; 4 models beam 1 27.44, beam 12 29.21. Bars PASS: beam 1 ==
        greedy on 100% of sentences; beam 5 log p >= greedy's on 97.7%; beam 5 BLEU - greedy
        = +1.65.

One stack of `ensemble_size` Bahdanau-attention models (`experiments._seq2seq`, trained
together as a `vmap`, seeds seed .. seed + n - 1) is trained once on En->De. Member 0 alone is
decoded greedily (`dl.decode.sampling`) and by `dl.decode.beam.beam_search` at every beam
size, with alpha = 0 (raw log-probability) and alpha = `alpha` (Wu et al.'s ((5 + |Y|) / 6)
** alpha); the first `k` members as an ensemble (mean of their log-probabilities per step)
are decoded at `ensemble_beams`. The "model score" of an output is log p(Y | X) under member
0, recomputed by teacher forcing (`dl.train.translation.log_probs`), independent of the
search's own bookkeeping; it is reported as the mean over val sentences.
"""

from __future__ import annotations

import os
import time
from typing import Any

import ml_collections
import numpy as np

from dl.report import at_least
from dl.train import translation as tr
from experiments import _seq2seq as s2s
from experiments._fields import Check, Choice, Int, Tuple

PAPER = {
    "citation": "Sutskever, Vinyals & Le 2014 (Sequence to sequence learning with neural "
    "networks), table 1",
    "claim": "Beam search beats greedy decoding, a small beam gets most of the gain, and "
    "ensembles of independently trained models help at every beam size.",
    "published": "WMT'14 En->Fr test BLEU (their table 1): single forward LSTM, beam 12: 26.17; "
    "single reversed LSTM, beam 12: 30.59; ensemble of 5 reversed LSTMs, beam 1: 33.00; beam "
    "2: 34.50; beam 12: 34.81",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "beam 1 output == greedy output on every val sentence (alpha 0); beam 5 model "
        "log-prob >= greedy's on >= 95% of val sentences (alpha 0); beam 5 val BLEU (alpha = "
        "`alpha`) >= greedy val BLEU",
        "full": "the same three",
    },
}
SEED_TABLE = [  # Sutskever et al. 2014 table 1 (WMT'14 En->Fr test), as seed 004 reprints it
    {"system": "single forward LSTM", "beam": 12, "bleu": 26.17},
    {"system": "single reversed LSTM", "beam": 12, "bleu": 30.59},
    {"system": "ensemble of 5 reversed LSTMs", "beam": 1, "bleu": 33.00},
    {"system": "ensemble of 5 reversed LSTMs", "beam": 2, "bleu": 34.50},
    {"system": "ensemble of 5 reversed LSTMs", "beam": 12, "bleu": 34.81},
]


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = s2s.base_config(scale)
    c.direction = "en-de"  # the translation direction
    # beam sizes for the single model (1 must be among them for the greedy bar, 5 for the
    # others); each size compiles a decoder
    c.beams = (1, 5) if scale == "smoke" else (1, 2, 5, 12)
    c.ensemble_size = 2 if scale == "smoke" else 4  # models trained (the largest ensemble)
    c.ensembles = (2,) if scale == "smoke" else (2, 4)  # ensemble sizes decoded (1: the beams)
    c.ensemble_beams = (1,) if scale == "smoke" else (1, 12)  # beams for the ensembles
    return c


FIELDS = {
    **s2s.BASE_FIELDS,
    "direction": Choice(s2s.DIRECTIONS),
    "beams": Tuple(Int(lo=1)),
    "ensemble_size": Int(lo=1),
    "ensembles": Tuple(Int(lo=1), min_len=0),
    "ensemble_beams": Tuple(Int(lo=1)),
}
CHECKS = [
    Check(("beams",), lambda b: 1 in b and 5 in b, "include 1 and 5 (the bars compare them)"),
    Check(
        ("ensembles", "ensemble_size"),
        lambda e, n: all(k <= n for k in e),
        "be at most ensemble_size",
    ),
]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    start = time.perf_counter()
    data = s2s.load(config, workdir, config.direction)
    val = data.splits["val"]
    model = s2s.build(config, data, attention="additive")
    r = s2s.train(
        config,
        model,
        data,
        os.path.join(workdir, "bahdanau"),
        seeds=config.ensemble_size,
        desc="bahdanau",
    )
    one = tr.slice_stack(r["params"], 0)
    fast = config.fast_compile

    def score(ids) -> np.ndarray:
        return tr.log_probs(model, one, val, ids, fast=fast)

    rows, outputs = [], {}
    texts, greedy_ids = s2s.decode(config, model, one, data, "val", 0)
    rows_texts = [texts]
    greedy_lp = score(greedy_ids)
    rows.append(_row("single", "greedy", 0.0, texts, val, greedy_lp))
    for beam in config.beams:
        for alpha in (0.0, config.alpha):
            texts, ids = s2s.decode(config, model, one, data, "val", beam, alpha=alpha)
            lp = score(ids)
            outputs[(beam, alpha)] = (ids, lp)
            rows.append(_row("single", f"beam{beam}", alpha, texts, val, lp))
    for k in config.ensembles:
        params = tr.first_models(r["params"], k)
        for beam in config.ensemble_beams:
            texts, ids = s2s.decode(config, model, params, data, "val", beam)
            rows.append(
                _row(f"ensemble of {k}", f"beam{beam}", config.alpha, texts, val, score(ids))
            )
    beam1 = outputs[(1, 0.0)][0]
    beam5_lp = outputs[(5, 0.0)][1]
    same = np.mean([np.array_equal(a, b) for a, b in zip(beam1, greedy_ids)])
    metrics: dict[str, Any] = {
        "table": rows,
        "seed_table": SEED_TABLE,
        "bleu_signature": s2s.bleu(rows_texts[0], val)[1],
        "val_sentences": len(val),
        "val_perplexity": r["val_perplexity"],
        "beam1_equals_greedy": float(same),
        "beam5_score_at_least_greedy": float(np.mean(beam5_lp >= greedy_lp - 1e-4)),
        "beam5_mean_log_prob_gain": float(np.mean(beam5_lp - greedy_lp)),
        "train_time_s": r["train_time_s"],
    }
    greedy_bleu = rows[0]["val_bleu"]
    beam5_bleu = next(
        x["val_bleu"]
        for x in rows
        if x["system"] == "single" and x["decoding"] == "beam5" and x["alpha"] == config.alpha
    )
    metrics["greedy_val_bleu"], metrics["beam5_val_bleu"] = greedy_bleu, beam5_bleu
    metrics["bars"] = [
        at_least(
            "fraction of val sentences where beam 1 == greedy (alpha 0)",
            same,
            1.0,
            paper="beam 1 is greedy decoding",
        ),
        at_least(
            "fraction of val sentences where beam 5 log p >= greedy's (alpha 0)",
            metrics["beam5_score_at_least_greedy"],
            0.95,
            paper="a wider beam finds more probable output",
        ),
        at_least(
            f"val BLEU beam 5 (alpha {config.alpha:g}) - greedy",
            beam5_bleu - greedy_bleu,
            0.0,
            paper="ensemble of 5: beam 12 34.81 vs beam 1 33.00",
        ),
    ]
    metrics["total_time_s"] = time.perf_counter() - start
    print("  ours (Multi30K En->De val)                      | seed 004 / Sutskever et al. table 1")
    for i, row in enumerate(rows):
        seed = SEED_TABLE[i] if i < len(SEED_TABLE) else None
        right = f"{seed['system']}, beam {seed['beam']}: {seed['bleu']:.2f}" if seed else ""
        print(
            f"  {row['system']:>14} {row['decoding']:>7} a={row['alpha']:<4g} BLEU "
            f"{row['val_bleu']:5.2f} log p {row['mean_log_prob']:7.2f} | {right}"
        )
    return metrics


def _row(system, decoding, alpha, texts, split, lp) -> dict[str, Any]:
    return {
        "system": system,
        "decoding": decoding,
        "alpha": float(alpha),
        "val_bleu": s2s.bleu(texts, split)[0],
        "mean_log_prob": float(np.mean(lp)),
        "mean_length": float(np.mean([len(t.split()) for t in texts])),
    }
