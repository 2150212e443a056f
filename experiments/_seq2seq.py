"""Shared settings of the Multi30K translation experiments (multi30k_translation,
source_reversal, beam_search, sparse_attention): the common config fields and their FIELDS,
loading the data, building a `Seq2Seq`, training a stack of seeds and scoring its
translations with sacreBLEU. The experiment files add their own fields and bars.

Scales: smoke runs on the synthetic Multi30K fixture (a 40-word grammar) in seconds; quick is
a tiny model (embed = hidden = 64, 1000 BPE pieces a language) on the pairs with at most 15
pieces a side (train 7515 of 29000 pairs, val 264 of 1014, test2016 286 of 1000 for
En->De), a few hundred steps; full is a GPU-sized model on every pair.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from dl.data.translation import Split, Translation, load_translation
from dl.eval.bleu import corpus_bleu
from dl.models.seq2seq import Seq2Seq
from dl.train import translation as tr
from experiments._fields import DATA_DIR, SCALES, SEED, Bool, Choice, Float, Int, Tuple

DIRECTIONS = ("en-de", "de-en")
SPLIT_NAMES = {"val": "val", "test": "test2016"}


def base_config(scale: str) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.scale = scale  # selects the bars
    c.seed = 0  # first model seed (model i of a stack uses seed + i); data order too
    c.data_dir = ""  # data root; "" = $DL_DATA_DIR, else <repo>/data, else ../shared/data
    c.train_sentences = {"smoke": 2000, "quick": 0, "full": 0}[scale]  # first N lines; 0 all
    c.eval_sentences = {"smoke": 40, "quick": 0, "full": 0}[scale]  # first N val/test; 0 all
    # sentencepiece BPE pieces per language (specials included), trained on train only
    c.vocab_size = {"smoke": 100, "quick": 1000, "full": 8000}[scale]
    # keep train pairs with at most this many pieces a side (0: all); quick: <= 15
    c.max_len = {"smoke": 15, "quick": 15, "full": 80}[scale]
    # the same filter on val / test2016 (0: every sentence is scored, as in the papers)
    c.eval_max_len = {"smoke": 15, "quick": 15, "full": 0}[scale]
    c.embed = {"smoke": 16, "quick": 64, "full": 256}[scale]  # embedding width
    c.hidden = {"smoke": 16, "quick": 64, "full": 512}[scale]  # decoder units (encoder: 2 x H/2)
    c.cell = "gru"  # "gru" or "lstm"
    c.num_layers = 1  # encoder and decoder layers
    c.dropout = {"smoke": 0.0, "quick": 0.0, "full": 0.3}[scale]  # see dl.models.seq2seq
    c.input_feeding = True  # Luong et al.'s input feeding (attentive models)
    c.batch_size = {"smoke": 16, "quick": 64, "full": 64}[scale]  # pairs per step
    c.num_steps = {"smoke": 10, "quick": 400, "full": 15000}[scale]  # steps per model
    c.learning_rate = {"smoke": 3e-3, "quick": 3e-3, "full": 1e-3}[scale]  # Adam
    c.clip_norm = 5.0  # per-model global gradient-norm clip
    # bucket edges (in tokens, specials included) of the train batches; one compile each
    c.boundaries = {"smoke": (17,), "quick": (17,), "full": (12, 16, 20, 25, 32, 45, 82)}[scale]
    c.eval_every = {"smoke": 0, "quick": 0, "full": 1000}[scale]  # val perplexity; 0: at end
    c.decode_len = {"smoke": 20, "quick": 20, "full": 80}[scale]  # max generated tokens
    c.alpha = 0.6  # beam length normalization ((5 + |Y|) / 6) ** alpha (Wu et al. 2016)
    c.progress = scale != "smoke"  # progress bars
    # compile at XLA optimization level 0 (2.5x faster compiles, 2x slower steps): smoke only
    c.fast_compile = scale == "smoke"
    return c


BASE_FIELDS = {
    "scale": Choice(SCALES),
    "seed": SEED,
    "data_dir": DATA_DIR,
    "train_sentences": Int(lo=0),
    "eval_sentences": Int(lo=0),
    "vocab_size": Int(lo=8),
    "max_len": Int(lo=0),
    "eval_max_len": Int(lo=0),
    "embed": Int(lo=1),
    "hidden": Int(lo=2),
    "cell": Choice(("gru", "lstm")),
    "num_layers": Int(lo=1),
    "dropout": Float(lo=0.0, hi=1.0, hi_open=True),
    "input_feeding": Bool(),
    "batch_size": Int(lo=1),
    "num_steps": Int(lo=1),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "clip_norm": Float(lo=0.0, lo_open=True),
    "boundaries": Tuple(Int(lo=2)),
    "eval_every": Int(lo=0),
    "decode_len": Int(lo=1),
    "alpha": Float(lo=0.0),
    "progress": Bool(),
    "fast_compile": Bool(),
}


def load(config, workdir: str, direction: str = "en-de", reverse_source: bool = False):
    """The direction's `Translation` (subword models saved in workdir)."""
    src, tgt = direction.split("-")
    return load_translation(
        src,
        tgt,
        workdir=workdir,
        vocab_size=config.vocab_size,
        max_len=config.max_len,
        eval_max_len=config.eval_max_len,
        reverse_source=reverse_source,
        train_sentences=config.train_sentences,
        eval_sentences=config.eval_sentences,
        data_dir=config.data_dir or None,
    )


def build(config, data: Translation, *, attention=None, normalize="softmax", **kw) -> Seq2Seq:
    return Seq2Seq(
        len(data.src_vocab),
        len(data.tgt_vocab),
        embed=config.embed,
        hidden=config.hidden,
        cell=config.cell,
        attention=attention,
        normalize=normalize,
        input_feeding=config.input_feeding,
        num_layers=config.num_layers,
        dropout=config.dropout,
        **kw,
    )


def train(config, model: Seq2Seq, data: Translation, workdir: str, *, seeds=1, desc="") -> dict:
    """Trains a stack of ``seeds`` models (seeds config.seed, config.seed + 1, ...)."""
    boundaries = list(config.boundaries)
    longest = max(
        max(len(s), len(t)) for s, t in zip(data.splits["train"].src, data.splits["train"].tgt)
    )
    if boundaries[-1] < longest:
        boundaries.append(longest)
    return tr.train_stack(
        model,
        data.splits["train"],
        data.splits["val"],
        seeds=[config.seed + i for i in range(seeds)],
        batch_size=config.batch_size,
        num_steps=config.num_steps,
        learning_rate=config.learning_rate,
        clip_norm=config.clip_norm,
        workdir=workdir,
        boundaries=boundaries,
        eval_every=config.eval_every,
        data_seed=config.seed,
        resume=config.get("resume", False),
        progress=config.progress,
        desc=desc,
        fast=config.fast_compile,
    )


def decode(config, model, params, data: Translation, split: str, beam: int, alpha=None):
    """(texts, ids) of the stack's translations of ``split``: greedy (beam 0) or beam search."""
    ids = tr.translate(
        model,
        params,
        data.splits[split],
        beam_size=beam,
        alpha=config.alpha if alpha is None else alpha,
        max_len=config.decode_len,
        pad_to=config.eval_max_len + 1 if config.eval_max_len else 0,
        fast=config.fast_compile,
    )
    return [data.tgt_vocab.decode(y) for y in ids], ids


def bleu(texts: list[str], split: Split) -> tuple[float, str]:
    """sacreBLEU of detokenized output against the raw references of the split."""
    return tuple(corpus_bleu(texts, split.ref_text))


def examples(data: Translation, split: str, texts: list[str], n: int = 3) -> list[dict[str, Any]]:
    s = data.splits[split]
    return [{"src": s.src_text[i], "ref": s.ref_text[i], "hyp": texts[i]} for i in range(n)]


def split_sizes(data: Translation) -> dict[str, int]:
    return {k: len(v) for k, v in data.splits.items()}
