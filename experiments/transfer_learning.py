"""Transfer of CNN features between MNIST halves (Yosinski et al. 2014's A->B protocol, in small).

Run:    python run.py transfer_learning --scale quick
Expect: quick on a 2-core CPU: about 2.5 min (304 CPU s; 14.6 min wall at load 10-12). Test
        accuracy on digits 5-9, mean ± std over 5 seeds, 10 / 100 / 1000 labels per class:
        finetune 84.18 ± 2.71 / 88.63 ± 1.42 / 88.72 ± 1.24%, frozen 71.47 ± 4.98 / 74.40 ± 2.83
        / 75.11 ± 2.91%, scratch 85.99 ± 2.07 / 89.06 ± 0.27 / 89.11 ± 0.62%. Bar (fine-tune -
        scratch >= 10 points at 10 labels/class): -1.8 points, FAIL (see below).

Why the bar fails at quick scale (measured, not tuned away): the narrow net pretrained for 2
epochs on 0-4 gives features that a linear head reads at only 71-75% on 5-9, so starting from
them buys nothing over a random start for a 5-way problem that 50 labelled images already
solve to 86% from scratch. A learning-rate sweep on the 5-9 val images (10 labels/class, 5
seeds, mean val accuracy, fine-tune / scratch) found no rate where fine-tuning wins: 1e-4
43.8 / 69.0%, 3e-4 75.0 / 80.8%, 1e-3 85.4 / 87.4%, 3e-3 87.4 / 87.6% at 60 steps; at 150 steps
and 1e-3, fine-tuning all layers gave 87.7% and transferring only the convolutions (new dense
and head, Yosinski et al.'s lower-layer transfer) 87.9%. The frozen head read 72.8% (rate 1e-2)
and 73.5% (1e-1). With scratch at 87%, a +10-point gain needs fine-tuning at 97%+, which these
features do not carry. Probes (this session's, 5 seeds, 10 labels/class unless said):
* scikit-learn logistic regression on the 5-9 features (3 label draws): the pretrained dense
  features 79-82% (random-init net 75-78%); the pretrained conv maps 88-90% (random 85-87%). The
  0-4 features add 2-4 points, not 10.
* the benchmark-width net ((32, 64) maps, dense 1024; 2 epochs of pretraining, 100 transfer
  steps): fine-tune 91.4 ± 1.3% vs scratch 88.1%, +3.3 points (frozen 85.9%), 23 CPU min.
  Its conv maps read 92-94% under logistic regression (random 86-89%).
* the 100 and 1000 columns are short of converged at 60 steps: with 150 and 600 steps they
  become finetune 93.0 / 97.7%, scratch 93.0 / 97.8%, frozen 80.6 / 90.2%, but the run then
  takes 8.3 min wall (vmap over seeds turns each conv into a grouped conv, slow on XLA:CPU), so
  quick keeps 60.
Left for later: the full scale (benchmark CNN, 10 epochs of pretraining, 1000 steps).

Task A: the digits 0-4 of the fixed 50000-image train split; `dl.models.cnn.MnistCNN` with 5
outputs is pretrained on it with the engine's `fit` (validation: the 0-4 images of the val
split). Task B: the digits 5-9, relabelled 0-4. For each of 10, 100 and 1000 labels per class,
drawn from the train split's 5-9 images by seed (a per-seed permutation of each class, so the
smaller sets are nested in the larger ones), three methods train on the same labelled images:

* finetune: every layer starts from the pretrained weights, the 5-way head is new;
* frozen: the pretrained net up to its ReLU'd dense features is fixed, a new linear head trains
  on them (Yosinski et al.'s frozen "AnB" with n = all layers below the head);
* scratch: the same CNN from a random initialization.

The new head of seed s starts from the same draw in all three methods. Each (method, labels)
cell trains `num_seeds` seeds at once: `jax.vmap` over seeds of `dl.train.sweep.train_from` (a
`lax.scan` of the engine's `train_step`), one compiled program for finetune and scratch at every
label count (same shapes; the learning rate is a traced hyperparameter) and one for the head.
Accuracy is on all 5-9 test images (and, for tuning, the 5-9 val images); the table reports mean
± std (ddof=1) over seeds. Quick scale uses a narrower MnistCNN (8, 16 maps; 128 hidden units),
as translation_invariance does, to fit the CPU budget.
"""

from __future__ import annotations

import functools
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dl import data, optim
from dl.models.cnn import MnistCNN
from dl.objectives.classification import classifier_eval, classifier_loss
from dl.report import at_least, plots
from dl.train import sweep
from dl.train.loop import write_history
from dl.train.supervised import fit, init_state
from experiments._fields import DATA_DIR, SCALES, SEED, Bool, Choice, Float, Int, Tuple

METHODS = ("finetune", "frozen", "scratch")
SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)  # task A and task B digits

PAPER = {
    "citation": "Yosinski, Clune, Bengio & Lipson 2014, 'How transferable are features in deep "
    "neural networks?', NeurIPS (ImageNet halves A/B; Fig. 2)",
    "claim": "Features learned on one task transfer to a related one: initializing from them "
    "and fine-tuning beats training from scratch, most when labels are few; frozen features "
    "from the lower layers are nearly as good.",
    "published": "ImageNet top-1, 500 classes per half: fine-tuned transfer (AnB+) beats the "
    "base net trained on B alone at every layer n (Fig. 2); no MNIST numbers",
    "bars": {
        "smoke": "none (plumbing on synthetic IDX files)",
        "quick": "10 labels per class: mean test accuracy (fine-tune) - (scratch) >= 10 points",
        "full": "10 labels per class: mean test accuracy (fine-tune) - (scratch) >= 10 points",
    },
}
GAIN_BAR = 0.10  # fine-tune minus scratch, 10 labels per class, both scales


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.scale = scale  # selects the bar (see PAPER)
    c.seed = 0  # pretraining seed; the transfer seeds are seed, ..., seed + num_seeds - 1
    c.num_seeds = {"smoke": 2, "quick": 5, "full": 10}[scale]  # per cell, trained at once (vmap)
    c.data_dir = ""  # data root; "" = $DL_DATA_DIR, else <repo>/data, else ../shared/data
    # MnistCNN's maps and dense width: the benchmark (32, 64) / 1024 at full, narrower at quick.
    c.cnn_channels = {"smoke": (2, 4), "quick": (8, 16), "full": (32, 64)}[scale]
    c.cnn_hidden = {"smoke": 8, "quick": 128, "full": 1024}[scale]
    c.pretrain_epochs = {"smoke": 1, "quick": 2, "full": 10}[scale]  # over the ~25k 0-4 images
    c.pretrain_lr = 1e-3  # Adam, cosine-decayed to 0
    c.pretrain_batch_size = {"smoke": 16, "quick": 128, "full": 128}[scale]
    c.pretrain_max_steps = {"smoke": 3, "quick": 0, "full": 0}[scale]  # cap (0 = none)
    c.labels_per_class = {"smoke": (2, 4), "quick": (10, 100, 1000), "full": (10, 100, 1000)}[
        scale
    ]  # labelled task-B images per class (the table's columns)
    # Steps per (method, labels) cell: at batch 50, 10 labels/class is one full batch per step.
    c.transfer_steps = {"smoke": 2, "quick": 60, "full": 1000}[scale]
    c.transfer_batch_size = {"smoke": 4, "quick": 50, "full": 50}[scale]  # <= smallest set
    c.finetune_lr = 1e-3  # Adam, cosine-decayed; all layers
    c.scratch_lr = 1e-3  # Adam, cosine-decayed; the same net from a random init
    c.frozen_lr = 1e-2  # Adam, cosine-decayed; the linear head on frozen features
    c.eval_batch_size = {"smoke": 500, "quick": 1000, "full": 1000}[scale]  # images per eval call
    c.checkpoint_every_epochs = 1  # pretraining checkpoints for --resume
    c.progress = scale != "smoke"  # progress bar of the pretraining
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "scale": Choice(SCALES),
    "seed": SEED,
    "num_seeds": Int(lo=2),
    "data_dir": DATA_DIR,
    "cnn_channels": Tuple(Int(lo=1), min_len=2, max_len=2),
    "cnn_hidden": Int(lo=1),
    "pretrain_epochs": Int(lo=1),
    "pretrain_lr": Float(lo=0.0, lo_open=True),
    "pretrain_batch_size": Int(lo=1),
    "pretrain_max_steps": Int(lo=0),
    "labels_per_class": Tuple(Int(lo=1)),
    "transfer_steps": Int(lo=1),
    "transfer_batch_size": Int(lo=1),
    "finetune_lr": Float(lo=0.0, lo_open=True),
    "scratch_lr": Float(lo=0.0, lo_open=True),
    "frozen_lr": Float(lo=0.0, lo_open=True),
    "eval_batch_size": Int(lo=1),
    "checkpoint_every_epochs": Int(lo=0),
    "progress": Bool(),
}


class Head(nn.Module):
    """The linear head on frozen features: [batch, hidden] -> logits [batch, classes]. Its one
    Dense is named "head", as MnistCNN's, so it takes MnistCNN's head parameters as they are."""

    classes: int = 5

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        return nn.Dense(self.classes, name="head")(x)


def digits(split: data.ArrayData, keep: tuple[int, ...]) -> data.ArrayData:
    """The examples of `split` whose label is in `keep`, relabelled 0..len(keep)-1."""
    take = np.isin(split.y, keep)
    return data.ArrayData(split.x[take], (split.y[take] - min(keep)).astype(np.int32))


def labelled_subset(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of k examples of each class in y (classes 0..max), drawn by `seed`: the first k
    of a per-seed permutation of each class, so subsets for growing k are nested."""
    rng = np.random.default_rng([seed, 0x7A])
    idx = []
    for c in range(int(y.max()) + 1):
        pool = rng.permutation(np.flatnonzero(y == c))
        if len(pool) < k:
            raise ValueError(f"class {c} has {len(pool)} examples, fewer than {k} labels")
        idx.append(pool[:k])
    return np.sort(np.concatenate(idx))


def schedules(split: data.ArrayData, k: int, seeds, steps: int, batch_size: int):
    """Per seed, `steps` batches of its k-per-class labelled subset in `data.Loader(seed)` order:
    leaves [n, steps, batch, ...]."""
    per_seed = []
    for s in seeds:
        pick = labelled_subset(split.y, k, int(s))
        loader = data.Loader(data.ArrayData(split.x[pick], split.y[pick]), batch_size, seed=int(s))
        per_seed.append(sweep.stack_batches(loader.batch, steps))
    return jax.tree.map(lambda *a: np.stack(a), *per_seed)


def vmapped_trainer(model: nn.Module, num_steps: int):
    """jit(vmap over seeds of `sweep.train_from`): (params [n, ...], step keys [n, 2], lr [n],
    batches [n, steps, ...]) -> SweepResult; Adam with a traced, cosine-decayed rate."""
    loss_fn = classifier_loss(model)
    train = functools.partial(
        sweep.train_from,
        make_loss=lambda hp: loss_fn,
        make_tx=lambda hp: optim.adam(optim.warmup_cosine(hp["lr"], 0, num_steps)),
    )
    return jax.jit(jax.vmap(lambda p, key, lr, b: train(p, key, {"lr": lr}, b)))


def vmapped_accuracy(model: nn.Module, split: data.ArrayData, batch_size: int):
    """params (leaves [n, ...]) -> [n] accuracies of each model on the whole `split`."""
    evaluate = jax.jit(jax.vmap(classifier_eval(model), in_axes=(0, None, None)))
    batches = list(data.eval_batches(split, batch_size))

    def fn(params) -> np.ndarray:
        hits = sum(np.asarray(evaluate(params, {}, b)["accuracy"]) for b in batches)
        return hits / len(split.y)

    return fn


def features(model: MnistCNN, params, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The pretrained net's ReLU'd dense features of x [N, 28, 28, 1]: [N, hidden] float32."""
    fn = jax.jit(lambda xb: model.apply({"params": params}, xb, method="features"))
    return np.concatenate(
        [np.asarray(fn(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    )


def pretrain(config, splits, workdir: str):
    """Task A with the engine's `fit`; returns (model, params, 0-4 val accuracy)."""
    model = MnistCNN(channels=tuple(config.cnn_channels), hidden=config.cnn_hidden, classes=5)
    train, val = digits(splits["train"], SOURCE), digits(splits["val"], SOURCE)
    loader = data.Loader(train, config.pretrain_batch_size, seed=config.seed)
    num_steps = config.pretrain_epochs * loader.steps_per_epoch
    if config.pretrain_max_steps:
        num_steps = min(num_steps, config.pretrain_max_steps)
    tx = optim.adam(optim.warmup_cosine(config.pretrain_lr, 0, num_steps))
    state = init_state(model, tx, train.x[: config.pretrain_batch_size], seed=config.seed)
    os.makedirs(f"{workdir}/pretrain", exist_ok=True)
    _, history, summary = fit(
        state,
        loss_fn=classifier_loss(model),
        eval_fn=classifier_eval(model),
        train_loader=loader,
        val_batches=lambda: data.eval_batches(val, config.eval_batch_size),
        num_steps=num_steps,
        workdir=f"{workdir}/pretrain",
        eval_every=num_steps,
        checkpoint_every=config.checkpoint_every_epochs * loader.steps_per_epoch,
        resume=config.get("resume", False),
        progress=config.progress,
        desc="pretrain 0-4",
    )
    val_acc = [r["val_accuracy"] for r in history if "val_accuracy" in r][-1]
    return model, jax.device_get(summary["best_params"]), float(val_acc)


def mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def table_markdown(table: dict, ks) -> str:
    head = "| method | " + " | ".join(f"{k} labels/class" for k in ks) + " |"
    lines = [head, "|---" * (len(ks) + 1) + "|"]
    for m in METHODS:
        cells = [
            f"{100 * table[m][str(k)]['mean']:.2f} ± {100 * table[m][str(k)]['std']:.2f}"
            for k in ks
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    start = time.perf_counter()
    splits = data.load("mnist", data_dir=config.data_dir or None, flatten=False)
    model, pre_params, pre_val = pretrain(config, splits, workdir)
    pretrain_s = time.perf_counter() - start
    train_b, val_b, test_b = (digits(splits[s], TARGET) for s in ("train", "val", "test"))
    seeds = np.arange(config.seed, config.seed + config.num_seeds)
    n, steps, bs = len(seeds), config.transfer_steps, config.transfer_batch_size

    # Per seed: a fresh init (scratch), and the pretrained weights with that init's head.
    sample = train_b.x[:1]
    init_fn = lambda key, hp: model.init({"params": key}, sample)["params"]
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))
    scratch, step_keys = sweep.init_models(keys, jnp.zeros(n), init_fn=init_fn)
    tiled = jax.tree.map(lambda p: jnp.broadcast_to(p, (n, *p.shape)), pre_params)
    finetune = {**tiled, "head": scratch["head"]}
    head = Head(classes=5)
    frozen = {"head": scratch["head"]}

    cnn_train = vmapped_trainer(model, steps)
    head_train = vmapped_trainer(head, steps)
    cnn_test, cnn_val = (
        vmapped_accuracy(model, s, config.eval_batch_size) for s in (test_b, val_b)
    )
    feats = {
        name: data.ArrayData(features(model, pre_params, s.x, config.eval_batch_size), s.y)
        for name, s in (("train", train_b), ("val", val_b), ("test", test_b))
    }
    head_test, head_val = (
        vmapped_accuracy(head, feats[s], config.eval_batch_size) for s in ("test", "val")
    )
    arms = {
        "finetune": (finetune, config.finetune_lr, cnn_train, train_b, cnn_test, cnn_val),
        "frozen": (frozen, config.frozen_lr, head_train, feats["train"], head_test, head_val),
        "scratch": (scratch, config.scratch_lr, cnn_train, train_b, cnn_test, cnn_val),
    }
    open(f"{workdir}/metrics.jsonl", "w").close()
    table: dict = {m: {} for m in METHODS}
    for k in config.labels_per_class:
        for m in METHODS:
            params, lr, trainer, split, test_acc, val_acc = arms[m]
            batches = schedules(split, k, seeds, steps, bs)
            res = trainer(params, step_keys, jnp.full(n, lr, jnp.float32), batches)
            test, val = test_acc(res.params), val_acc(res.params)
            mean, std = mean_std(test)
            table[m][str(k)] = {
                "mean": mean,
                "std": std,
                "val_mean": mean_std(val)[0],
                "per_seed": [float(a) for a in test],
            }
            write_history(
                workdir,
                jax.device_get(res.metrics),
                labels={"seed": seeds, "method": m, "labels_per_class": k},
                every=max(steps // 20, 1),
                append=True,
            )
            print(f"  {m:8s} {k:5d} labels/class: test {100 * mean:.2f} ± {100 * std:.2f}%")
    ks = list(config.labels_per_class)
    md = table_markdown(table, ks)
    print(md)
    plots.curves(
        {m: (ks, [100 * table[m][str(k)]["mean"] for k in ks]) for m in METHODS},
        f"{workdir}/accuracy_vs_labels.png",
        xlabel="labels per class (digits 5-9)",
        ylabel=f"test accuracy (%), mean of {n} seeds",
        title="MNIST 0-4 -> 5-9 transfer",
        logx=True,
    )
    k0 = str(ks[0])
    gain = table["finetune"][k0]["mean"] - table["scratch"][k0]["mean"]
    metrics = {
        "pretrain_val_accuracy_0_4": pre_val,
        "pretrain_time_s": pretrain_s,
        "total_time_s": time.perf_counter() - start,
        "seeds": [int(s) for s in seeds],
        "table": table,
        "table_markdown": md,
        f"finetune_minus_scratch_{k0}_labels": gain,
    }
    bars = []
    if config.scale != "smoke" and ks[0] == 10:
        bars.append(
            at_least(
                "10 labels/class: fine-tune - scratch test accuracy "
                f"({100 * table['finetune'][k0]['mean']:.1f}% vs "
                f"{100 * table['scratch'][k0]['mean']:.1f}%, {n} seeds)",
                gain,
                GAIN_BAR,
                paper="AnB+ > B (Fig. 2)",
            )
        )
    metrics["bars"] = bars
    return metrics
