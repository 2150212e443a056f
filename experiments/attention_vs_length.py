"""Attention vs sentence length (Bahdanau, Cho & Bengio 2015, fig. 2): the RNN encoder-decoder
degrades as the source grows, the attentive RNNsearch does not.

Run:    python run.py attention_vs_length --scale quick
Expect: quick on a 2-core CPU: 133 CPU s (user 130 + sys 4; 408 s wall at load average ~14);
        greedy exact match on 600 test strings, length >= 40: rnnsearch 1.00 (bar >= 0.9,
        passes), rnnencdec 0.00 (bar <= 0.5, passes). By bucket [5,10) .. [50,60]: rnnsearch
        1.00 everywhere; rnnencdec 0.57, 0.01, then 0 from length 20 on. Full not run.

Quick (synthetic, CPU): reverse random strings of 5-60 symbols (10 symbols;
`dl.data.sequences.transduction`) with the same GRU encoder-decoder
(`dl.models.seq2seq.Seq2Seq`: bidirectional encoder, input-feeding decoder, hidden 64) with
additive (Bahdanau) attention ("rnnsearch") and without ("rnnencdec": the decoder sees only
the final encoder states). Exact-match accuracy (the whole output, EOS included, equals the
reversed string) of greedy decoding on a fixed test set, by source-length bucket. Greedy output
is exactly right iff every teacher-forced argmax is, so the per-chunk evaluation uses the
cheaper teacher-forced form and the final numbers are decoded (both are recorded).

Full adds the paper's own setting on Multi30K En->De (`experiments._seq2seq`, the
translation experiments' pipeline): both models trained, BLEU (sacreBLEU) of greedy test2016
translations by source-length bucket (source words).

Training: Adam with global-norm clipping and a cosine-decayed rate, fresh batches every step from `fold_in(data_key,
step)`, `chunk_steps` steps per jitted `lax.scan`, the loss the cross-entropy per real target
token (`dl.objectives.seq2seq.token_sums`); metrics.jsonl gets a row per chunk, the final
parameters are checkpointed. (Not `dl.train.generated.train_seeds`: its compiled programs
take no XLA options, and the smoke test needs the faster-compiling level 0.)
"""

from __future__ import annotations

import functools
import itertools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax import lax
from tqdm.auto import tqdm

from dl import optim
from dl.data.sequences import BOS, EOS, SYMBOL0, TRANSDUCTIONS, transduction
from dl.decode.sampling import greedy_decode
from dl.models.seq2seq import Seq2Seq, step_fn
from dl.objectives.seq2seq import token_sums
from dl.optim.schedules import warmup_cosine
from dl.report import at_least, at_most, plots
from dl.train.checkpoint import Checkpointer
from dl.train.loop import MetricsWriter, NonFiniteError
from experiments._fields import DATA_DIR, SCALES, SEED, Bool, Check, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Bahdanau, Cho & Bengio 2015, 'Neural machine translation by jointly learning "
    "to align and translate', fig. 2",
    "claim": "The encoder-decoder's BLEU drops sharply with sentence length; RNNsearch's does "
    "not (RNNsearch-50 stays flat up to 60 words and beyond).",
    "published": "fig. 2 (WMT'14 En->Fr): RNNencdec-30 falls from ~20 to under 10 BLEU beyond "
    "30-40 words; RNNsearch-50 ~27 BLEU up to 60 words",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "synthetic reversal, source length >= 40: exact match rnnsearch >= 0.9 and "
        "rnnencdec <= 0.5",
        "full": "as quick on the synthetic task; Multi30K BLEU by length reported",
    },
}

ARMS = {"rnnsearch": "additive", "rnnencdec": None}


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # model seeds derive from it, and the data and test keys
    # models: rnnsearch (additive attention), rnnencdec (none); smoke trains one (its cost is
    # compiling, ~15 CPU s a model)
    c.arms = ("rnnsearch",) if scale == "smoke" else tuple(ARMS)
    c.task = "reverse"  # synthetic task: reverse, sort or copy the string
    c.min_len = 5  # shortest source string
    c.max_len = {"smoke": 12, "quick": 60, "full": 60}[scale]  # longest (Bahdanau: up to 60)
    c.n_symbols = 10  # distinct symbols
    c.embed = {"smoke": 8, "quick": 32, "full": 64}[scale]  # embedding width
    c.hidden = {"smoke": 16, "quick": 64, "full": 128}[scale]  # decoder units (2 x H/2 encoder)
    c.cell = "gru"  # "gru" or "lstm"
    c.batch_size = 32  # fresh strings per step
    c.num_steps = {"smoke": 4, "quick": 900, "full": 5000}[scale]  # Adam steps per model
    # Adam's peak eta, cosine-decayed to 0 at num_steps (constant 6e-3 at quick swung the
    # long-string exact match between 45% and 86% from one eval to the next)
    c.learning_rate = {"smoke": 3e-3, "quick": 6e-3, "full": 3e-3}[scale]
    c.warmup_steps = 0  # linear warmup steps before the cosine
    c.clip_norm = 1.0  # global-norm clipping threshold
    c.chunk_steps = {"smoke": 2, "quick": 150, "full": 500}[scale]  # steps between evals
    c.test_size = {"smoke": 16, "quick": 600, "full": 2000}[scale]  # fixed test strings
    # bucket edges of source length: [5, 10), [10, 20), ... [50, 61)
    c.buckets = {"smoke": (5, 9, 13), "quick": (5, 10, 20, 30, 40, 50, 61)}.get(
        scale, (5, 10, 20, 30, 40, 50, 61)
    )
    c.long_len = {"smoke": 9, "quick": 40, "full": 40}[scale]  # the bars' "long": length >= it
    c.unroll = 1  # scan unroll (speed only; 4 compiled slower and ran no faster on CPU)
    c.fast_compile = scale == "smoke"  # XLA optimization level 0 (faster compile): smoke only
    c.multi30k = scale == "full"  # also BLEU by length on Multi30K En->De (full only)
    # settings of the Multi30K part: experiments._seq2seq.base_config(mt_scale)
    c.mt_scale = "full"
    c.data_dir = ""  # Multi30K root; "" = $DL_DATA_DIR, else <repo>/data, else ../shared/data
    c.progress = scale != "smoke"  # progress bars
    return c


FIELDS = {
    "seed": SEED,
    "arms": Tuple(Choice(tuple(ARMS))),
    "task": Choice(TRANSDUCTIONS),
    "min_len": Int(lo=1),
    "max_len": Int(lo=1),
    "n_symbols": Int(lo=1),
    "embed": Int(lo=1),
    "hidden": Int(lo=2),
    "cell": Choice(("gru", "lstm")),
    "batch_size": Int(lo=1),
    "num_steps": Int(lo=1),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "warmup_steps": Int(lo=0),
    "clip_norm": Float(lo=0.0, lo_open=True),
    "chunk_steps": Int(lo=1),
    "test_size": Int(lo=1),
    "buckets": Tuple(Int(lo=1)),
    "long_len": Int(lo=1),
    "unroll": Int(lo=1),
    "fast_compile": Bool(),
    "multi30k": Bool(),
    "mt_scale": Choice(SCALES),
    "data_dir": DATA_DIR,
    "progress": Bool(),
}

CHECKS = [
    Check(("min_len", "max_len"), lambda lo, hi: lo <= hi, "be <= max_len"),
    Check(("num_steps", "chunk_steps"), lambda n, c: n % c == 0, "be a multiple of chunk_steps"),
    Check(("warmup_steps", "num_steps"), lambda w, n: w < n, "be < num_steps"),
    Check(("long_len", "max_len"), lambda n, hi: n <= hi, "be <= max_len (a test set has them)"),
    Check(
        ("buckets", "min_len", "max_len"),
        lambda b, lo, hi: len(b) >= 2 and list(b) == sorted(set(b)) and b[0] <= lo and b[-1] > hi,
        "be increasing edges with buckets[0] <= min_len and buckets[-1] > max_len",
    ),
]


def build(config: ml_collections.ConfigDict, arm: str) -> Seq2Seq:
    vocab = SYMBOL0 + config.n_symbols
    return Seq2Seq(
        vocab,
        vocab,
        embed=config.embed,
        hidden=config.hidden,
        cell=config.cell,
        attention=ARMS[arm],
        unroll=config.unroll,
    )


def _split(batch: dict) -> tuple[tuple, tuple]:
    return (batch["src"], batch["src_lengths"], batch["tgt_in"]), (
        batch["tgt_out"],
        batch["tgt_mask"],
    )


def exact_match(logits: jax.Array, tgt_out: jax.Array, tgt_mask: jax.Array) -> jax.Array:
    """[B] bool: every real target token (EOS included) is the argmax of its teacher-forced
    logits, which is exactly when greedy decoding reproduces the target."""
    hit = (jnp.argmax(logits, axis=-1) == tgt_out) | (tgt_mask == 0)
    return jnp.all(hit, axis=-1)


def bucket_means(values: np.ndarray, lengths: np.ndarray, edges) -> list[float]:
    """Mean of values per bucket [edges[i], edges[i + 1]) of lengths (NaN for an empty one)."""
    out = []
    for lo, hi in itertools.pairwise(edges):
        sel = (lengths >= lo) & (lengths < hi)
        out.append(float(np.mean(values[sel])) if sel.any() else float("nan"))
    return out


def greedy_exact(model: Seq2Seq, params, test: dict, max_len: int, fast=False) -> np.ndarray:
    """[B] bool: greedy decoding (stopping at EOS) outputs exactly the target."""

    def run(params):
        state = model.apply({"params": params}, test["src"], test["src_lengths"], method="start")
        start = jnp.full(test["src"].shape[:1], BOS, jnp.int32)
        tokens, _, _ = greedy_decode(
            step_fn(model), params, state, start, eos=EOS, max_len=max_len + 1
        )
        return tokens

    tokens = np.asarray(_jit(run, fast)(params))
    target = np.where(np.asarray(test["tgt_mask"]) > 0, np.asarray(test["tgt_out"]), 0)
    return np.all(tokens == target, axis=1)


def _jit(fn, fast: bool):
    # XLA's CPU compile dominates a smoke run; level 0 compiles ~2.5x faster, runs ~2x slower.
    return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0} if fast else None)


def train_arm(config, arm: str, test: dict, workdir: str, writer: MetricsWriter) -> dict:
    """Trains one model of `arm` on fresh batches (step t's batch from fold_in(data_key, t)),
    evaluating the teacher-forced exact match every chunk; returns its history and the final
    greedy exact match by bucket. The final parameters are checkpointed under workdir/arm."""
    model = build(config, arm)
    model_key, data_key = jax.random.split(jax.random.PRNGKey(config.seed), 2)
    draw = functools.partial(
        transduction,
        batch=config.batch_size,
        min_len=config.min_len,
        max_len=config.max_len,
        n_symbols=config.n_symbols,
        task=config.task,
    )
    fast = config.fast_compile
    x0, _ = _split(draw(data_key))
    params = _jit(model.init, fast)(model_key, *x0)["params"]
    lr = warmup_cosine(config.learning_rate, config.warmup_steps, config.num_steps)
    tx = optax.chain(optim.clip_by_global_norm(config.clip_norm), optim.adam(lr))
    opt_state = tx.init(params)

    def loss_fn(params, batch):
        logits = model.apply({"params": params}, *_split(batch)[0])
        sums = token_sums(logits, batch["tgt_out"], batch["tgt_mask"])
        return sums["loss"] / jnp.maximum(sums["count"], 1.0)

    def chunk(params, opt_state, first):
        def step(carry, t):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, draw(jax.random.fold_in(data_key, t)))
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        steps = first + jnp.arange(config.chunk_steps, dtype=jnp.int32)
        (params, opt_state), losses = lax.scan(step, (params, opt_state), steps)
        return params, opt_state, jnp.mean(losses)

    x_test, (out_test, mask_test) = _split(test)
    long = (test["src_lengths"] >= config.long_len).astype(jnp.float32)

    def evaluate(params):
        hit = exact_match(model.apply({"params": params}, *x_test), out_test, mask_test)
        hit = hit.astype(jnp.float32)
        return jnp.mean(hit), jnp.sum(hit * long) / jnp.maximum(jnp.sum(long), 1.0)

    chunk, evaluate = _jit(chunk, fast), _jit(evaluate, fast)
    history = []
    n_chunks = -(-config.num_steps // config.chunk_steps)
    for c in tqdm(range(n_chunks), desc=arm, disable=not config.progress):
        params, opt_state, loss = chunk(params, opt_state, jnp.int32(c * config.chunk_steps))
        exact, exact_long = evaluate(params)
        row = {
            "arm": arm,
            "step": (c + 1) * config.chunk_steps,
            "loss": float(loss),
            "test_exact": float(exact),
            "test_exact_long": float(exact_long),
        }
        if not np.isfinite(row["loss"]):
            raise NonFiniteError(f"{arm}: non-finite loss in the chunk ending at {row['step']}")
        writer.write([row])
        history.append(row)
    Checkpointer(os.path.join(workdir, arm)).save(history[-1]["step"], params, {"arm": arm})
    lengths = np.asarray(test["src_lengths"])
    exact = greedy_exact(model, params, test, config.max_len, fast).astype(np.float64)
    return {
        "steps": [r["step"] for r in history],
        "history_long": [r["test_exact_long"] for r in history],
        "teacher_forced_final": history[-1]["test_exact"],
        "greedy_exact": float(exact.mean()),
        "greedy_exact_long": float(exact[lengths >= config.long_len].mean()),
        "by_bucket": bucket_means(exact, lengths, config.buckets),
    }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    writer = MetricsWriter(os.path.join(workdir, "metrics.jsonl"), resume_step=None)  # fresh
    test_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 10**6)
    test = transduction(
        test_key,
        batch=config.test_size,
        min_len=config.min_len,
        max_len=config.max_len,
        n_symbols=config.n_symbols,
        task=config.task,
    )
    results = {arm: train_arm(config, arm, test, workdir, writer) for arm in config.arms}
    edges = list(config.buckets)
    centers = [(lo + hi - 1) / 2 for lo, hi in itertools.pairwise(edges)]
    plots.curves(
        {arm: (centers, r["by_bucket"]) for arm, r in results.items()},
        f"{workdir}/accuracy_vs_length.png",
        xlabel="source length (symbols), bucket centre",
        ylabel="exact-match accuracy (greedy)",
        title=f"{config.task} strings of {config.min_len}-{config.max_len} symbols",
    )
    plots.curves(
        {arm: (r["steps"], r["history_long"]) for arm, r in results.items()},
        f"{workdir}/learning_curves.png",
        xlabel="training step",
        ylabel=f"test exact match, length >= {config.long_len}",
    )
    metrics: dict[str, Any] = {"buckets": edges, "test_lengths": _counts(test, edges)}
    for arm, r in results.items():
        metrics[f"{arm}_exact"] = r["greedy_exact"]
        metrics[f"{arm}_exact_long"] = r["greedy_exact_long"]
        metrics[f"{arm}_exact_by_bucket"] = r["by_bucket"]
        metrics[f"{arm}_teacher_forced_exact"] = r["teacher_forced_final"]
    if config.multi30k:
        metrics["multi30k"] = multi30k_bleu_by_length(config, workdir)
    bars = []
    if config.max_len >= config.long_len:
        if "rnnsearch" in results:
            bars.append(
                at_least(
                    f"rnnsearch exact match, length >= {config.long_len}",
                    metrics["rnnsearch_exact_long"],
                    0.9,
                    paper="RNNsearch-50 flat up to 60 words (fig. 2)",
                )
            )
        if "rnnencdec" in results:
            bars.append(
                at_most(
                    f"rnnencdec exact match, length >= {config.long_len}",
                    metrics["rnnencdec_exact_long"],
                    0.5,
                    paper="RNNencdec degrades with length (fig. 2)",
                )
            )
    metrics["bars"] = bars
    for key, v in metrics.items():
        if isinstance(v, float):
            print(f"  {key}: {v:.4g}")
    return metrics


def _counts(test: dict, edges) -> list[int]:
    lengths = np.asarray(test["src_lengths"])
    return [int(np.sum((lengths >= lo) & (lengths < hi))) for lo, hi in itertools.pairwise(edges)]


# Multi30K source-length buckets (words): Bahdanau et al. bin sentences by length the same way.
MT_BUCKETS = (1, 10, 15, 20, 25, 100)


def multi30k_bleu_by_length(config, workdir: str) -> dict[str, Any]:
    """Full scale only: En->De with and without attention (the translation experiments'
    pipeline at its `mt_scale` settings), sacreBLEU of greedy test2016 output per source-length
    bucket. Needs experiments/_seq2seq.py and the Multi30K files."""
    try:
        from dl.eval.bleu import corpus_bleu
        from experiments import _seq2seq as s2s
    except ImportError as e:  # the translation pipeline lives with the translation experiments
        raise RuntimeError(
            "attention_vs_length's Multi30K part needs experiments/_seq2seq.py, "
            f"dl.data.translation and dl.eval.bleu ({e}); run with --config.multi30k=False"
        ) from e
    mt = s2s.base_config(config.mt_scale)
    mt.seed, mt.data_dir, mt.progress = config.seed, config.data_dir, config.progress
    data = s2s.load(mt, workdir)
    split = data.splits["test"]
    words = np.array([len(s.split()) for s in split.src_text])
    out: dict[str, Any] = {"buckets": list(MT_BUCKETS)}
    for arm, attention in ARMS.items():
        model = s2s.build(mt, data, attention=attention)
        trained = s2s.train(mt, model, data, os.path.join(workdir, f"mt_{arm}"), desc=arm)
        texts, _ = s2s.decode(mt, model, trained["params"], data, "test", beam=0)
        scores, signature = [], ""
        for lo, hi in itertools.pairwise(MT_BUCKETS):
            idx = [i for i in range(len(texts)) if lo <= words[i] < hi]
            if not idx:
                scores.append(float("nan"))
                continue
            bleu = corpus_bleu([texts[i] for i in idx], [split.ref_text[i] for i in idx])
            scores.append(bleu.score)
            signature = bleu.signature
        out[f"{arm}_bleu_by_length"] = scores
        out[f"{arm}_bleu"] = s2s.bleu(texts, split)[0]
        out["signature"] = signature
    centers = [(lo + hi - 1) / 2 for lo, hi in itertools.pairwise(MT_BUCKETS)]
    plots.curves(
        {arm: (centers, out[f"{arm}_bleu_by_length"]) for arm in ARMS},
        f"{workdir}/bleu_vs_length.png",
        xlabel="source length (words), bucket centre",
        ylabel="test2016 BLEU (greedy)",
        title="Multi30K En->De",
    )
    return out
