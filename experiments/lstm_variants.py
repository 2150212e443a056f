"""Greff et al. 2015 ("LSTM: a search space odyssey", fig. 3): the vanilla LSTM and its eight
one-change variants as character-level language models of Multi30K English, several seeds
each, every variant's seeds trained at once by `jax.vmap` (`dl.train.sweep`).

Run:    python run.py lstm_variants --scale quick
Expect: quick on a 2-core CPU: 165 CPU-s (user+sys; 292 s wall with the cores shared at load
        5-7); 5 seeds x 200 steps of 20 x 50 characters (0.1 epoch), H=64. Test perplexity per
        character, mean +- sd: vanilla 8.32 +- 0.26, NIG 8.11, NFG 9.11 (Welch p = 0.001),
        NOG 9.04, NIAF 8.25, NOAF 6.50 (p = 7e-6, BETTER), NP 8.21 (ratio 0.987), CIFG 8.49
        (1.021), FGR 9.07. Bars: NFG worse PASS, CIFG and NP within 3% PASS, NOAF worse FAILS
        (this early in training the unsquashed output h = o * c learns faster; Greff et al.
        compare converged, tuned models). Five times longer (1000 steps, vanilla and NOAF
        only, 70 CPU-s) NOAF still leads: 3.99 +- 0.03 against 4.79 +- 0.07 (p = 4e-7).

Variants (`dl.nn.recurrent.LSTM_VARIANTS`; vanilla has peepholes, as Greff's): NIG, NFG, NOG
(no input / forget / output gate), NIAF, NOAF (no input / output activation function), NP (no
peepholes), CIFG (coupled input and forget gate, f = 1 - i), FGR (full gate recurrence).
Greff et al. found NFG and NOAF significantly worse than vanilla on all three of their tasks
(speech, handwriting, music), and CIFG and NP about as good (Welch t-test, p < 0.05).

Setup: lowercased captions, one character per token, each line followed by <eos>, joined into
one stream; training batches are random windows of `seq_len` + 1 characters (the same windows
for every variant and seed), each started from a zero state; a seed changes the
initialization only. One recurrent layer of `hidden` cells between a character embedding and
the softmax. Perplexity per character over every character of the val / test2016 streams,
cut into consecutive windows of `seq_len` characters, each from a zero state as in training
(`stream_layout`); the test over seeds is scipy's Welch t-test on the test perplexities.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import scipy.stats

from dl import optim
from dl.data import text
from dl.data.multi30k import load_multi30k
from dl.eval.metrics import perplexity
from dl.models.language_model import RNNLM, zero_carry
from dl.nn.recurrent import LSTM_VARIANTS
from dl.objectives.language_model import chunk_nll, stream_layout, token_nll
from dl.report import Bar, at_most, plots
from dl.train import sweep
from experiments._fields import DATA_DIR, SCALES, SEED, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Greff, Srivastava, Koutnik, Steunebrink & Schmidhuber 2015, LSTM: A Search "
    "Space Odyssey (IEEE TNNLS 2017), fig. 3",
    "claim": "No variant improves on the vanilla LSTM significantly; removing the forget gate "
    "(NFG) or the output activation (NOAF) hurts significantly; coupling the input and forget "
    "gates (CIFG) or removing peepholes (NP) does not hurt.",
    "published": "qualitative (box plots over 200 random-search trials per variant on TIMIT, "
    "IAM Online, JSB Chorales; Welch t-test p < 0.05)",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "NFG and NOAF test perplexity worse than vanilla's (Welch t-test over seeds, "
        "p < 0.05); CIFG and NP mean test perplexity within 3% of vanilla's",
        "full": "as quick",
    },
}
VARIANTS = ("vanilla",) + tuple(v for v in LSTM_VARIANTS if v != "vanilla")


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.scale = scale  # recorded with the results (the bars are the same at every scale)
    c.seed = 0  # base of the per-seed keys and of the window order
    c.data_dir = ""  # data root; "" = $DL_DATA_DIR, else <repo>/data, else ../shared/data
    # Which LSTMs to train (vanilla first: the reference); smoke: one, since each variant's
    # sweep compiles for ~8 CPU-s (the comparisons are unit-tested on made-up rows).
    c.variants = ("NOAF",) if scale == "smoke" else VARIANTS
    c.num_seeds = {"smoke": 2, "quick": 5, "full": 10}[scale]  # models per variant (vmapped)
    c.train_sentences = {"smoke": 300, "quick": 0, "full": 0}[scale]  # first N lines; 0 = all
    c.eval_sentences = {"smoke": 40, "quick": 300, "full": 0}[scale]  # val/test lines; 0 = all
    c.hidden = {"smoke": 16, "quick": 64, "full": 256}[scale]  # LSTM cells
    c.embed = {"smoke": 8, "quick": 32, "full": 64}[scale]  # character embedding width
    c.seq_len = {"smoke": 20, "quick": 50, "full": 100}[scale]  # characters per window
    c.batch_size = {"smoke": 8, "quick": 20, "full": 64}[scale]  # windows per step
    c.num_steps = {"smoke": 10, "quick": 200, "full": 20000}[scale]  # Adam steps per model
    c.learning_rate = 5e-3  # Adam, the same for every variant
    c.clip_norm = 1.0  # global gradient-norm clip
    c.eval_rows = {"smoke": 4, "quick": 256, "full": 256}[scale]  # evaluation windows per call
    c.alpha = 0.05  # significance level of the Welch t-tests
    c.tolerance = 0.03  # CIFG / NP: |mean perplexity / vanilla's - 1| bound
    return c


FIELDS = {
    "scale": Choice(SCALES),
    "seed": SEED,
    "data_dir": DATA_DIR,
    "variants": Tuple(Choice(VARIANTS), min_len=1),
    "num_seeds": Int(lo=2),
    "train_sentences": Int(lo=0),
    "eval_sentences": Int(lo=0),
    "hidden": Int(lo=1),
    "embed": Int(lo=1),
    "seq_len": Int(lo=1),
    "batch_size": Int(lo=1),
    "num_steps": Int(lo=1),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "clip_norm": Float(lo=0.0, lo_open=True),
    "eval_rows": Int(lo=1),
    "alpha": Float(lo=0.0, hi=1.0, lo_open=True, hi_open=True),
    "tolerance": Float(lo=0.0, lo_open=True),
}


def load_streams(config) -> tuple[text.Vocab, dict[str, np.ndarray]]:
    """Character vocabulary of the train lines and each split's id stream (<eos> per line)."""
    data_dir = config.data_dir or None
    chars = {}
    for split in ("train", "val", "test"):
        lines = load_multi30k("en", split, data_dir=data_dir)
        limit = config.train_sentences if split == "train" else config.eval_sentences
        chars[split] = [list(s.lower()) for s in (lines[:limit] if limit else lines)]
    vocab = text.Vocab.build(chars["train"], meta={"level": "char", "lower": True})
    streams = {s: text.stream([vocab.encode(x) for x in c], vocab.eos_id) for s, c in chars.items()}
    streams = {
        s: v if s == "train" else np.concatenate([[vocab.eos_id], v]) for s, v in streams.items()
    }
    return vocab, streams


def windows(train: np.ndarray, config) -> dict[str, np.ndarray]:
    """The schedule: [num_steps, B, seq_len + 1] random windows of the train stream."""
    if len(train) <= config.seq_len + 1:
        raise ValueError(f"train stream of {len(train)} characters is shorter than a window")
    rng = np.random.default_rng([config.seed, 1])
    starts = rng.integers(0, len(train) - config.seq_len - 1, (config.num_steps, config.batch_size))
    return {"tokens": train[starts[..., None] + np.arange(config.seq_len + 1)]}


def build(config, variant: str, vocab_size: int) -> RNNLM:
    return RNNLM(
        vocab_size=vocab_size,
        embed=config.embed,
        hidden=config.hidden,
        num_layers=1,
        cell=f"lstm:{variant}",
    )


def train_variant(config, variant: str, vocab, streams, schedule) -> dict[str, Any]:
    model = build(config, variant, len(vocab))
    B, L = config.batch_size, config.seq_len

    def init_fn(key, hp):
        del hp
        return model.init(key, jnp.zeros((B, L), jnp.int32), zero_carry(model, (B,)))["params"]

    def make_loss(hp):
        del hp

        def loss_fn(params, extra, batch, rng):
            del rng
            tokens = batch["tokens"]
            logits, _ = model.apply({"params": params}, tokens[:, :-1], zero_carry(model, (B,)))
            total, count = token_nll(logits, tokens[:, 1:])
            return total / count, ({}, extra)

        return loss_fn

    def make_tx(hp):
        return optax.chain(optim.clip_by_global_norm(config.clip_norm), optim.adam(hp["lr"]))

    n = config.num_seeds
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(config.seed), i))(jnp.arange(n))
    hparams = {"lr": jnp.full((n,), config.learning_rate, jnp.float32)}
    start = time.perf_counter()
    run = sweep.jit_sweep(init_fn=init_fn, make_loss=make_loss, make_tx=make_tx)
    result = run(keys, hparams, schedule)
    loss = np.asarray(result.metrics["loss"])  # [n, num_steps]
    train_s = time.perf_counter() - start
    evaluate = jax.jit(jax.vmap(chunk_nll(model), in_axes=(0, 0, None, None, None)))
    out = {"final_train_loss": loss[:, -10:].mean(axis=1).tolist(), "train_time_s": train_s}
    for split in ("val", "test"):
        # Windows of seq_len characters, each from a zero state: exactly the training setting
        # (a variant without the output squashing, NOAF, can blow up over longer spans).
        lay = stream_layout(streams[split], rows=config.eval_rows, chunk=L)
        zero = jax.tree.map(
            lambda a: jnp.broadcast_to(a, (n, *a.shape)), zero_carry(model, (config.eval_rows,))
        )
        total, count = np.zeros(n), np.zeros(n)
        for c in range(lay["inputs"].shape[0]):
            (s, k), _ = evaluate(
                result.params, zero, lay["inputs"][c], lay["targets"][c], lay["mask"][c]
            )
            total, count = total + np.asarray(s, np.float64), count + np.asarray(k, np.float64)
        out[f"{split}_perplexity"] = [perplexity(t, k) for t, k in zip(total, count, strict=True)]
    out["curve"] = loss.mean(axis=0)
    return out


def welch(worse: list[float], reference: list[float]) -> tuple[float, float]:
    """(t, two-sided p) of Welch's unequal-variance t-test, worse vs reference."""
    t, p = scipy.stats.ttest_ind(worse, reference, equal_var=False)
    return float(t), float(p)


def summarize(results: dict[str, dict]) -> list[dict[str, Any]]:
    """One row per variant: test perplexity mean and sd over seeds, and against vanilla the
    Welch t statistic, two-sided p and the ratio of means."""
    table = []
    for v, r in results.items():
        row = {
            "variant": v,
            "test_perplexity_mean": float(np.mean(r["test_perplexity"])),
            "test_perplexity_std": float(np.std(r["test_perplexity"], ddof=1)),
            "val_perplexity_mean": float(np.mean(r["val_perplexity"])),
            "test_perplexity": r["test_perplexity"],
            "train_time_s": r["train_time_s"],
        }
        if "vanilla" in results and v != "vanilla":
            ref = results["vanilla"]["test_perplexity"]
            row["t"], row["p"] = welch(r["test_perplexity"], ref)
            row["ratio_to_vanilla"] = row["test_perplexity_mean"] / float(np.mean(ref))
        table.append(row)
    return table


def make_bars(config, table: list[dict[str, Any]]) -> list[Bar]:
    """NFG and NOAF significantly worse than vanilla; CIFG and NP within `tolerance`."""
    rows = {r["variant"]: r for r in table}
    bars = []
    for v in ("NFG", "NOAF"):
        if v in rows and "p" in rows[v]:
            r = rows[v]
            ok = bool(r["p"] < config.alpha and r["t"] > 0)
            bars.append(
                Bar(
                    f"{v} worse than vanilla: Welch p (t = {r['t']:.2f}, ratio {r['ratio_to_vanilla']:.3f})",
                    r["p"],
                    f"< {config.alpha:g} and t > 0",
                    ok,
                    "significantly worse (Greff et al. fig. 3)",
                )
            )
    for v in ("CIFG", "NP"):
        if v in rows and "ratio_to_vanilla" in rows[v]:
            bars.append(
                at_most(
                    f"{v} |mean test perplexity / vanilla's - 1|",
                    abs(rows[v]["ratio_to_vanilla"] - 1.0),
                    config.tolerance,
                    paper="not significantly different (Greff et al.)",
                )
            )
    return bars


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    vocab, streams = load_streams(config)
    schedule = windows(streams["train"], config)
    results = {v: train_variant(config, v, vocab, streams, schedule) for v in config.variants}
    metrics: dict[str, Any] = {"vocab_size": len(vocab), "train_chars": len(streams["train"])}
    table = summarize(results)
    for row in table:
        metrics[f"{row['variant']}_test_perplexity"] = row["test_perplexity_mean"]
    metrics["table"] = table
    plots.boxes(
        {v: r["test_perplexity"] for v, r in results.items()},
        f"{workdir}/variants_box.png",
        ylabel="test perplexity per character",
        title=f"LSTM variants, Multi30K en chars ({config.num_seeds} seeds each)",
        reference="vanilla" if "vanilla" in results else None,
    )
    steps = np.arange(1, config.num_steps + 1)
    plots.curves(
        {v: (steps, np.exp(r["curve"])) for v, r in results.items()},
        f"{workdir}/train_perplexity.png",
        xlabel="step",
        ylabel="train perplexity (mean over seeds)",
        logy=True,
        title="LSTM variants: training",
    )
    bars = make_bars(config, table)
    metrics["bars"] = bars
    for r in table:
        extra = f"  ratio {r['ratio_to_vanilla']:.3f}  p {r['p']:.3g}" if "p" in r else ""
        print(
            f"  {r['variant']:>8}: test ppl {r['test_perplexity_mean']:.3f} "
            f"+- {r['test_perplexity_std']:.3f}{extra}"
        )
    return metrics
