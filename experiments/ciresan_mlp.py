"""Ciresan et al. 2010, Table 1: plain deep MLPs on elastically distorted MNIST (row 1 at quick).

Run:    python run.py ciresan_mlp --scale quick
Expect: quick (1000-500-10, 10 epochs of distorted digits): test error 1.83% (val 1.84%; paper
        0.49% after up to 800 epochs), bar <= 2.0%. 81 CPU s; 2:54 wall on the shared 2-core
        machine at load 12, about 45 s quiet. Full (row 4, 2500-2000-1500-1000-500-10, 500
        epochs on one GPU): not run yet; bar <= 0.45% (paper 0.35%).

What we use, against the paper: the scaled tanh 1.7159 tanh(2a/3) and U[-0.05, 0.05] weights
as theirs; minibatch (128) SGD with momentum 0.9 and the rate multiplied by a constant each
epoch, where they train online (batch 1) with a rate decayed from 1e-3 to 1e-6; distortions
fresh at every step on the device (`dl.data.distort`): rotation U[-10, 10] degrees, rows and
columns scaled by 1 + U[-0.15, 0.15] independently, and an elastic field with sigma 6, alpha 36
(the paper: sigma 5-6, alpha 34-38, and rotation and scaling of similar size; its exact affine
ranges we quote from memory). Table 1's numbers are from memory of the paper too (the "test
error for the best validation" column); they agree with the widely cited 0.35% for the biggest.
"""

from __future__ import annotations

import os

import ml_collections

from dl import data, optim
from dl.data.distort import with_distortion
from dl.models.ciresan import TABLE_1, CiresanMLP
from dl.objectives.classification import classifier_eval, classifier_loss
from dl.report import at_most, plots
from dl.train.supervised import fit, init_state
from experiments._fields import DATA_DIR, SCALES, SEED, Bool, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Ciresan, Meier, Gambardella & Schmidhuber 2010, 'Deep, big, simple neural nets "
    "excel on handwritten digit recognition', Neural Computation 22(12), Table 1",
    "claim": "Plain MLPs trained by online back-propagation on elastically and affinely "
    "distorted digits, fresh distortions every epoch, reach 0.35% MNIST test error.",
    # Test error (%) of the net with the best validation error, by Table 1 row; from memory of
    # the paper (the table also lists a slightly lower 'best test error' column, not used).
    "published": {
        "1000-500-10": 0.49,
        "1500-1000-500-10": 0.46,
        "2000-1500-1000-500-10": 0.41,
        "2500-2000-1500-1000-500-10": 0.35,
    },
    "bars": {
        "smoke": "none (plumbing on synthetic IDX files)",
        "quick": "row 1 (1000-500-10) with distortions: test error <= 2.0%",
        "full": "row 4 (2500-2000-1500-1000-500-10): test error <= 0.45% (paper 0.35)",
    },
}
ERROR_BAR_PCT = {"quick": 2.0, "full": 0.45}


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.scale = scale  # selects the bar (see PAPER)
    c.seed = 0  # init, data order and the distortions (a pure function of (seed, step))
    c.data_dir = ""  # data root; "" = $DL_DATA_DIR, else <repo>/data, else ../shared/data
    # Table 1 rows trained, in order; quick trains row 1 only, full the paper's best (row 4).
    c.rows = {"smoke": (1,), "quick": (1,), "full": (4,)}[scale]
    c.hidden_override = {"smoke": (32, 16), "quick": (), "full": ()}[scale]  # () = the row's
    c.activation = "scaled_tanh"  # the paper's 1.7159 tanh(2a/3)
    c.init_scale = 0.05  # weights U[-0.05, 0.05] as the paper
    # Distortions (dl.data.distort), fresh at every step on the device, one bilinear pass. The
    # paper: elastic sigma 5-6, alpha 34-38, plus rotation and horizontal/vertical scaling.
    c.elastic_alpha = 36.0  # displacement scale, pixels
    c.elastic_sigma = 6.0  # Gaussian smoothing std of the field, pixels
    c.max_degrees = 10.0  # rotation U[-10, 10] degrees
    c.max_scale = 0.15  # rows and columns each scaled by 1 + U[-0.15, 0.15]
    c.learning_rate = {"smoke": 0.01, "quick": 0.1, "full": 0.05}[scale]  # SGD momentum start
    c.momentum = 0.9  # minibatch SGD with momentum in place of the paper's online SGD
    # The rate is multiplied by this each epoch (the paper decays 1e-3 -> 1e-6 over training).
    c.lr_decay_per_epoch = {"smoke": 0.9, "quick": 0.85, "full": 0.97}[scale]
    c.batch_size = {"smoke": 16, "quick": 128, "full": 128}[scale]  # minibatch (paper: 1)
    c.num_epochs = {"smoke": 1, "quick": 10, "full": 500}[scale]  # paper: up to 800
    c.eval_every_epochs = 1  # validation picks the reported (best) params
    c.checkpoint_every_epochs = {"smoke": 1, "quick": 1, "full": 10}[scale]  # for --resume
    c.max_steps = {"smoke": 4, "quick": 0, "full": 0}[scale]  # cap on steps (0 = no cap)
    c.progress = scale != "smoke"  # progress bar (off in the smoke tests)
    return c


FIELDS = {
    "scale": Choice(SCALES),
    "seed": SEED,
    "data_dir": DATA_DIR,
    "rows": Tuple(Int(lo=1, hi=len(TABLE_1))),
    "hidden_override": Tuple(Int(lo=1), min_len=0),
    "activation": Choice(("scaled_tanh", "tanh", "relu")),
    "init_scale": Float(lo=0.0, lo_open=True),
    "elastic_alpha": Float(lo=0.0),
    "elastic_sigma": Float(lo=0.0, lo_open=True),
    "max_degrees": Float(0.0, 180.0),
    "max_scale": Float(0.0, 1.0, hi_open=True),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "momentum": Float(0.0, 1.0, hi_open=True),
    "lr_decay_per_epoch": Float(0.0, 1.0, lo_open=True),
    "batch_size": Int(lo=1),
    "num_epochs": Int(lo=1),
    "eval_every_epochs": Int(lo=1),
    "checkpoint_every_epochs": Int(lo=0),
    "max_steps": Int(lo=0),
    "progress": Bool(),
}


def row_name(hidden) -> str:
    return "-".join(str(w) for w in (*hidden, 10))


def train_row(hidden, splits, config, workdir) -> float:
    """Trains one net on distorted digits; returns its test error (%) at the best validation."""
    name = row_name(hidden)
    model = CiresanMLP(
        hidden=tuple(hidden), activation=config.activation, init_scale=config.init_scale
    )
    train = splits["train"]
    loader = data.Loader(train, config.batch_size, seed=config.seed)
    num_steps = config.num_epochs * loader.steps_per_epoch
    if config.max_steps:
        num_steps = min(num_steps, config.max_steps)
    lr = optim.exponential_decay(
        config.learning_rate, config.lr_decay_per_epoch, loader.steps_per_epoch
    )
    tx = optim.momentum(lr, beta=config.momentum)
    state = init_state(model, tx, train.x[: config.batch_size], seed=config.seed)
    loss_fn = classifier_loss(model)
    if config.elastic_alpha or config.max_degrees or config.max_scale:
        loss_fn = with_distortion(
            loss_fn,
            alpha=config.elastic_alpha,
            sigma=config.elastic_sigma,
            max_degrees=config.max_degrees,
            max_scale=config.max_scale,
        )
    every = min(config.eval_every_epochs * loader.steps_per_epoch, num_steps)
    _, history, summary = fit(
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
    test = summary["evaluate"](summary["best_params"], data.eval_batches(splits["test"], 1000))
    plots.learning_curves(
        history,
        f"{workdir}/{name}_curves.png",
        keys=("loss", "val_loss", "val_accuracy"),
        title=f"{name} MLP, distorted digits",
    )
    return 100.0 * (1.0 - test["accuracy"])


def table(ours: dict[str, float]) -> str:
    """Table 1 beside our figures (— for rows not run)."""
    lines = [f"{'net':<28} {'paper %':>8} {'ours %':>8}"]
    for name, paper in PAPER["published"].items():
        mine = f"{ours[name]:.2f}" if name in ours else "—"
        lines.append(f"{name:<28} {paper:>8.2f} {mine:>8}")
    return "\n".join(lines)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    splits = data.load("mnist", data_dir=config.data_dir or None, flatten=False)
    os.makedirs(workdir, exist_ok=True)
    ours = {}
    for row in config.rows:
        hidden = tuple(config.hidden_override) or TABLE_1[row]
        ours[row_name(hidden)] = train_row(hidden, splits, config, workdir)
    text = table(ours)
    print(text)
    with open(f"{workdir}/table.txt", "w") as f:
        f.write(text + "\n")
    metrics = {"test_error_pct": ours}
    bars = []
    if config.scale in ERROR_BAR_PCT and not config.hidden_override:
        for name, err in ours.items():
            paper = PAPER["published"][name]
            bars.append(
                at_most(f"{name} test error %", err, ERROR_BAR_PCT[config.scale], paper=f"{paper}")
            )
    metrics["bars"] = bars
    return metrics
