"""Hard attention trained with REINFORCE on 60x60 translated MNIST (Mnih, Heess, Graves &
Kavukcuoglu 2014, Table 2), against random glimpses, soft attention (Xu et al. 2015) and a CNN.

Run:    python run.py hard_attention --scale quick
Expect: quick (first 20000 train images, 6 glimpses 8x8 x 4 scales, LSTM core; hard and random
        8 epochs, soft and cnn 1 epoch; all 10000 test images): test error hard 8.9% (bar
        <= 15%: pass), random 26.0% (gap 17.1 points, bar >= 10: pass), soft 20.0%, cnn 5.4%.
        Hard alone over seeds 0 / 1 / 2 (`--seed`): 8.9 / 10.5 / 14.5% at 8 epochs; 11.6 /
        13.1 / 18.6% at 6 (seed 2 fails there) and 16.8% (seed 0) at 4, so the quick budget
        is the margin. 305 s user+sys CPU (about 93 per hard / random model, 57 soft, 52 cnn;
        176 s wall on the idle 2 cores): 1.5x the 2-minute quick budget. Full (200 epochs on
        all 50000 images; GPU or a long CPU run): not run.

Four models classify a 28x28 MNIST digit pasted at a random position of an empty 60x60 canvas
(`dl.data.translated`; fixed placements per split and seed):

* hard: `dl.models.ram.RAM`, the recurrent attention model: T glimpses (retina of 8x8 patches
  at several scales), the next location drawn from a Gaussian policy (fixed std) trained by
  REINFORCE with reward 1 for a correct final answer minus a learned baseline; the classifier,
  core and glimpse network by backprop of the cross-entropy (the hybrid loss of
  `dl.objectives.hard_attention`). At test time the policy looks at its mean locations.
* random: the same network with locations uniform on the canvas (train and test), no REINFORCE.
* soft: `dl.models.ram.SoftAttention`, a softmax-weighted sum of glimpse features over a 7x7
  grid of candidate locations, end to end by backprop.
* cnn: `dl.models.cnn.MnistCNN(readout="global_max")` (3 conv + pool stages) on the canvas.

Departures from the paper, all measured at quick scale: 4 retina scales (8, 16, 32, 64) instead
of 3 and an LSTM core instead of the ReLU RNN: with the paper's 3 scales and ReLU RNN (lr 3e-3)
probes reached 33% val accuracy after 3 epochs and 40% after 5 (39% after 3 with 12x12
patches); with 4 scales and the LSTM 74% after 3. Which of the two changes matters was not
separated. Adam (3e-3, cosine) instead of SGD with momentum. The soft model and the CNN got 1 epoch each,
so the quick comparison with them is not at equal budget.
"""

from __future__ import annotations

import os
import time

import jax
import ml_collections
import numpy as np

from dl import data, optim
from dl.data.translated import translated_splits
from dl.models.cnn import MnistCNN
from dl.models.ram import CORES, RAM, SoftAttention
from dl.objectives.classification import classifier_eval, classifier_loss
from dl.objectives.hard_attention import attention_eval, attention_loss
from dl.ops.glimpse import patch_sizes
from dl.report import at_least, at_most, plots
from dl.report.plots import plt
from dl.train.supervised import fit, init_state
from experiments._fields import (
    DATA_DIR,
    SCALES,
    SEED,
    Bool,
    Choice,
    Float,
    Int,
    Tuple,
)

MODELS = ("hard", "random", "soft", "cnn")

PAPER = {
    "citation": "Mnih, Heess, Graves & Kavukcuoglu 2014, 'Recurrent models of visual attention', "
    "NIPS, Table 2 (60x60 translated MNIST); Xu et al. 2015, 'Show, attend and tell' (hard vs "
    "soft attention)",
    "claim": "A recurrent model that chooses where to look, trained with REINFORCE, classifies "
    "translated digits from a few 8x8 glimpses as well as a convnet on the whole image; a "
    "learned glimpse policy beats random glimpses.",
    # From memory of Table 2 (60x60 translated MNIST), not re-checked against the paper: RAM
    # 6 glimpses, 8x8, 3 scales about 1.84%; a 2-layer conv net about 2.3%; fully connected
    # 2-layer net about 7.6%. The issue says "about 2%" for 6 glimpses.
    "published": {"ram_6_glimpses_error_pct": 1.84, "convnet_error_pct": 2.3},
    "bars": {
        "smoke": "none (plumbing on synthetic IDX files)",
        "quick": "hard-attention test error <= 15%; random-glimpse error - hard error >= 10 points",
        "full": "hard-attention test error <= 3%; random-glimpse error - hard error >= 10 points",
    },
}
HARD_BAR_PCT = {"quick": 15.0, "full": 3.0}
POLICY_GAP_PCT = 10.0  # random-glimpse error minus hard-attention error, points


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.scale = scale  # selects the bars (see PAPER)
    c.seed = 0  # init, data order, placements and glimpse draws
    c.data_dir = ""  # data root; "" = $DL_DATA_DIR, else <repo>/data, else ../shared/data
    c.models = MODELS  # which of hard / random / soft / cnn to train (bars need hard, random)
    c.canvas = 60  # side of the translated-MNIST canvas (the paper's 60)
    # Train images used (the first n of the 50000-image train split; 0 = all), val and test alike
    c.train_limit = {"smoke": 0, "quick": 20000, "full": 0}[scale]
    c.val_limit = {"smoke": 32, "quick": 2000, "full": 0}[scale]
    c.test_limit = 0  # 0 = all 10000 test images
    c.glimpses = {"smoke": 2, "quick": 6, "full": 6}[scale]  # T (the paper's 6)
    c.base = 8  # retina patch side in pixels (the paper's 8x8)
    # Retina scales: 4 gives sides 8, 16, 32, 64 (the last sees the whole canvas coarsely); the
    # paper used 3 (8, 16, 32) on 60x60. With 3 (and an Elman core) 3-epoch probes reached
    # 33-39% val accuracy against 74% with 4 scales and an LSTM (docstring).
    c.scales = {"smoke": 2, "quick": 4, "full": 4}[scale]
    c.what_features = {"smoke": 8, "quick": 128, "full": 128}[scale]  # h_g width
    c.where_features = {"smoke": 8, "quick": 128, "full": 128}[scale]  # h_l width
    c.glimpse_features = {"smoke": 16, "quick": 256, "full": 256}[scale]  # g width
    c.core_features = {"smoke": 16, "quick": 256, "full": 256}[scale]  # core state width
    c.core = "lstm"  # "lstm" (dl.nn.LSTM, PyTorch's cell) or the paper's ReLU RNN ("elman")
    c.loc_std = 0.17  # policy std on [-1, 1] (about 5 pixels on a 60-pixel canvas)
    c.baseline_weight = 1.0  # weight of the baseline's squared error in the hybrid loss
    c.soft_grid = {"smoke": 2, "quick": 7, "full": 7}[scale]  # candidate grid of soft attention
    c.attention_features = {"smoke": 8, "quick": 128, "full": 128}[scale]  # soft scores' width
    c.cnn_channels = {"smoke": (2, 4), "quick": (8, 16, 32), "full": (32, 64, 64)}[scale]
    c.cnn_hidden = {"smoke": 8, "quick": 128, "full": 256}[scale]  # MnistCNN dense width
    c.learning_rate = 3e-3  # Adam, cosine-decayed to 0 over each model's run
    c.batch_size = {"smoke": 16, "quick": 64, "full": 64}[scale]  # minibatch
    # Epochs of hard and random (the same budget, for the policy bar); quick: the CPU budget
    c.num_epochs = {"smoke": 1, "quick": 8, "full": 200}[scale]
    c.soft_epochs = {"smoke": 1, "quick": 1, "full": 100}[scale]  # the soft-attention model
    c.cnn_epochs = {"smoke": 1, "quick": 1, "full": 20}[scale]  # the CNN converges faster
    c.eval_every_epochs = {"smoke": 1, "quick": 1, "full": 5}[scale]  # best val picks params
    c.checkpoint_every_epochs = 1  # orbax checkpoints for --resume
    c.eval_batch_size = {"smoke": 16, "quick": 1000, "full": 1000}[scale]  # images per call
    c.max_steps = {"smoke": 3, "quick": 0, "full": 0}[scale]  # cap on steps per model (0 = none)
    c.paths_shown = 8  # test images in the glimpse-path figure
    c.progress = scale != "smoke"  # progress bars (off in the smoke tests)
    return c


FIELDS = {
    "scale": Choice(SCALES),
    "seed": SEED,
    "data_dir": DATA_DIR,
    "models": Tuple(Choice(MODELS), min_len=1),
    "canvas": Int(28, 512),
    "train_limit": Int(lo=0),
    "val_limit": Int(lo=0),
    "test_limit": Int(lo=0),
    "glimpses": Int(lo=1),
    "base": Int(lo=1),
    "scales": Int(1, 6),
    "what_features": Int(lo=1),
    "where_features": Int(lo=1),
    "glimpse_features": Int(lo=1),
    "core_features": Int(lo=1),
    "core": Choice(CORES),
    "loc_std": Float(lo=0.0, lo_open=True),
    "baseline_weight": Float(lo=0.0),
    "soft_grid": Int(lo=1),
    "attention_features": Int(lo=1),
    "cnn_channels": Tuple(Int(lo=1), min_len=1),
    "cnn_hidden": Int(lo=1),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "batch_size": Int(lo=1),
    "num_epochs": Int(lo=1),
    "soft_epochs": Int(lo=1),
    "cnn_epochs": Int(lo=1),
    "eval_every_epochs": Int(lo=1),
    "checkpoint_every_epochs": Int(lo=0),
    "eval_batch_size": Int(lo=1),
    "max_steps": Int(lo=0),
    "paths_shown": Int(lo=0),
    "progress": Bool(),
}


def build(name: str, c: ml_collections.ConfigDict):
    """(model, loss_fn, eval_fn) of one of MODELS."""
    glimpse = {
        "base": c.base,
        "scales": c.scales,
        "what_features": c.what_features,
        "where_features": c.where_features,
        "glimpse_features": c.glimpse_features,
        "core_features": c.core_features,
        "core": c.core,
    }
    if name == "cnn":
        model = MnistCNN(channels=tuple(c.cnn_channels), hidden=c.cnn_hidden, readout="global_max")
        return model, classifier_loss(model), classifier_eval(model)
    if name == "soft":
        model = SoftAttention(
            steps=c.glimpses, grid=c.soft_grid, attention_features=c.attention_features, **glimpse
        )
        return model, attention_loss(model), attention_eval(model)
    policy = "learned" if name == "hard" else "random"
    model = RAM(glimpses=c.glimpses, loc_std=c.loc_std, policy=policy, **glimpse)
    loss = attention_loss(model, reinforce=name == "hard", baseline_weight=c.baseline_weight)
    return model, loss, attention_eval(model)


def train_model(name: str, splits, c: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains one model with the engine's `fit`; returns its test error, params and history."""
    start = time.process_time()
    model, loss_fn, eval_fn = build(name, c)
    train = splits["train"]
    loader = data.Loader(train, c.batch_size, seed=c.seed)
    epochs = {"cnn": c.cnn_epochs, "soft": c.soft_epochs}.get(name, c.num_epochs)
    num_steps = epochs * loader.steps_per_epoch
    if c.max_steps:
        num_steps = min(num_steps, c.max_steps)
    tx = optim.adam(optim.warmup_cosine(c.learning_rate, 0, num_steps))
    state = init_state(model, tx, train.x[: c.batch_size], seed=c.seed)
    state, history, summary = fit(
        state,
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        train_loader=loader,
        val_batches=lambda: data.eval_batches(splits["val"], c.eval_batch_size),
        num_steps=num_steps,
        workdir=f"{workdir}/{name}",
        eval_every=min(c.eval_every_epochs * loader.steps_per_epoch, num_steps),
        checkpoint_every=c.checkpoint_every_epochs * loader.steps_per_epoch,
        resume=c.get("resume", False),
        progress=c.progress,
        desc=name,
    )
    params = summary["best_params"]
    test = summary["evaluate"](params, data.eval_batches(splits["test"], c.eval_batch_size))
    return {
        "model": model,
        "params": jax.device_get(params),
        "history": history,
        "error_pct": 100.0 * (1.0 - test["accuracy"]),
        "param_count": summary["param_count"],
        "cpu_s": time.process_time() - start,
    }


def plot_paths(model, params, split, path: str, *, shown: int, title: str) -> str:
    """The first `shown` test canvases with the policy's glimpse path: the 3 retina squares of
    the first glimpse (dashed) and of the last (solid), and the numbered centres of all."""
    x = split.x[:shown]
    out = jax.jit(lambda p, xb: model.apply({"params": p}, xb))(params, x)
    locs = np.asarray(out["locations"])  # [n, T, 2] in [-1, 1], (row, column)
    pred = np.asarray(out["logits"]).argmax(-1)
    side = x.shape[1]
    cols = min(4, shown)
    rows = -(-shown // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= shown:
            continue
        ax.imshow(x[i, :, :, 0], cmap="gray", vmin=0, vmax=1)
        centre = (locs[i] + 1.0) / 2.0 * side  # pixel (row, column) of each glimpse
        ax.plot(centre[:, 1], centre[:, 0], "-", color="tab:orange", lw=1)
        for t, (r, q) in enumerate(centre):
            ax.text(q, r, str(t + 1), color="yellow", fontsize=8, ha="center", va="center")
        for t, style in ((0, "--"), (len(centre) - 1, "-")):
            for s in patch_sizes(model.base, model.scales):
                top, left = np.floor(centre[t]) - s // 2
                ax.add_patch(
                    plt.Rectangle(
                        (left - 0.5, top - 0.5), s, s, fill=False, ls=style, color="tab:red", lw=1
                    )
                )
        ax.set_xlim(-0.5, side - 0.5)
        ax.set_ylim(side - 0.5, -0.5)
        ax.set_title(f"label {split.y[i]}, predicted {pred[i]}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    mnist = data.load("mnist", data_dir=config.data_dir or None, flatten=False)
    limits = {"train": config.train_limit, "val": config.val_limit, "test": config.test_limit}
    splits = translated_splits(mnist, canvas=config.canvas, seed=config.seed, limits=limits)
    results = {}
    for name in config.models:
        os.makedirs(f"{workdir}/{name}", exist_ok=True)
        results[name] = train_model(name, splits, config, workdir)
        plots.learning_curves(
            results[name]["history"],
            f"{workdir}/{name}_curves.png",
            keys=("loss", "val_loss", "val_accuracy"),
            title=f"{name} on {config.canvas}x{config.canvas} translated MNIST",
        )
    metrics = {}
    for name, r in results.items():
        metrics[f"{name}_error_pct"] = r["error_pct"]
        metrics[f"{name}_param_count"] = r["param_count"]
        metrics[f"{name}_cpu_s"] = r["cpu_s"]
    for name in ("hard", "random"):
        if name in results and config.paths_shown:
            r = results[name]
            plot_paths(
                r["model"],
                r["params"],
                splits["test"],
                f"{workdir}/{name}_glimpse_paths.png",
                shown=min(config.paths_shown, len(splits["test"].y)),
                title=f"{name} glimpses ({config.glimpses}; test error {r['error_pct']:.1f}%)",
            )
    bars = []
    if config.scale in HARD_BAR_PCT and "hard" in results:
        hard = results["hard"]["error_pct"]
        bars.append(
            at_most("hard-attention test error %", hard, HARD_BAR_PCT[config.scale], paper="1.84")
        )
        if "random" in results:
            gap = results["random"]["error_pct"] - hard
            metrics["policy_gap_pct"] = gap
            bars.append(at_least("random error - hard error (points)", gap, POLICY_GAP_PCT))
    metrics["bars"] = bars
    return metrics
