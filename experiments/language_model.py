"""Word-level recurrent language models on Multi30K English against Kneser-Ney n-grams: no
dropout, Zaremba et al.'s dropout, Gal & Ghahramani's variational dropout (with and without
Press & Wolf's tied embeddings), and a GRU.

Run:    python run.py language_model --scale quick
Expect: quick on a 2-core CPU: 347 CPU-s (user+sys; 6.3 min wall, other jobs on the cores),
        about 3x the 2-minute budget. Val / test perplexity, vocabulary 1303 (min_freq 20), 2
        epochs each: KN 3-gram 21.22 / 21.44; no_dropout 20.52 / 20.53, zaremba 20.57 / 20.66,
        variational 20.92 / 21.05, variational_tied 20.63 / 20.84, gru 23.04 / 23.53. The quick
        bar (best LSTM val < KN3 val) PASSES: 0.967. At 0.3 epoch (300 steps, which fitted the
        budget) every LSTM was far above KN3 (best: variational_tied 39.7 val), so quick trains
        2 whole epochs. Dropout does not help yet at this size and length (H=128, 2 epochs).
        Full-scale vocabulary (min_freq 3, 4568 ids): KN3 val 30.46 / test 30.81 (nltk fit 9
        CPU-s), KN5 31.95 / 32.34 (fit 20 CPU-s, so n = 5 runs at full scale only; with one
        discount and 400k training tokens the 5-gram is no better than the 3-gram). nltk's own
        `lm.score` takes 0.05 (n = 3) and 0.26 (n = 5) CPU-s a token; `KneserNey` scores both
        splits in 0.3 CPU-s and matches it to 2e-16 relative.

Setup, as Zaremba, Sutskever & Vinyals (2014, sec. 4.1) on PTB: the split's sentences are
Moses-tokenized and lowercased, each followed by <eos>, and concatenated into one stream; the
vocabulary is the train tokens seen at least `min_freq` times (the rest are <unk>; saved as
vocab.json); training is truncated BPTT over `StreamBatches` with the state carried across
chunks (`dl.objectives.language_model.stream_loss`). Val and test perplexities score every
token of the val / test2016 stream after the first (<eos> included) given all tokens before it
(`stream_nll`, rows=1). The n-gram baselines are nltk's interpolated Kneser-Ney
(`dl.eval.ngram.KneserNey`) fit on the same UNK-mapped train stream and scored on the same
tokens. Test perplexity uses the parameters of the best validation epoch.

Settings (one 2-layer RNN each, otherwise identical): no_dropout; zaremba (dropout on every
non-recurrent connection, a fresh mask per step); variational (one mask per sequence on the
same connections plus recurrent dropout on h); variational_tied (plus tied input/output
embedding); gru (the variational setting with a GRU). The LSTM is PyTorch's (no peepholes).
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dl import optim
from dl.data import text
from dl.data.multi30k import load_multi30k
from dl.decode.sampling import sample
from dl.eval.metrics import perplexity
from dl.eval.ngram import KneserNey
from dl.models.language_model import RNNLM, step_fn, zero_carry
from dl.objectives.language_model import stream_loss, stream_nll
from dl.report import at_least, at_most, plots
from dl.train.loop import train
from dl.train.state import TrainState, param_count
from dl.train.step import jit_train_step
from experiments._fields import DATA_DIR, SCALES, SEED, Bool, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Zaremba, Sutskever & Vinyals 2014 (Recurrent neural network regularization); "
    "Gal & Ghahramani 2016 (variational dropout in RNNs); Press & Wolf 2017 (tied embeddings); "
    "Kneser & Ney 1995; Chen & Goodman 1999",
    "claim": "Dropout on the non-recurrent connections lets large LSTM LMs generalize; the "
    "variational (per-sequence) masks with recurrent dropout do better still, tying the "
    "embeddings helps again, and LSTM LMs beat Kneser-Ney n-grams by a wide margin.",
    "published": "PTB word level (context, not bars): Zaremba medium regularized LSTM 82.7 val / "
    "78.4 test (large 82.2 / 78.4); Gal variational medium 79.7 / 75.2 test (73.4 with MC "
    "dropout); KN 5-gram on PTB 141.2 test (Mikolov 2012)",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "best LSTM val perplexity < KN 3-gram val perplexity",
        "full": "best model test perplexity <= 0.85 x KN 5-gram test perplexity; test "
        "perplexity variational <= zaremba <= no_dropout",
    },
}
PTB_CONTEXT = {"zaremba_val": 82.7, "zaremba_test": 78.4, "gal_val": 79.7, "gal_test": 75.2}

# setting -> RNNLM keyword arguments (the rates come from the config).
SETTINGS = {
    "no_dropout": {"cell": "lstm:NP"},
    "zaremba": {"cell": "lstm:NP", "dropout": True},
    "variational": {"cell": "lstm:NP", "dropout": True, "variational": True},
    "variational_tied": {"cell": "lstm:NP", "dropout": True, "variational": True, "tie": True},
    "gru": {"cell": "gru", "dropout": True, "variational": True},
}
LSTM_SETTINGS = ("no_dropout", "zaremba", "variational", "variational_tied")


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.scale = scale  # selects the bars (see PAPER)
    c.seed = 0  # init, dropout masks; the same for every setting
    c.data_dir = ""  # data root; "" = $DL_DATA_DIR, else <repo>/data, else ../shared/data
    # Which RNN settings to train (names in SETTINGS); smoke: one (each compiles for ~7 CPU-s),
    # the one with the most code paths (variational + recurrent dropout + tying).
    c.settings = ("variational_tied",) if scale == "smoke" else tuple(SETTINGS)
    c.train_sentences = {"smoke": 400, "quick": 0, "full": 0}[scale]  # first N train lines; 0 all
    c.eval_sentences = {"smoke": 60, "quick": 0, "full": 0}[scale]  # first N val/test lines; 0 all
    # Vocabulary: train tokens seen >= this often. 3 -> 4568 ids (2.6% of val tokens <unk>);
    # quick: 20 -> 1303 ids (8% <unk>), a 3.5x cheaper softmax; smoke: all.
    c.min_freq = {"smoke": 1, "quick": 20, "full": 3}[scale]
    c.hidden = {"smoke": 16, "quick": 128, "full": 650}[scale]  # H per layer (Zaremba medium 650)
    c.embed = c.hidden  # embedding width (= hidden, so the tied setting shares it)
    c.num_layers = 1 if scale == "smoke" else 2  # stacked layers (Zaremba: 2; smoke: compile)
    c.dropout = {"smoke": 0.3, "quick": 0.1, "full": 0.5}[scale]  # non-recurrent (Zaremba medium)
    c.recurrent_dropout = {"smoke": 0.1, "quick": 0.1, "full": 0.2}[scale]  # variational, on h
    c.batch_size = {"smoke": 8, "quick": 20, "full": 20}[scale]  # stream rows (Zaremba: 20)
    c.bptt = {"smoke": 10, "quick": 20, "full": 35}[scale]  # unrolled steps per chunk (35)
    c.num_epochs = {"smoke": 1, "quick": 2, "full": 39}[scale]  # passes over the train stream
    # Cap on steps per setting (0: none). Quick runs 2 whole epochs, about 3x the 2-minute budget
    # for five settings: 0.3 epoch (300 steps) fitted it but left every LSTM far above KN3.
    c.max_steps = {"smoke": 0, "quick": 0, "full": 0}[scale]
    c.learning_rate = {"smoke": 3e-3, "quick": 5e-3, "full": 1e-3}[scale]  # Adam
    c.lr_decay = {"smoke": 1.0, "quick": 1.0, "full": 0.9}[scale]  # lr factor per epoch
    c.clip_norm = 5.0  # global gradient-norm clip (Zaremba: 5)
    c.init_scale = 0.1  # U(-s, s) for embedding and output kernel (Zaremba: 0.05 medium)
    c.evals_per_epoch = 1  # val evaluations per epoch (or per max_steps run)
    c.eval_chunk = 512  # steps per evaluation chunk (rows = 1: one stream, state carried)
    c.kn_orders = {"smoke": (3,), "quick": (3,), "full": (3, 5)}[scale]  # n of the KN baselines
    c.kn_discount = 0.75  # KN absolute discount (Chen & Goodman's usual value; nltk's is 0.1)
    c.sample_tokens = {"smoke": 5, "quick": 25, "full": 30}[scale]  # tokens per generated sample
    c.temperature = 0.8  # for the sampled sentences (a greedy one is generated too)
    c.num_samples = 3  # temperature samples per setting
    c.checkpoint_every_epochs = {"smoke": 0, "quick": 0, "full": 5}[scale]  # 0: only at the end
    c.progress = scale != "smoke"  # progress bars (off in the smoke tests)
    return c


FIELDS = {
    "scale": Choice(SCALES),
    "seed": SEED,
    "data_dir": DATA_DIR,
    "settings": Tuple(Choice(SETTINGS)),
    "train_sentences": Int(lo=0),
    "eval_sentences": Int(lo=0),
    "min_freq": Int(lo=1),
    "hidden": Int(lo=1),
    "embed": Int(lo=1),
    "num_layers": Int(lo=1),
    "dropout": Float(lo=0.0, hi=1.0, hi_open=True),
    "recurrent_dropout": Float(lo=0.0, hi=1.0, hi_open=True),
    "batch_size": Int(lo=1),
    "bptt": Int(lo=1),
    "num_epochs": Int(lo=1),
    "max_steps": Int(lo=0),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "lr_decay": Float(lo=0.0, hi=1.0, lo_open=True),
    "clip_norm": Float(lo=0.0, lo_open=True),
    "init_scale": Float(lo=0.0, lo_open=True),
    "evals_per_epoch": Int(lo=1),
    "eval_chunk": Int(lo=1),
    "kn_orders": Tuple(Int(lo=2, hi=9), min_len=0),  # () skips the baselines
    "kn_discount": Float(lo=0.0, hi=1.0),
    "sample_tokens": Int(lo=1),
    "temperature": Float(lo=0.0, lo_open=True),
    "num_samples": Int(lo=0),
    "checkpoint_every_epochs": Int(lo=0),
    "progress": Bool(),
}


def load_streams(config, workdir: str) -> tuple[text.Vocab, dict[str, np.ndarray]]:
    """The train-only vocabulary (saved to workdir/vocab.json) and each split's id stream; the
    val/test streams start with <eos> so their first sentence's first word is scored too."""
    data_dir = config.data_dir or None
    sents = {}
    for split in ("train", "val", "test"):
        lines = load_multi30k("en", split, data_dir=data_dir)
        limit = config.train_sentences if split == "train" else config.eval_sentences
        sents[split] = text.tokenize_all(lines[:limit] if limit else lines, lower=True)
    vocab = text.Vocab.build(
        sents["train"],
        min_freq=config.min_freq,
        meta={"level": "word", "lang": "en", "lower": True},
    )
    vocab.save(os.path.join(workdir, "vocab.json"))
    streams = {}
    for split, s in sents.items():
        ids = text.stream([vocab.encode(x) for x in s], vocab.eos_id)
        streams[split] = ids if split == "train" else np.concatenate([[vocab.eos_id], ids])
    return vocab, streams


def build(config, setting: str, vocab_size: int) -> RNNLM:
    spec = dict(SETTINGS[setting])
    dropout = config.dropout if spec.pop("dropout", False) else 0.0
    variational = spec.get("variational", False)
    return RNNLM(
        vocab_size=vocab_size,
        embed=config.embed,
        hidden=config.hidden,
        num_layers=config.num_layers,
        dropout=dropout,
        recurrent_dropout=config.recurrent_dropout if variational else 0.0,
        init_scale=config.init_scale,
        **spec,
    )


def train_setting(config, setting: str, vocab, streams, workdir: str) -> dict[str, Any]:
    model = build(config, setting, len(vocab))
    batches = text.StreamBatches(streams["train"], config.batch_size, config.bptt)
    spe = len(batches)
    carry = zero_carry(model, (config.batch_size,))
    init_key, state_key = jax.random.split(jax.random.PRNGKey(config.seed))
    init = jax.jit(lambda key, x, c: model.init(key, x, c)["params"])  # one compile, not per op
    params = init(init_key, jnp.zeros((config.batch_size, config.bptt), jnp.int32), carry)
    schedule = optim.step_decay(config.learning_rate, config.lr_decay, spe)
    tx = optax.chain(optim.clip_by_global_norm(config.clip_norm), optim.adam(schedule))
    # Fresh buffers per leaf: a zero carry may share one array between h and c, and the
    # engine donates the state.
    carry = jax.tree.map(lambda a: jnp.array(a, copy=True), carry)
    state = TrainState.create(
        apply_fn=model.apply, params=params, tx=tx, rng=state_key, extra={"carry": carry}
    )

    def batch_fn(step: int) -> dict:
        i = step % spe
        return {**batches.chunk(i), "reset": np.float32(i == 0)}

    one = zero_carry(model, (1,))

    def ppl(params, split: str) -> float:
        total, count = stream_nll(
            model, params, streams[split], one, rows=1, chunk=config.eval_chunk
        )
        return perplexity(total, count)

    sub = os.path.join(workdir, setting)
    os.makedirs(sub, exist_ok=True)
    num_steps = config.num_epochs * spe
    if config.max_steps:
        num_steps = min(num_steps, config.max_steps)
    every = max(1, min(num_steps, spe) // config.evals_per_epoch)
    _, history, summary = train(
        state,
        train_step=jit_train_step(stream_loss(model)),
        batch_fn=batch_fn,
        num_steps=num_steps,
        workdir=sub,
        eval_fn=lambda s: {"val_perplexity": ppl(s.params, "val")},
        eval_every=every,
        monitor="val_perplexity",
        mode="min",
        checkpoint_every=config.checkpoint_every_epochs * spe,
        resume=config.get("resume", False),
        progress=config.progress,
        desc=f"language_model {setting}",
    )
    best = summary["best_params"]
    evals = [r for r in history if "val_perplexity" in r]
    return {
        "model": model,
        "params": best,
        "val_perplexity": summary["best"],
        "test_perplexity": ppl(best, "test"),
        "train_perplexity_last": next(r["perplexity"] for r in reversed(history) if "loss" in r),
        "epochs": [r["step"] / spe for r in evals],
        "val_curve": [r["val_perplexity"] for r in evals],
        "param_count": param_count(best),
        "train_time_s": summary["wall_time_s"],
    }


def samples(config, model, params, vocab, setting: str) -> dict[str, Any]:
    """A greedy continuation and `num_samples` temperature samples of <eos> (a new sentence
    start), as raw tokens (<eos> shown)."""
    gen = jax.jit(functools.partial(sample, step_fn(model)), static_argnames="num_steps")
    rows = 1 + config.num_samples  # row 0 greedy, the others at `temperature`: one compile
    temps = jnp.full((rows,), config.temperature, jnp.float32).at[0].set(0.0)
    out = gen(
        params,
        jnp.full((rows, 1), vocab.eos_id, jnp.int32),
        zero_carry(model, (rows,)),
        jax.random.PRNGKey(config.seed + 1),
        num_steps=config.sample_tokens,
        temperature=temps,
    )
    words = lambda ids: " ".join(vocab.decode(np.asarray(ids), raw=True))
    return {"greedy": words(out[0]), "sampled": [words(r) for r in out[1:]]}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    start = time.perf_counter()
    vocab, streams = load_streams(config, workdir)
    tokens = {s: [vocab.itos[i] for i in ids] for s, ids in streams.items()}
    metrics: dict[str, Any] = {
        "vocab_size": len(vocab),
        "train_tokens": len(streams["train"]),
        "val_tokens_scored": int(len(streams["val"]) - 1),
        "test_tokens_scored": int(len(streams["test"]) - 1),
        "ptb_context": PTB_CONTEXT,
    }
    table = []
    for n in config.kn_orders:
        t0 = time.perf_counter()
        kn = KneserNey(n, discount=config.kn_discount).fit(tokens["train"])
        fit_s = time.perf_counter() - t0
        row = {"model": f"kn{n}", "val_perplexity": kn.perplexity(tokens["val"])}
        row["test_perplexity"] = kn.perplexity(tokens["test"])
        row["fit_time_s"], row["eval_time_s"] = fit_s, time.perf_counter() - t0 - fit_s
        table.append(row)
        metrics[f"kn{n}_val_perplexity"] = row["val_perplexity"]
        metrics[f"kn{n}_test_perplexity"] = row["test_perplexity"]
    results, generated = {}, {}
    for setting in config.settings:
        r = train_setting(config, setting, vocab, streams, workdir)
        results[setting] = r
        generated[setting] = samples(config, r["model"], r["params"], vocab, setting)
        table.append(
            {
                "model": setting,
                "val_perplexity": r["val_perplexity"],
                "test_perplexity": r["test_perplexity"],
                "param_count": r["param_count"],
                "train_time_s": r["train_time_s"],
            }
        )
        for k in ("val_perplexity", "test_perplexity", "train_time_s"):
            metrics[f"{setting}_{k}"] = r[k]
    metrics["table"] = table
    metrics["samples"] = generated
    if results:
        plots.curves(
            {s: (r["epochs"], r["val_curve"]) for s, r in results.items()},
            f"{workdir}/val_perplexity.png",
            xlabel="epoch",
            ylabel="validation perplexity",
            logy=True,
            title="Multi30K English word-level LMs",
        )
    metrics["bars"] = make_bars(config, metrics, results)
    metrics["total_time_s"] = time.perf_counter() - start
    for row in table:
        print(
            f"  {row['model']:>17}: val {row['val_perplexity']:8.2f}  test {row['test_perplexity']:8.2f}"
        )
    for s, g in generated.items():
        print(f"  {s} greedy: {g['greedy']}")
        for line in g["sampled"]:
            print(f"  {s} T={config.temperature}: {line}")
    print("  PTB context (not bars): Zaremba 82.7 val / 78.4 test; Gal 79.7 / 75.2 (73.4 MC)")
    return metrics


def make_bars(config, metrics: dict, results: dict) -> list:
    bars = []
    lstms = {s: r for s, r in results.items() if s in LSTM_SETTINGS}
    if config.scale != "full" and lstms and "kn3_val_perplexity" in metrics:
        best = min(lstms, key=lambda s: lstms[s]["val_perplexity"])
        kn3 = metrics["kn3_val_perplexity"]
        bars.append(
            at_most(
                f"best LSTM ({best}) val perplexity / KN 3-gram's ({kn3:.1f})",
                lstms[best]["val_perplexity"] / kn3,
                1.0,
                paper="LSTMs beat n-grams (Zaremba et al. 2014)",
            )
        )
    if config.scale == "full" and results and "kn5_test_perplexity" in metrics:
        best = min(results, key=lambda s: results[s]["test_perplexity"])
        bars.append(
            at_most(
                f"best model ({best}) test perplexity / KN 5-gram's",
                results[best]["test_perplexity"] / metrics["kn5_test_perplexity"],
                0.85,
                paper="82.4 / 141.2 = 0.58 on PTB (Zaremba medium vs Mikolov's KN5)",
            )
        )
    order = [s for s in ("variational", "zaremba", "no_dropout") if s in results]
    if config.scale == "full" and len(order) == 3:
        for lo, hi in itertools.pairwise(order):
            bars.append(
                at_least(
                    f"test perplexity {hi} - {lo}",
                    results[hi]["test_perplexity"] - results[lo]["test_perplexity"],
                    0.0,
                    paper="75.2 < 78.4 < 114.5 (Gal; Zaremba, PTB)",
                )
            )
    return bars
