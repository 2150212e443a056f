"""LeNet-5 on MNIST (LeCun, Bottou, Bengio & Haffner 1998, sec. III.C: 0.95% test error, 0.8%
with distortions).

Run:    python run.py lenet_mnist --scale quick
Expect: quick (10 epochs, Adam, batch 64, all 50000 train images, ReLU): test error 0.89% (bar
        <= 1.3%), 61,706 parameters; 188 s user+sys CPU (about 1.6 min on 2 quiet cores; 7.9 min
        wall at load average 5-10). Full (30 epochs, plain and distorted; a GPU or a long CPU
        run; not run yet): bars <= 0.95% and <= 0.80% (the paper's numbers).

The squashing function is the one departure from the paper that the numbers depend on. With
the paper's scaled tanh (`--config.activation=scaled_tanh`) the same 10-epoch budget gave 1.54%
(batch 128, lr 2e-3), 1.38% (batch 64) and 1.43% (batch 32, lr 1e-3, 8 epochs), with the
validation error still falling: the scaled tanh needs more epochs than the quick budget allows.
ReLU (Nair & Hinton 2010, after the paper) reaches 0.89% in it, so it is the default.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from dl import data, optim
from dl.data.augment import with_augmentation
from dl.models.cnn import LeNet5
from dl.objectives.classification import classifier_eval, classifier_loss
from dl.report import at_most, plots
from dl.report.grids import image_grid
from dl.train.supervised import fit, init_state
from experiments._fields import DATA_DIR, SCALES, SEED, Bool, Choice, Float, Int

PAPER = {
    "citation": "LeCun, Bottou, Bengio & Haffner 1998, Proc. IEEE 86(11), 'Gradient-based "
    "learning applied to document recognition', sec. III.C and Fig. 14",
    "claim": "A convolutional net (LeNet-5, 60k parameters) reaches under 1% MNIST test error "
    "without hand-crafted features; training on distorted images lowers it further.",
    "published": {
        "lenet5_error_pct": 0.95,
        "lenet5_distortions_error_pct": 0.80,  # random planar affine distortions
        "lenet5_params": 60000,  # "about 60,000" with the sparse C3 table; ours (full): 61,706
    },
    "bars": {
        "smoke": "none (plumbing on synthetic IDX files)",
        "quick": "test error <= 1.3% after 10 epochs on all 50000 train images, no distortions",
        "full": "test error <= 0.95% without distortions and <= 0.80% with elastic distortions "
        "(the paper's numbers, no margin)",
    },
}
ERROR_BAR_PCT = {"quick": 1.3, "full": 0.95}  # the plain net; smoke checks plumbing only
DISTORTED_BAR_PCT = 0.80  # full scale, the distorted net


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.scale = scale  # selects the bar (see PAPER)
    c.seed = 0  # init and data order
    c.data_dir = ""  # data root; "" = $DL_DATA_DIR, else <repo>/data, else ../shared/data
    # relu; or the paper's scaled_tanh 1.7159 tanh(2a/3) (slower to train, see the docstring)
    c.activation = "relu"
    # dl.nn.conv.Conv impl, same values; im2col ran the LeNet-5 step 1.4-3.7x faster than XLA's
    # conv on the loaded 2-core CPU (BENCHMARKS.md, cnn_step)
    c.conv_impl = "im2col"
    # Adam, cosine-decayed to 0 (the paper's stochastic diagonal Levenberg-Marquardt is not in
    # dl.optim; Adam reaches the same error in a few epochs, which the quick scale needs).
    c.learning_rate = 2e-3  # peak (Adam's usual 1e-3, doubled for the cosine decay)
    c.batch_size = {"smoke": 16, "quick": 64, "full": 64}[scale]  # minibatch
    # Epochs over all 50000 train images; quick fits about 2 minutes on 2 quiet cores.
    c.num_epochs = {"smoke": 1, "quick": 10, "full": 30}[scale]
    c.train_distorted = scale == "full"  # the second net, on distorted images (full only)
    # Elastic distortion (Simard et al. 2003's alpha = 34, sigma = 4 pixels) plus a random
    # rotation, drawn afresh each step inside the jitted step (dl.data.augment).
    c.elastic_alpha = 34.0  # displacement scale in pixels (0 = off)
    c.elastic_sigma = 4.0  # smoothing of the displacement field, pixels
    c.max_degrees = 10.0  # rotation range +- degrees (0 = off)
    c.crop_pad = 2  # random shift of up to +-2 pixels (pad and crop; 0 = off)
    c.eval_every_epochs = 1  # validation picks the reported (best) params
    c.checkpoint_every_epochs = 1  # orbax checkpoints for --resume
    c.max_steps = {"smoke": 4, "quick": 0, "full": 0}[scale]  # cap on steps (0 = no cap)
    c.misclassified_shown = 32  # test digits in the misclassified grid
    c.progress = scale != "smoke"  # progress bar (off in the smoke tests)
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "scale": Choice(SCALES),
    "seed": SEED,
    "data_dir": DATA_DIR,
    "activation": Choice(("scaled_tanh", "tanh", "relu")),
    "conv_impl": Choice(("xla", "im2col", "im2col_vjp")),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "batch_size": Int(lo=1),
    "num_epochs": Int(lo=1),
    "train_distorted": Bool(),
    "elastic_alpha": Float(lo=0.0),
    "elastic_sigma": Float(lo=0.0, lo_open=True),
    "max_degrees": Float(0.0, 180.0),
    "crop_pad": Int(0, 14),
    "eval_every_epochs": Int(lo=1),
    "checkpoint_every_epochs": Int(lo=0),
    "max_steps": Int(lo=0),
    "misclassified_shown": Int(lo=0),
    "progress": Bool(),
}


def predict(model, params, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Predicted classes [n] of images x [n, 28, 28, 1] (eval mode)."""
    fn = jax.jit(lambda p, xb: model.apply({"params": p}, xb).argmax(-1))
    return np.concatenate(
        [np.asarray(fn(params, x[i : i + batch])) for i in range(0, len(x), batch)]
    )


def train_one(name, model, splits, config, workdir, *, distort: bool):
    train = splits["train"]
    loader = data.Loader(train, config.batch_size, seed=config.seed)
    num_steps = config.num_epochs * loader.steps_per_epoch
    if config.max_steps:
        num_steps = min(num_steps, config.max_steps)
    tx = optim.adam(optim.warmup_cosine(config.learning_rate, 0, num_steps))
    state = init_state(model, tx, train.x[: config.batch_size], seed=config.seed)
    loss_fn = classifier_loss(model)
    if distort:
        loss_fn = with_augmentation(
            loss_fn,
            elastic_alpha=config.elastic_alpha,
            elastic_sigma=config.elastic_sigma,
            max_degrees=config.max_degrees,
            crop_pad=config.crop_pad,
        )
    every = min(config.eval_every_epochs * loader.steps_per_epoch, num_steps)
    state, history, summary = fit(
        state,
        loss_fn=loss_fn,
        eval_fn=classifier_eval(model),
        train_loader=loader,
        val_batches=lambda: data.eval_batches(splits["val"], 1000),
        num_steps=num_steps,
        workdir=f"{workdir}/{name}",
        eval_every=every,
        checkpoint_every=config.checkpoint_every_epochs * loader.steps_per_epoch,
        resume=config.get("resume", False),
        progress=config.progress,
        desc=name,
    )
    params = summary["best_params"]
    test = summary["evaluate"](params, data.eval_batches(splits["test"], 1000))
    plots.learning_curves(
        history,
        f"{workdir}/{name}_curves.png",
        keys=("loss", "val_loss", "val_accuracy"),
        title=f"LeNet-5 ({name})",
    )
    x, y = splits["test"].x, splits["test"].y
    pred = predict(model, jax.device_get(params), x)
    wrong = np.flatnonzero(pred != y)[: config.misclassified_shown]
    image_grid(
        x[wrong],
        f"{workdir}/{name}_misclassified.png",
        titles=[f"{y[i]} -> {pred[i]}" for i in wrong],
        normalize="none",
        title=f"LeNet-5 ({name}): first {len(wrong)} misclassified test digits (true -> predicted)",
    )
    return 100.0 * (1.0 - test["accuracy"]), summary["param_count"]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    # The fixed split: the first 50000 train images train, the last 10000 validate.
    splits = data.load("mnist", data_dir=config.data_dir or None, flatten=False)
    model = LeNet5(activation=config.activation, conv_impl=config.conv_impl)
    os.makedirs(f"{workdir}/plain", exist_ok=True)
    err, n_params = train_one("plain", model, splits, config, workdir, distort=False)
    metrics = {"test_error_pct": err, "param_count": n_params}
    bars = []
    if config.scale in ERROR_BAR_PCT:
        bars.append(at_most("LeNet-5 test error %", err, ERROR_BAR_PCT[config.scale], paper="0.95"))
    if config.train_distorted:
        os.makedirs(f"{workdir}/distorted", exist_ok=True)
        err_d, _ = train_one("distorted", model, splits, config, workdir, distort=True)
        metrics["distorted_test_error_pct"] = err_d
        if config.scale == "full":
            bars.append(
                at_most("LeNet-5 + distortions test error %", err_d, DISTORTED_BAR_PCT, paper="0.8")
            )
    metrics["bars"] = bars
    return metrics
