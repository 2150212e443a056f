"""Eight optimizers training the same MLP on the 8x8 digits: validation accuracy and training loss
per epoch, the epochs each needs to reach 97% validation accuracy, and plain SGD with "halve the
learning rate when the validation loss rises".

Run:    python run.py optimizers_digits --scale quick
Expect: quick on a 2-core CPU: about 10 s; 7 of 8 optimizers reach 97% validation accuracy
        within 60 epochs (momentum 13, Nesterov 18, Adam 24 epochs); plain SGD at 0.1 does not
        (best 96.9% = 349 of 360, one image short), nor does SGD with halving (best 95.6%: three
        rises of the validation loss cut its rate to 1/8 while it was still underfitting).

All runs share everything but the optimizer: the architecture, the initial parameters (one seed),
the order of the minibatches and the number of epochs. Each optimizer uses its commonly published
default learning rate (see `learning_rates` in the config), not a rate tuned on this task, so the
table compares the methods as they are usually first tried. Each run is one call of the training
engine (`dl.train.supervised.fit`, validation every epoch, no early stopping).

The extra run `sgd_halving` is SGD at the same rate chained with `scale_by_plateau_factor`, whose
factor the `HalveOnRise` callback halves after every epoch at which the validation loss rose
(the annealing rule of Mikolov et al.'s 2010 RNN language model, which watched the validation
entropy).
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import matplotlib
import ml_collections
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dl import data
from dl.nn.mlp import MLP
from dl.objectives.classification import classifier_eval, classifier_loss
from dl.ops.activations import ACTIVATIONS
from dl.optim.optimizers import OPTIMIZERS, get_optimizer
from dl.optim.schedules import HalveOnRise, PlateauFactorState, scale_by_plateau_factor
from dl.report import Bar, at_least
from dl.train.state import TrainState
from dl.train.supervised import fit, init_state
from experiments._fields import DATA_DIR, SEED, Bool, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Robbins & Monro 1951 (SGD); Polyak 1964 and Rumelhart, Hinton & Williams 1986 "
    "(momentum); Nesterov 1983; Duchi, Hazan & Singer 2011 (Adagrad); Tieleman & "
    "Hinton 2012 (RMSprop); Zeiler 2012 (Adadelta); Kingma & Ba 2015 (Adam, Adamax); "
    "Mikolov et al. 2010 (halving on a validation rise)",
    "claim": "With default settings, momentum and adaptive methods train an MLP faster than plain "
    "SGD (Kingma & Ba 2015, Fig. 2 compares them on an MNIST MLP).",
    "published": "no number on this split; Kingma & Ba 2015 Fig. 2 (MNIST MLP): Adam and "
    "SGD+Nesterov converge faster than Adagrad and RMSprop and than plain SGD",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "at least 6 of the 8 optimizers reach 97% validation accuracy within 60 "
        "epochs; momentum, Nesterov and Adam each reach it in no more epochs than "
        "plain SGD",
        "full": "at least 6 of the 8 optimizers reach 97% validation accuracy within 200 "
        "epochs; momentum, Nesterov and Adam each reach it in no more epochs than "
        "plain SGD",
    },
}

FAST_METHODS = ("momentum", "nesterov", "adam")  # the bar: each no slower than plain SGD


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # initial parameters and minibatch order, shared by every run
    c.data_dir = ""  # unused: digits ship with scikit-learn
    c.hidden = (128,)  # one hidden layer, as in Kingma & Ba's MNIST MLP comparison
    c.activation = "relu"  # hidden units
    c.batch_size = 64  # 17 steps per epoch on digits' 1077 training images
    # Epochs: quick as digits_mlp's; at 30 the slower methods' training loss is still ~0.15.
    c.num_epochs = {"smoke": 2, "quick": 60, "full": 200}[scale]
    c.threshold = 0.97  # the table's "epochs to this validation accuracy"
    c.min_reaching = 6  # bar: at least this many of the 8 reach `threshold`
    c.optimizers = tuple(OPTIMIZERS)  # all eight; add the rate of any new one below
    # Commonly published default rates; every other hyperparameter is the builder's default
    # (momentum/Nesterov beta 0.9, RMSprop decay 0.9, Adam/Adamax b1 0.9 and b2 0.999).
    c.learning_rates = ml_collections.ConfigDict(
        {
            "sgd": 0.1,  # a usual starting rate for plain SGD on small MLPs
            "momentum": 0.05,  # with beta 0.9 the effective step is 10x this (0.5)
            "nesterov": 0.05,  # as momentum
            "adagrad": 0.05,  # between PyTorch's/Keras' 0.01 and the 0.1 often used with it
            "rmsprop": 1e-3,  # Keras' default (Tieleman & Hinton give none)
            "adadelta": 1.0,  # Zeiler 2012 has no rate: 1.0 is the paper's rule
            "adam": 1e-3,  # Kingma & Ba 2015, Algorithm 1
            "adamax": 2e-3,  # Kingma & Ba 2015, Algorithm 2
        }
    )
    c.halving = True  # also run SGD with HalveOnRise on the validation loss
    c.halving_metric = "val_loss"  # watched by HalveOnRise: a rise halves the rate
    c.progress = False  # nine short runs: one line each instead of progress bars
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "seed": SEED,
    "data_dir": DATA_DIR,
    "hidden": Tuple(Int(lo=1)),
    "activation": Choice(ACTIVATIONS),
    "batch_size": Int(lo=1),
    "num_epochs": Int(lo=1),
    "threshold": Float(0.0, 1.0),
    "min_reaching": Int(lo=0),
    "optimizers": Tuple(Choice(OPTIMIZERS)),
    **{f"learning_rates.{name}": Float(lo=0.0, lo_open=True) for name in OPTIMIZERS},
    "halving": Bool(),
    "halving_metric": Choice(("val_loss", "val_accuracy")),
    "progress": Bool(),
}


def epochs_to_threshold(val_accuracy, threshold: float) -> int | None:
    """First epoch (1-based) whose validation accuracy is >= ``threshold``; None if none is.

    Args:
      val_accuracy: [num_epochs], the accuracy after each epoch.
    """
    hits = np.flatnonzero(np.asarray(val_accuracy, np.float64) >= threshold)
    return int(hits[0]) + 1 if len(hits) else None


def per_epoch(
    history: list[dict[str, Any]], steps_per_epoch: int, num_epochs: int
) -> dict[str, np.ndarray]:
    """Per-epoch curves from the engine's history rows.

    Returns:
      train_loss: [num_epochs], the mean minibatch loss over each epoch's steps;
      val_loss, val_accuracy: [num_epochs], the evaluation at the end of each epoch.
    """
    step_rows = [r for r in history if "loss" in r]
    losses = np.array([r["loss"] for r in sorted(step_rows, key=lambda r: r["step"])])
    if len(losses) != steps_per_epoch * num_epochs:
        raise ValueError(f"expected {steps_per_epoch * num_epochs} step rows, got {len(losses)}")
    evals = {r["step"]: r for r in history if "val_accuracy" in r}
    ends = [(e + 1) * steps_per_epoch for e in range(num_epochs)]
    return {
        "train_loss": losses.reshape(num_epochs, steps_per_epoch).mean(axis=1),
        "val_loss": np.array([evals[s]["val_loss"] for s in ends]),
        "val_accuracy": np.array([evals[s]["val_accuracy"] for s in ends]),
    }


def plateau_factor(opt_state: Any) -> float | None:
    """The factor of the (first) ``PlateauFactorState`` in an optax state; None if there is none."""
    nodes = [
        n
        for n in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, PlateauFactorState))
        if isinstance(n, PlateauFactorState)
    ]
    return float(nodes[0].factor) if nodes else None


def train_one(
    init: TrainState,
    tx: optax.GradientTransformation,
    *,
    model: MLP,
    splits,
    config,
    run_dir: str,
    eval_fn,
    callbacks=(),
) -> dict[str, Any]:
    """One engine run of ``tx`` from the parameters, RNG and batch order of ``init``.

    Returns the per-epoch curves (see `per_epoch`), test accuracy, time and, for a chain with
    `scale_by_plateau_factor`, the final rate factor.
    """
    loader = data.Loader(splits["train"], config.batch_size, seed=config.seed)
    # Fresh buffers per run: the engine donates the state, and `init` must serve the next run too.
    params, rng, extra = jax.device_get((init.params, init.rng, init.extra))
    state = TrainState.create(apply_fn=init.apply_fn, params=params, tx=tx, rng=rng, extra=extra)
    os.makedirs(run_dir, exist_ok=True)
    start = time.perf_counter()
    state, history, summary = fit(
        state,
        loss_fn=classifier_loss(model),
        eval_fn=eval_fn,
        train_loader=loader,
        val_batches=lambda: data.eval_batches(splits["val"], 512),
        num_steps=config.num_epochs * loader.steps_per_epoch,
        workdir=run_dir,
        eval_every=loader.steps_per_epoch,
        callbacks=callbacks,
        log_every=loader.steps_per_epoch,
        progress=config.progress,
        desc=os.path.basename(run_dir),
    )
    curves = per_epoch(history, loader.steps_per_epoch, config.num_epochs)
    test = summary["evaluate"](state.params, data.eval_batches(splits["test"], 512))
    return {
        **curves,
        "test_accuracy": test["accuracy"],
        "time_s": time.perf_counter() - start,
        "rate_factor": plateau_factor(state.opt_state),
    }


def plot_curves(runs: dict[str, dict[str, Any]], threshold: float, path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = dict(zip(runs, plt.get_cmap("tab10").colors))
    for name, r in runs.items():
        epochs = np.arange(1, len(r["val_accuracy"]) + 1)
        style = "--" if name == "sgd_halving" else "-"
        color = colors["sgd"] if name == "sgd_halving" else colors[name]
        axes[0].plot(
            epochs,
            r["val_accuracy"],
            style,
            color=color,
            lw=1.3,
            label=f"{name} (lr {r['learning_rate']:g})",
        )
        axes[1].plot(epochs, r["train_loss"], style, color=color, lw=1.3, label=name)
    axes[0].axhline(threshold, color="k", lw=0.8, ls=":")
    axes[0].set_ylim(max(0.0, threshold - 0.17), 1.0)
    axes[0].set_ylabel("validation accuracy")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("training loss (epoch mean)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("digits MLP: one architecture, initialization and batch order per optimizer")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    splits = data.load("digits")
    model = MLP(hidden=tuple(config.hidden), out=10, activation=config.activation)
    eval_fn = classifier_eval(model)  # one jitted evaluator shared by every run (compiled once)
    # One initialization (seed) for every run; its optimizer is replaced per run.
    init = init_state(
        model, optax.identity(), splits["train"].x[: config.batch_size], seed=config.seed
    )
    runs: dict[str, dict[str, Any]] = {}
    jobs = [
        (name, get_optimizer(name, learning_rate=config.learning_rates[name]), ())
        for name in config.optimizers
    ]
    if config.halving:
        tx = optax.chain(
            get_optimizer("sgd", learning_rate=config.learning_rates.sgd), scale_by_plateau_factor()
        )
        jobs.append(("sgd_halving", tx, (HalveOnRise(metric=config.halving_metric),)))
    for name, tx, callbacks in jobs:
        runs[name] = train_one(
            init,
            tx,
            model=model,
            splits=splits,
            config=config,
            run_dir=os.path.join(workdir, "runs", name),
            eval_fn=eval_fn,
            callbacks=callbacks,
        )
        runs[name]["learning_rate"] = config.learning_rates[
            "sgd" if name == "sgd_halving" else name
        ]
        runs[name]["epochs_to_threshold"] = epochs_to_threshold(
            runs[name]["val_accuracy"], config.threshold
        )
        r = runs[name]
        print(
            f"  {name:<12} lr {r['learning_rate']:<7g} epochs to {config.threshold:.0%}: "
            f"{r['epochs_to_threshold']!s:>5}  best val {r['val_accuracy'].max():.4f}  "
            f"final val {r['val_accuracy'][-1]:.4f}  test {r['test_accuracy']:.4f}  "
            f"({r['time_s']:.1f} s)",
            flush=True,
        )
    plot_curves(runs, config.threshold, f"{workdir}/curves.png")

    table = {}
    for name, r in runs.items():
        table[name] = {
            "learning_rate": r["learning_rate"],
            "epochs_to_threshold": r["epochs_to_threshold"],
            "best_val_accuracy": float(r["val_accuracy"].max()),
            "final_val_accuracy": float(r["val_accuracy"][-1]),
            "final_train_loss": float(r["train_loss"][-1]),
            "test_accuracy": float(r["test_accuracy"]),
            "time_s": r["time_s"],
        }
        if r["rate_factor"] is not None:  # the halving run: 0.5 ** (number of halvings)
            table[name]["final_rate_factor"] = r["rate_factor"]
    curves = {
        name: {k: r[k] for k in ("val_accuracy", "val_loss", "train_loss")}
        for name, r in runs.items()
    }
    reached = sum(table[n]["epochs_to_threshold"] is not None for n in config.optimizers)
    metrics: dict[str, Any] = {
        "table": table,
        "curves": curves,
        "optimizers_reaching": reached,
        "train_time_s": sum(r["time_s"] for r in runs.values()),
    }
    bars = [
        at_least(
            f"optimizers (of {len(config.optimizers)}) reaching {config.threshold:.0%} val "
            f"accuracy within {config.num_epochs} epochs",
            reached,
            config.min_reaching,
            paper="-",
        )
    ]
    never = float("inf")
    sgd_epochs = table.get("sgd", {}).get("epochs_to_threshold")
    sgd_e = never if sgd_epochs is None else float(sgd_epochs)
    sgd_text = f"never in {config.num_epochs}" if sgd_e == never else f"{sgd_e:g}"
    for name in FAST_METHODS:
        if name in table and "sgd" in table:
            e = table[name]["epochs_to_threshold"]
            e = never if e is None else float(e)
            # Both never reaching is no evidence of being faster: it fails.
            bars.append(
                Bar(
                    f"{name}: epochs to {config.threshold:.0%} (<= SGD's)",
                    e,
                    f"<= SGD's ({sgd_text})",
                    bool(e <= sgd_e and e < never),
                    "Kingma & Ba 2015 Fig. 2: faster than SGD",
                )
            )
    metrics["bars"] = bars
    return metrics
