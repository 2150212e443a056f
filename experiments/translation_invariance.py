"""Translation invariance from pooling and from augmentation: MNIST accuracy vs test-time shift.

Run:    python run.py translation_invariance --scale quick
Expect: quick on a 2-core CPU: about 2.2 min (264 CPU s user+sys; 8.3 min wall at load 5-7).
        Test accuracy at shift 0 / 4 px: mlp 95.9 / 21.5%, cnn 93.2 / 89.2%, mlp_aug 94.2 /
        90.7%, cnn_aug 92.4 / 92.1%. Bars at 4 px: drop_cnn / drop_mlp = 3.9 / 74.4 = 0.05 and
        drop_mlp_aug / drop_mlp = 3.4 / 74.4 = 0.05 (both <= 0.5, PASS).

Four nets train on the centered MNIST digits (the fixed 50000-image train split) and are tested
on copies of the 10000 test images shifted by 0-6 pixels (integer shifts, zero fill,
`dl.data.augment.shift`). The accuracy at shift s is the mean over the 4 axis-aligned
directions (up, down, left, right by s pixels); shift 0 is the plain test set.

* mlp: a fully connected net (`dl.nn.mlp.MLP` on the flattened image): no built-in invariance.
* cnn: `dl.models.cnn.MnistCNN` (two 5x5 convolutions, each ReLU + 2x2 max pool) read out by a
  global max pool over positions (`readout="global_max"`, Lin et al. 2014), then dense and 10:
  convolution is shift-equivariant and the max over all positions forgets where a feature was.
* mlp_aug, cnn_aug: the same nets trained on random shifts of up to `aug_max_shift` pixels in
  each axis (`dl.data.augment.with_augmentation(crop_pad=...)`: pad-and-crop inside the jitted
  step, a pure function of (seed, step), so --resume sees the same augmented batches).

Which pooling matters (measured): with MnistCNN's benchmark readout instead (`--config.
cnn_readout=flatten`: the 7x7 grid of the last pool flattened into the dense layer) the CNN kept
97.1% at shift 0 but only 41.3% at 4 px (drop 55.8 points, ratio 0.75, failing the bar), though
it beat the MLP at 1-3 px (95.4 / 84.6 / 61.5% vs 91.3 / 69.4 / 40.2%). Two 2x2 pools absorb
shifts only inside their windows: a 4-pixel shift moves the 7x7 map by one whole cell, and a
dense layer over that grid is as position-specific as the MLP's input layer. The global pool
removes the position, at a cost of 4 points at shift 0 with these 16 narrow maps.

Quick scale uses a narrower MnistCNN (8 and 16 maps, 128 hidden units instead of 32, 64, 1024):
XLA's CPU convolutions make the benchmark width cost about 5x more per step, and the claim is
about the architecture (pooling), not its width. Full scale uses the benchmark CNN.
"""

from __future__ import annotations

import os
import time

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from dl import data, optim
from dl.data import augment
from dl.eval.metrics import correct_sum
from dl.models.cnn import MnistCNN
from dl.nn.mlp import MLP
from dl.objectives.classification import classifier_eval, classifier_loss
from dl.report import at_most, plots
from dl.train.supervised import fit, init_state
from experiments._fields import DATA_DIR, SCALES, SEED, Bool, Choice, Float, Int, Tuple

NETS = ("mlp", "cnn", "mlp_aug", "cnn_aug")
BAR_SHIFT = 4  # pixels: where both bars are read

PAPER = {
    "citation": "LeCun, Bottou, Bengio & Haffner 1998, 'Gradient-based learning applied to "
    "document recognition', sec. II.A (shift invariance from weight sharing and subsampling); "
    "Simard, Steinkraus & Platt 2003 (training on distorted/shifted copies)",
    "claim": "A CNN with pooling loses much less accuracy than an MLP when test digits are "
    "shifted; training on shifted copies makes even an MLP nearly shift-invariant.",
    "published": "no single published number for this protocol; the bars are the claims' "
    "qualitative form at a 4-pixel shift",
    "bars": {
        "smoke": "none (plumbing on synthetic IDX files)",
        "quick": "at a 4-pixel shift: drop_cnn <= 0.5 drop_mlp and drop_mlp_aug <= 0.5 drop_mlp "
        "(drop = accuracy at shift 0 - accuracy at shift 4, mean over 4 directions)",
        "full": "the same two bars with the benchmark MnistCNN and 20 epochs",
    },
}


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.scale = scale  # selects the bars (see PAPER)
    c.seed = 0  # init, data order and augmentation draws of every net
    c.data_dir = ""  # data root; "" = $DL_DATA_DIR, else <repo>/data, else ../shared/data
    c.mlp_hidden = {"smoke": (16,), "quick": (512,), "full": (1024, 1024)}[scale]  # ReLU MLP
    # MnistCNN's maps and dense width: the benchmark (32, 64) / 1024 at full; narrower at quick
    # so that two CNNs train on all 50000 images within the 2-minute CPU budget (docstring).
    c.cnn_channels = {"smoke": (2, 4), "quick": (8, 16), "full": (32, 64)}[scale]
    c.cnn_hidden = {"smoke": 8, "quick": 128, "full": 1024}[scale]
    # How the CNN's last maps reach its dense layer: "global_max" (each map's maximum over all
    # positions) or "flatten" (the benchmark's 7x7 grid; position-specific, see the docstring).
    c.cnn_readout = "global_max"
    # Training shifts are uniform in [-aug_max_shift, aug_max_shift] per axis: MNIST digits sit
    # in a 20x20 box centered in the 28x28 field, so 4 pixels never cut a stroke.
    c.aug_max_shift = 4
    c.max_test_shift = 6  # test shifts 0..max_test_shift pixels (the plot's x axis)
    c.learning_rate = 1e-3  # Adam, cosine-decayed to 0 over the run
    c.batch_size = {"smoke": 16, "quick": 128, "full": 128}[scale]
    # Epochs per net over all 50000 train images (quick: the CPU budget; full: to convergence).
    c.num_epochs = {"smoke": 1, "quick": 2, "full": 20}[scale]
    c.checkpoint_every_epochs = 1  # orbax checkpoints for --resume
    c.eval_batch_size = {"smoke": 16, "quick": 2000, "full": 2000}[scale]  # test images per call
    c.max_steps = {"smoke": 3, "quick": 0, "full": 0}[scale]  # cap on steps per net (0 = none)
    c.progress = scale != "smoke"  # progress bars (off in the smoke tests)
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "scale": Choice(SCALES),
    "seed": SEED,
    "data_dir": DATA_DIR,
    "mlp_hidden": Tuple(Int(lo=1)),
    "cnn_channels": Tuple(Int(lo=1), min_len=2, max_len=2),
    "cnn_hidden": Int(lo=1),
    "cnn_readout": Choice(("global_max", "flatten")),
    "aug_max_shift": Int(0, 13),
    "max_test_shift": Int(BAR_SHIFT, 27),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "batch_size": Int(lo=1),
    "num_epochs": Int(lo=1),
    "checkpoint_every_epochs": Int(lo=0),
    "eval_batch_size": Int(lo=1),
    "max_steps": Int(lo=0),
    "progress": Bool(),
}


class FlatMLP(nn.Module):
    """An MLP on images: x [batch, H, W, C] is flattened to [batch, H*W*C] first, so the MLP
    sees the same (augmented) image batches as the CNN."""

    hidden: tuple[int, ...]
    classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return MLP(hidden=self.hidden, out=self.classes, name="mlp")(
            x.reshape(x.shape[0], -1), train=train
        )


def build(name: str, config: ml_collections.ConfigDict) -> nn.Module:
    if name.startswith("mlp"):
        return FlatMLP(hidden=tuple(config.mlp_hidden))
    return MnistCNN(
        channels=tuple(config.cnn_channels), hidden=config.cnn_hidden, readout=config.cnn_readout
    )


def directions(s: int) -> list[tuple[int, int]]:
    """The (dy, dx) shifts by s pixels averaged at shift s: down, up, right, left."""
    return [(0, 0)] if s == 0 else [(s, 0), (-s, 0), (0, s), (0, -s)]


def shifted_accuracy(model, params, extra, split, shifts, batch_size: int) -> list[float]:
    """Accuracy on `split` shifted by each s in `shifts`, averaged over `directions(s)`. The shift
    runs on the device inside one jitted call per batch (dy, dx traced: one compilation)."""

    @jax.jit
    def correct(x, y, mask, dy, dx):
        moved = jax.vmap(lambda im: augment.shift(im, dy, dx))(x)
        logits = model.apply({"params": params, **extra}, moved, train=False)
        return correct_sum(logits=logits, labels=y, mask=mask)

    batches = list(data.eval_batches(split, batch_size))
    out = []
    for s in shifts:
        accs = []
        for dy, dx in directions(s):
            hits = sum(float(correct(b["x"], b["y"], b["mask"], dy, dx)) for b in batches)
            accs.append(hits / len(split.y))
        out.append(float(np.mean(accs)))
    return out


def train_net(name: str, splits, config, workdir: str):
    """Trains one net with the engine's `fit`; returns (model, params, extra, seconds)."""
    start = time.perf_counter()
    model = build(name, config)
    train = splits["train"]
    loader = data.Loader(train, config.batch_size, seed=config.seed)
    num_steps = config.num_epochs * loader.steps_per_epoch
    if config.max_steps:
        num_steps = min(num_steps, config.max_steps)
    tx = optim.adam(optim.warmup_cosine(config.learning_rate, 0, num_steps))
    state = init_state(model, tx, train.x[: config.batch_size], seed=config.seed)
    loss_fn = classifier_loss(model)
    if name.endswith("_aug") and config.aug_max_shift:
        loss_fn = augment.with_augmentation(loss_fn, crop_pad=config.aug_max_shift)
    state, _, summary = fit(
        state,
        loss_fn=loss_fn,
        eval_fn=classifier_eval(model),
        train_loader=loader,
        val_batches=lambda: data.eval_batches(splits["val"], config.eval_batch_size),
        num_steps=num_steps,
        workdir=f"{workdir}/{name}",
        eval_every=num_steps,  # once, at the end: validation costs as much as training here
        checkpoint_every=config.checkpoint_every_epochs * loader.steps_per_epoch,
        resume=config.get("resume", False),
        progress=config.progress,
        desc=name,
    )
    extra = jax.device_get(state.extra)
    return model, jax.device_get(summary["best_params"]), extra, time.perf_counter() - start


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    splits = data.load("mnist", data_dir=config.data_dir or None, flatten=False)
    shifts = list(range(config.max_test_shift + 1))
    acc, seconds = {}, {}
    for name in NETS:
        os.makedirs(f"{workdir}/{name}", exist_ok=True)
        model, params, extra, seconds[name] = train_net(name, splits, config, workdir)
        acc[name] = shifted_accuracy(
            model, params, extra, splits["test"], shifts, config.eval_batch_size
        )
        print(f"  {name}: " + " ".join(f"{s}px {100 * a:.2f}%" for s, a in zip(shifts, acc[name])))
    plots.curves(
        {name: (shifts, [100 * a for a in acc[name]]) for name in NETS},
        f"{workdir}/accuracy_vs_shift.png",
        xlabel="test shift (pixels, mean of 4 directions)",
        ylabel="test accuracy (%)",
        title="MNIST: accuracy vs translation",
    )
    drop = {name: acc[name][0] - acc[name][BAR_SHIFT] for name in NETS}
    metrics: dict = {
        "shifts": shifts,
        "test_accuracy_by_shift": acc,
        **{f"test_accuracy_{name}": acc[name][0] for name in NETS},
        **{f"drop_{BAR_SHIFT}px_{name}": drop[name] for name in NETS},
        "train_time_s": seconds,
    }
    bars = []
    if config.scale != "smoke":
        ratio_cnn = drop["cnn"] / max(drop["mlp"], 1e-9)
        ratio_aug = drop["mlp_aug"] / max(drop["mlp"], 1e-9)
        metrics.update(drop_ratio_cnn_over_mlp=ratio_cnn, drop_ratio_mlp_aug_over_mlp=ratio_aug)
        bars = [
            at_most(
                f"drop_cnn / drop_mlp at {BAR_SHIFT}px "
                f"({100 * drop['cnn']:.1f} / {100 * drop['mlp']:.1f} points)",
                ratio_cnn,
                0.5,
                paper="qualitative",
            ),
            at_most(
                f"drop_mlp_aug / drop_mlp at {BAR_SHIFT}px "
                f"({100 * drop['mlp_aug']:.1f} / {100 * drop['mlp']:.1f} points)",
                ratio_aug,
                0.5,
                paper="qualitative",
            ),
        ]
    metrics["bars"] = bars
    return metrics
