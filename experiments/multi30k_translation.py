"""Multi30K translation (Elliott et al. 2016) with recurrent encoder-decoders: no attention
(Cho et al. 2014 / Sutskever et al. 2014), Bahdanau attention (Bahdanau et al. 2015), Luong
general attention (Luong et al. 2015), sparsemax attention (Martins & Astudillo 2016) and an
ensemble of attentive models; greedy and beam search; sacreBLEU on val and test2016.

Run:    python run.py multi30k_translation --scale quick
Expect: quick (En->De only; 7515 train pairs, 264 val / 286 test2016 sentences of <= 15
        pieces; embed = hidden = 64, 1000 pieces a language, 400 steps of 64 per model):
        201 CPU-s (167 user + 34 sys), 129 s wall on the idle 2 cores (355 CPU-s at load
        ~15; half of it XLA compiles). sacreBLEU val / test2016, greedy -> beam 5:
        no_attention 12.01 -> 12.20 / 11.90 -> 12.02; bahdanau 24.29 -> 25.94 / 22.51 ->
        23.03; luong_general 21.85 -> 22.84 / 22.31 -> 22.61; sparsemax 23.53 -> 25.32 /
        23.12 -> 23.36; ensemble of 4 27.44 -> 28.85 / 25.11 -> 25.56. Quick bars PASS:
        Bahdanau val 25.94 >= 10, and 13.74 above no_attention. De->En at quick
        (`--config.directions='("de-en",)'`; the bars are En->De's): beam 5 val / test2016
        no_attention 12.10 / 12.70, bahdanau 27.01 / 24.62, luong_general 24.22 / 23.51,
        sparsemax 27.59 / 25.71, ensemble 29.13 / 28.76; 196 CPU-s, 124 s wall on the idle
        2 cores. Full scale not run.

Every system is the same `dl.models.seq2seq.Seq2Seq` (bidirectional GRU encoder, GRU decoder
with input feeding, `experiments._seq2seq` settings) and differs only in its attention:
no_attention (the decoder sees the encoder summary), bahdanau (additive, softmax),
luong_general (general, softmax), sparsemax (additive, sparsemax). The ensemble is
`ensemble_size` Bahdanau models trained together as one `vmap`-ed stack (seeds seed ..
seed + n - 1, same batches, different initializations), decoded by averaging their
log-probabilities at every step (`dl.decode.beam.ensemble_step_fn`); the "bahdanau" system is
its first member alone. BLEU is sacreBLEU's corpus BLEU of the detokenized output against the
raw references (signature in results.json). Quick trains En->De only and scores the val and
test2016 sentences of at most 15 pieces a side (`_seq2seq` docstring); full scores every
sentence of both directions.
"""

from __future__ import annotations

import os
import time
from typing import Any

import ml_collections

from dl.report import at_least
from experiments import _seq2seq as s2s
from experiments._fields import Choice, Int, Tuple

PAPER = {
    "citation": "Bahdanau, Cho & Bengio 2015 (ICLR); Luong, Pham & Manning 2015 (EMNLP); "
    "Elliott, Frank, Sima'an & Specia 2016 (Multi30K); Martins & Astudillo 2016 (sparsemax); "
    "Sutskever, Vinyals & Le 2014 (ensembles)",
    "claim": "Attention lifts a recurrent encoder-decoder well above the fixed-vector model; "
    "beam search and ensembles add more.",
    "published": "WMT'14 En->Fr (Bahdanau et al. table 1): RNNsearch-50 26.75 vs RNNencdec-50 "
    "17.82 BLEU. Multi30K test2016 En->De: text-only attentive NMT systems report about 34-38 "
    "BLEU (context for the full bar).",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "En->De val BLEU (beam 5) of Bahdanau attention >= 10 and above no_attention's",
        "full": "En->De test2016 BLEU of the best single model >= 35.0; ensemble >= best single",
    },
}

SYSTEMS = {  # name -> Seq2Seq attention settings
    "no_attention": {"attention": None},
    "bahdanau": {"attention": "additive"},
    "luong_general": {"attention": "general"},
    "sparsemax": {"attention": "additive", "normalize": "sparsemax"},
}
ALL = (*SYSTEMS, "ensemble")


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = s2s.base_config(scale)
    # translation directions; quick: En->De only (2 CPU minutes), full: both
    c.directions = ("en-de", "de-en") if scale == "full" else ("en-de",)
    # systems to train and score (ensemble trains `ensemble_size` Bahdanau models, whose first
    # member is "bahdanau"); smoke: one architecture (compiling dominates a smoke run; the
    # attention-free model is smoke-tested by source_reversal)
    c.systems = ("bahdanau", "ensemble") if scale == "smoke" else ALL
    c.ensemble_size = 2 if scale == "smoke" else 4  # attentive models in the ensemble
    c.beam_size = 5  # the beam of the "beam" decoding (greedy is the other)
    return c


FIELDS = {
    **s2s.BASE_FIELDS,
    "directions": Tuple(Choice(s2s.DIRECTIONS)),
    "systems": Tuple(Choice(ALL)),
    "ensemble_size": Int(lo=1),
    "beam_size": Int(lo=1),
}


def run_direction(config, direction: str, workdir: str) -> dict[str, Any]:
    os.makedirs(workdir, exist_ok=True)
    data = s2s.load(config, workdir, direction)
    stacks, trained = {}, {}
    wanted = set(config.systems)
    if {"bahdanau", "ensemble"} & wanted:
        n = config.ensemble_size if "ensemble" in wanted else 1
        model = s2s.build(config, data, **SYSTEMS["bahdanau"])
        r = s2s.train(config, model, data, f"{workdir}/bahdanau_x{n}", seeds=n, desc="bahdanau")
        trained["bahdanau"] = r
        if "bahdanau" in wanted:
            stacks["bahdanau"] = (model, s2s.tr.slice_stack(r["params"], 0))
        if "ensemble" in wanted:
            stacks["ensemble"] = (model, r["params"])
    for name in ("no_attention", "luong_general", "sparsemax"):
        if name in wanted:
            model = s2s.build(config, data, **SYSTEMS[name])
            r = s2s.train(config, model, data, f"{workdir}/{name}", desc=name)
            trained[name] = r
            stacks[name] = (model, r["params"])
    rows, signature = [], ""
    for name in [s for s in ALL if s in stacks]:
        model, params = stacks[name]
        for decoding, beam in (("greedy", 0), (f"beam{config.beam_size}", config.beam_size)):
            row = {"direction": direction, "system": name, "decoding": decoding}
            for split, label in s2s.SPLIT_NAMES.items():
                texts, _ = s2s.decode(config, model, params, data, split, beam)
                row[f"{label}_bleu"], signature = s2s.bleu(texts, data.splits[split])
                if split == "val" and decoding != "greedy":
                    row["examples"] = s2s.examples(data, split, texts)
            rows.append(row)
    return {
        "rows": rows,
        "signature": signature,
        "sizes": s2s.split_sizes(data),
        "val_perplexity": {k: r["val_perplexity"] for k, r in trained.items()},
        "train_time_s": {k: r["train_time_s"] for k, r in trained.items()},
        "param_count": {k: r["param_count"] for k, r in trained.items()},
    }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    start = time.perf_counter()
    metrics: dict[str, Any] = {"table": []}
    for direction in config.directions:
        r = run_direction(config, direction, os.path.join(workdir, direction))
        metrics["table"] += [{k: v for k, v in row.items() if k != "examples"} for row in r["rows"]]
        metrics["bleu_signature"] = r["signature"]
        for key in ("sizes", "val_perplexity", "train_time_s", "param_count"):
            metrics[f"{direction}_{key}"] = r[key]
        metrics[f"{direction}_examples"] = {
            row["system"]: row["examples"] for row in r["rows"] if "examples" in row
        }
        for row in r["rows"]:
            for label in s2s.SPLIT_NAMES.values():
                key = f"{direction}_{row['system']}_{row['decoding']}_{label}_bleu"
                metrics[key] = row[f"{label}_bleu"]
    metrics["bars"] = make_bars(config, metrics)
    metrics["total_time_s"] = time.perf_counter() - start
    print(f"  sacreBLEU {metrics.get('bleu_signature', '')}")
    for row in metrics["table"]:
        print(
            f"  {row['direction']} {row['system']:>13} {row['decoding']:>6}: "
            f"val {row['val_bleu']:6.2f}  test2016 {row['test2016_bleu']:6.2f}"
        )
    print(
        "  paper: RNNsearch-50 26.75 vs RNNencdec-50 17.82 (WMT'14 En->Fr); Multi30K "
        "test2016 En->De text-only NMT about 34-38"
    )
    return metrics


def make_bars(config, metrics: dict) -> list:
    bars = []
    beam = f"beam{config.beam_size}"
    get = lambda system, split: metrics.get(f"en-de_{system}_{beam}_{split}_bleu")
    if config.scale != "full" and get("bahdanau", "val") is not None:
        bars.append(
            at_least(
                "En->De val BLEU, Bahdanau attention",
                get("bahdanau", "val"),
                10.0,
                paper="RNNsearch >> RNNencdec (Bahdanau et al. table 1)",
            )
        )
        if get("no_attention", "val") is not None:
            bars.append(
                at_least(
                    "En->De val BLEU, Bahdanau - no attention",
                    get("bahdanau", "val") - get("no_attention", "val"),
                    0.0,
                    paper="26.75 - 17.82 = 8.93 (WMT'14 En->Fr)",
                )
            )
    if config.scale == "full":
        singles = [s for s in SYSTEMS if get(s, "test2016") is not None]
        if singles:
            best = max(singles, key=lambda s: get(s, "test2016"))
            bars.append(
                at_least(
                    f"En->De test2016 BLEU, best single ({best})",
                    get(best, "test2016"),
                    35.0,
                    paper="about 34-38",
                )
            )
            if get("ensemble", "test2016") is not None:
                bars.append(
                    at_least(
                        "En->De test2016 BLEU, ensemble - best single",
                        get("ensemble", "test2016") - get(best, "test2016"),
                        0.0,
                        paper="ensembles always help (Sutskever et al. 2014)",
                    )
                )
    return bars
