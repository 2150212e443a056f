"""Regularization on 10% of the digits (107 training images): none vs L2 vs L1 vs dropout vs
early stopping, with train/validation curves and the test accuracy of each.

Run:    python run.py regularization --scale quick
Expect: quick on a 2-core CPU: about 30 s; mean test accuracy over 5 seeds: none 90.4%, L2
        90.8%, L1 90.6%, dropout 90.9%, early stopping 90.9%; L1 leaves 35% of the weights below
        1e-3 (none: 0.6%). The gains are small (0.1-0.5 points, the size of the seed spread).

Setup. A wide one-hidden-layer ReLU MLP (512 units) is trained on
`data.load('digits', train_fraction=0.1)` (107 images; val and test are the usual 360 each) with
minibatch heavy-ball SGD for 300 epochs, long enough that the unregularized net fits the
training set exactly (accuracy 100%, cross-entropy ~1e-3): overfitting is real (train 100% vs
test ~90%). Arms:

* none: the plain net, final-epoch parameters.
* L2: `+ lambda/2 ||W||^2` over kernels (`dl.ops.regularizers.l2_penalty`), final-epoch params.
* L1: `+ lambda ||W||_1` (`l1_penalty`), final-epoch params. We also report the fraction of
  near-zero kernel entries (|w| < `zero_threshold`) against the plain net's.
* dropout: inverted dropout on the hidden units (Srivastava et al. 2014), final-epoch params.
* early stopping: the plain net trained by the engine (`dl.train.supervised.fit`) with
  `patience`; it reports `summary["best_params"]`, the parameters of the best validation
  accuracy. Only this arm uses validation-selected parameters, so it is its own regularizer.

Each strength is picked from a small grid (`l2_grid`, `l1_grid`, `dropout_grid`) by the mean
final validation accuracy over the seeds (ties: the weaker strength); the test set is only read
for the chosen values. All arms of a seed share the initial parameters and the minibatch order
(the engine's `Loader` order), so differences are paired. Every grid point of every seed is
trained at once: `vmap` over arms of a `lax.scan` of the engine's own `train_step`; the penalty
strengths are traced arguments, so one compiled step serves all of them (dropout rates are static
in Flax, so each rate is its own vmapped run).

Why SGD and not Adam: with SGD the L2 penalty is exactly weight decay; under Adam it is rescaled
per weight (Loshchilov & Hutter 2019). In a pilot with Adam (lr 1e-3, 3 seeds) the val-picked L2
and L1 nets were 0.3-0.6 points BELOW the plain net on test, while dropout and early stopping
were level with it. Srivastava et al. (2014, sec. 7.4) likewise report no gain from dropout on
MNIST subsets of 100 and 500 examples: at this size the effects are within seed noise.
"""

from __future__ import annotations

import functools
import operator
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dl import data, optim
from dl.nn.mlp import MLP
from dl.objectives.classification import classifier_eval, classifier_loss
from dl.ops import regularizers
from dl.ops.activations import ACTIVATIONS
from dl.optim.optimizers import OPTIMIZERS
from dl.report import Bar
from dl.train.loop import write_history
from dl.train.step import train_step
from dl.train.supervised import fit, init_state
from experiments._fields import DATA_DIR, SEED, Bool, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Weight decay (Hinton 1987; Krogh & Hertz 1992); L1/lasso (Tibshirani 1996); "
    "dropout (Srivastava et al. 2014); early stopping (Prechelt 1998)",
    "claim": "On a small training set a large net overfits; each regularizer, with its strength "
    "picked on validation data, generalizes at least as well as no regularization.",
    "published": "no number on this split; the claim is the ordering regularized >= plain",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "mean test accuracy over seeds: each regularizer >= none",
        "full": "mean test accuracy over seeds: each regularizer >= none",
    },
}

ARMS = ("none", "l2", "l1", "dropout", "early_stopping")


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # first seed; the run uses seed, seed + 1, ... (num_seeds of them)
    c.num_seeds = {"smoke": 1, "quick": 5, "full": 20}[scale]  # test accuracy is averaged over
    # seeds: one test image is 0.28%, so one seed is too noisy
    c.data_dir = ""  # unused: digits ship with scikit-learn
    c.train_fraction = 0.1  # 107 of the 1077 training images (stratified, fixed)
    c.hidden = (512,)  # wide relative to 107 examples, so the plain net memorizes
    c.activation = "relu"  # hidden units
    c.optimizer = "momentum"  # heavy ball, beta 0.9 (dl.optim): with SGD, the L2 penalty is
    # exactly weight decay (not so under Adam's rescaling)
    c.learning_rate = 0.05  # constant, shared by every arm
    c.batch_size = 32  # 4 steps per epoch on 107 images
    # Epochs per run; at quick's 300 the plain net ends at training accuracy 100%, CE ~1.5e-3.
    c.num_epochs = {"smoke": 6, "quick": 300, "full": 500}[scale]
    c.eval_every_epochs = {"smoke": 2, "quick": 5, "full": 5}[scale]  # curve resolution
    # Strength grids, increasing (ties go to the weaker); smoke keeps one value of each.
    c.l2_grid = (1e-4, 1e-3, 1e-2) if scale != "smoke" else (1e-3,)  # lambda, lambda/2 ||W||^2
    c.l1_grid = (1e-5, 1e-4, 1e-3) if scale != "smoke" else (1e-4,)  # lambda, lambda ||W||_1
    c.dropout_grid = (0.2, 0.5) if scale != "smoke" else (0.5,)  # hidden-unit drop rates; 0.5
    # is Srivastava et al.'s default
    c.patience = 20  # early stopping: epochs without a better val accuracy
    c.zero_threshold = 1e-3  # |w| below this counts as a zero weight (L1 sparsity)
    c.progress = False  # the early-stopping runs are short; no bar
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "seed": SEED,
    "num_seeds": Int(lo=1),
    "data_dir": DATA_DIR,
    "train_fraction": Float(0.0, 1.0, lo_open=True),
    "hidden": Tuple(Int(lo=1)),
    "activation": Choice(ACTIVATIONS),
    "optimizer": Choice(OPTIMIZERS),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "batch_size": Int(lo=1),
    "num_epochs": Int(lo=1),
    "eval_every_epochs": Int(lo=1),
    "l2_grid": Tuple(Float(lo=0.0, lo_open=True), increasing=True),
    "l1_grid": Tuple(Float(lo=0.0, lo_open=True), increasing=True),
    "dropout_grid": Tuple(Float(0.0, 1.0, lo_open=True, hi_open=True), increasing=True),
    "patience": Int(lo=1),
    "zero_threshold": Float(lo=0.0),
    "progress": Bool(),
}


def penalized_loss(model) -> Any:
    """`classifier_loss(model)` plus `l2/2 ||W||^2 + l1 ||W||_1` over kernels, with `l2` and `l1`
    as (traceable) keyword arguments so that `vmap` can give each arm its own strength."""
    data_loss = classifier_loss(model)

    def fn(params, extra, batch, rng, *, l2, l1):
        loss, aux = data_loss(params, extra, batch, rng)
        penalty = l2 * regularizers.l2_penalty(params) + l1 * regularizers.l1_penalty(params)
        return loss + penalty, aux

    return fn


def loader_indices(
    num_examples: int, batch_size: int, *, seed: int, num_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """The example indices and masks of `data.Loader(.., batch_size, seed=seed)` for steps
    0..num_steps-1: the same batches the engine would train on, as gatherable arrays.

    Returns: (indices [num_steps, batch_size] int32, mask [num_steps, batch_size] float32).
    """
    ids = np.arange(num_examples)
    loader = data.Loader(data.ArrayData(ids, ids), batch_size, seed=seed)
    batches = [loader.batch(s) for s in range(num_steps)]
    return (
        np.stack([b["x"] for b in batches]).astype(np.int32),
        np.stack([b["mask"] for b in batches]),
    )


def _means(sums: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return {k: v / sums["count"] for k, v in sums.items() if k != "count"}


def make_sweep(model) -> Any:
    """Returns jitted `sweep(states, indices, masks, l2, l1, train, val) -> (states, curves)`.

    Vmapped over arms (leading axis A of `states`, `indices` [A, C, steps_per_chunk, B], `masks`
    likewise, `l2` [A], `l1` [A]); `train`/`val` are whole splits {'x', 'y', 'mask'} shared by all
    arms. Each arm runs C chunks of `steps_per_chunk` engine `train_step`s, and after each chunk
    evaluates loss and accuracy on all of train and val. curves: {train,val}_{loss,accuracy}
    [A, C].
    """
    loss_fn = penalized_loss(model)
    evaluate = classifier_eval(model)

    def one(state, indices, masks, l2, l1, train, val):
        step_loss = functools.partial(loss_fn, l2=l2, l1=l1)

        def step(s, batch_ids):
            i, m = batch_ids
            batch = {"x": train["x"][i], "y": train["y"][i], "mask": m}
            s, _ = train_step(s, batch, loss_fn=step_loss)
            return s, None

        def chunk(s, chunk_ids):
            s, _ = jax.lax.scan(step, s, chunk_ids)
            tr = _means(evaluate(s.params, s.extra, train))
            va = _means(evaluate(s.params, s.extra, val))
            return s, {
                "train_loss": tr["loss"],
                "train_accuracy": tr["accuracy"],
                "val_loss": va["loss"],
                "val_accuracy": va["accuracy"],
            }

        return jax.lax.scan(chunk, state, (indices, masks))

    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, 0, None, None)))


def zero_fraction(params: Any, threshold: float) -> float:
    """Fraction of kernel entries (the penalized weights) with |w| < threshold."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    w = np.concatenate(
        [np.abs(np.asarray(leaf)).ravel() for path, leaf in flat if regularizers.is_weight(path)]
    )
    return float(np.mean(w < threshold))


def _split(d: data.ArrayData) -> dict[str, jnp.ndarray]:
    return {"x": jnp.asarray(d.x), "y": jnp.asarray(d.y), "mask": jnp.ones(len(d.y), jnp.float32)}


def _evaluate_split(evaluate, params, extra, *, split):
    return _means(evaluate(params, extra, split))


def _stack(trees):
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _grid_runs(config, splits, seeds, tx) -> list[dict[str, Any]]:
    """Trains every (arm, strength, seed) except early stopping; one vmapped call per model."""
    train, val, test = (_split(splits[k]) for k in ("train", "val", "test"))
    n, bs = len(splits["train"].y), config.batch_size
    steps_per_epoch = -(-n // bs)
    chunk = config.eval_every_epochs * steps_per_epoch
    num_chunks = config.num_epochs // config.eval_every_epochs
    order = {s: loader_indices(n, bs, seed=s, num_steps=num_chunks * chunk) for s in seeds}
    groups = {
        0.0: [("none", 0.0, 0.0, 0.0)]
        + [("l2", v, v, 0.0) for v in config.l2_grid]
        + [("l1", v, 0.0, v) for v in config.l1_grid]
    }
    for rate in config.dropout_grid:
        groups[rate] = [("dropout", rate, 0.0, 0.0)]
    runs = []
    for rate, arms in groups.items():
        model = MLP(hidden=tuple(config.hidden), out=10, activation=config.activation, dropout=rate)
        init = {s: init_state(model, tx, splits["train"].x[:bs], seed=s) for s in seeds}
        cells = [(arm, seed) for arm in arms for seed in seeds]
        states = _stack([init[s] for _, s in cells])
        indices = np.stack([order[s][0] for _, s in cells]).reshape(
            len(cells), num_chunks, chunk, bs
        )
        masks = np.stack([order[s][1] for _, s in cells]).reshape(len(cells), num_chunks, chunk, bs)
        l2 = jnp.asarray([a[2] for a, _ in cells], jnp.float32)
        l1 = jnp.asarray([a[3] for a, _ in cells], jnp.float32)
        sweep = make_sweep(model)
        states, curves = sweep(states, jnp.asarray(indices), jnp.asarray(masks), l2, l1, train, val)
        tests = jax.vmap(functools.partial(_evaluate_split, classifier_eval(model), split=test))(
            states.params, states.extra
        )
        curves, tests = jax.device_get((curves, tests))
        for i, ((family, value, _, _), seed) in enumerate(cells):
            params = jax.tree.map(operator.itemgetter(i), states.params)
            runs.append(
                {
                    "arm": family,
                    "strength": value,
                    "seed": seed,
                    "epochs": (np.arange(num_chunks) + 1) * config.eval_every_epochs,
                    **{k: v[i] for k, v in curves.items()},
                    "test_accuracy": float(tests["accuracy"][i]),
                    "zero_fraction": zero_fraction(params, config.zero_threshold),
                }
            )
    return runs


def _early_stopping_runs(config, splits, seeds, tx, workdir) -> list[dict[str, Any]]:
    """The plain net through the engine with `patience`; reports its best-validation params."""
    bs = config.batch_size
    model = MLP(hidden=tuple(config.hidden), out=10, activation=config.activation)
    runs = []
    for seed in seeds:
        loader = data.Loader(splits["train"], bs, seed=seed)
        state = init_state(model, tx, splits["train"].x[:bs], seed=seed)
        sub = f"{workdir}/early_stopping_seed{seed}"
        os.makedirs(sub, exist_ok=True)
        _, history, summary = fit(
            state,
            loss_fn=classifier_loss(model),
            eval_fn=classifier_eval(model),
            train_loader=loader,
            val_batches=lambda: data.eval_batches(splits["val"], 360),
            num_steps=config.num_epochs * loader.steps_per_epoch,
            workdir=sub,
            eval_every=loader.steps_per_epoch,
            patience=config.patience,
            log_every=100,
            progress=config.progress,
            desc=f"early stopping seed {seed}",
        )
        test = summary["evaluate"](summary["best_params"], data.eval_batches(splits["test"], 360))
        train = summary["evaluate"](summary["best_params"], data.eval_batches(splits["train"], 360))
        val_rows = [r for r in history if "val_accuracy" in r]
        spe = loader.steps_per_epoch
        # Training curves from the engine's per-step rows (minibatch means over each epoch).
        step_rows = [r for r in history if "data_loss" in r]
        epoch_of = np.array([(r["step"] - 1) // spe for r in step_rows])
        runs.append(
            {
                "arm": "early_stopping",
                "strength": float(config.patience),
                "seed": seed,
                "epochs": np.array([r["step"] / spe for r in val_rows]),
                "train_loss": np.array(
                    [
                        np.mean([r["data_loss"] for r, e in zip(step_rows, epoch_of) if e == k])
                        for k in range(len(val_rows))
                    ]
                ),
                "train_accuracy": np.array(
                    [
                        np.mean([r["accuracy"] for r, e in zip(step_rows, epoch_of) if e == k])
                        for k in range(len(val_rows))
                    ]
                ),
                "val_accuracy": np.array([r["val_accuracy"] for r in val_rows]),
                "val_loss": np.array([r["val_loss"] for r in val_rows]),
                "best_epoch": summary["best_step"] / spe,
                "stopped_epoch": val_rows[-1]["step"] / spe,
                "train_accuracy_final": train["accuracy"],
                "train_loss_final": train["loss"],
                "test_accuracy": test["accuracy"],
                "zero_fraction": zero_fraction(summary["best_params"], config.zero_threshold),
            }
        )
    return runs


def select(runs: list[dict[str, Any]], arm: str) -> tuple[float, list[dict[str, Any]]]:
    """The strength of `arm` with the best mean final validation accuracy over seeds (the first,
    i.e. weakest, on ties: grids are listed in increasing strength); returns it and its runs."""
    strengths = list(dict.fromkeys(r["strength"] for r in runs if r["arm"] == arm))
    mean_val = [
        np.mean([r["val_accuracy"][-1] for r in runs if r["arm"] == arm and r["strength"] == s])
        for s in strengths
    ]
    best = strengths[int(np.argmax(mean_val))]
    return best, [r for r in runs if r["arm"] == arm and r["strength"] == best]


def plot_curves(chosen: dict[str, list[dict[str, Any]]], path: str) -> None:
    """Accuracy (top) and loss (bottom) on train and val per arm; thin lines are seeds."""
    fig, axes = plt.subplots(
        2, len(chosen), figsize=(3.2 * len(chosen), 6), squeeze=False, sharey="row"
    )
    for col, (arm, runs) in enumerate(chosen.items()):
        for row, metric in enumerate(("accuracy", "loss")):
            ax = axes[row, col]
            for split, color in (("train", "C0"), ("val", "C1")):
                for i, r in enumerate(runs):
                    if f"{split}_{metric}" in r:
                        ax.plot(
                            r["epochs"],
                            r[f"{split}_{metric}"],
                            color=color,
                            lw=0.8,
                            alpha=0.7,
                            label=split if i == 0 else None,
                        )
            if arm == "early_stopping":
                for r in runs:
                    ax.axvline(r["best_epoch"], color="gray", lw=0.6, ls=":")
            if metric == "loss":
                ax.set_yscale("log")
                ax.set_xlabel("epoch")
            else:
                ax.set_title(arm, fontsize=9)
                ax.set_ylim(0.7, 1.01)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("accuracy")
    axes[1, 0].set_ylabel("cross-entropy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    splits = data.load("digits", train_fraction=config.train_fraction)
    seeds = [config.seed + i for i in range(config.num_seeds)]
    tx = optim.get_optimizer(config.optimizer, learning_rate=config.learning_rate)
    start = time.perf_counter()
    runs = _grid_runs(config, splits, seeds, tx)
    grid_time = time.perf_counter() - start
    for i, r in enumerate(runs):  # curves at step = epoch; early stopping writes its own (subdirs)
        curves = {k: r[k] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")}
        labels = {k: r[k] for k in ("arm", "strength", "seed")}
        write_history(workdir, curves, labels=labels, steps=r["epochs"], append=i > 0)
    start = time.perf_counter()
    early = _early_stopping_runs(config, splits, seeds, tx, workdir)
    early_time = time.perf_counter() - start

    chosen: dict[str, list[dict[str, Any]]] = {"none": [r for r in runs if r["arm"] == "none"]}
    strength = {"none": 0.0, "early_stopping": float(config.patience)}
    for arm in ("l2", "l1", "dropout"):
        strength[arm], chosen[arm] = select(runs, arm)
    chosen["early_stopping"] = early
    plot_curves(chosen, f"{workdir}/curves.png")

    def final(r, key):
        return float(r[f"{key}_final"]) if f"{key}_final" in r else float(r[key][-1])

    table = []
    for arm, rs in chosen.items():
        table.append(
            {
                "arm": arm,
                "strength": strength[arm],
                "test_accuracy": float(np.mean([r["test_accuracy"] for r in rs])),
                "test_accuracy_per_seed": [r["test_accuracy"] for r in rs],
                "train_accuracy": float(np.mean([final(r, "train_accuracy") for r in rs])),
                "train_loss": float(np.mean([final(r, "train_loss") for r in rs])),
                "val_accuracy": float(np.mean([final(r, "val_accuracy") for r in rs])),
                "zero_fraction": float(np.mean([r["zero_fraction"] for r in rs])),
            }
        )
    rows = {row["arm"]: row for row in table}
    grid = [
        {
            "arm": r["arm"],
            "strength": r["strength"],
            "mean_val_accuracy": float(
                np.mean(
                    [
                        q["val_accuracy"][-1]
                        for q in runs
                        if q["arm"] == r["arm"] and q["strength"] == r["strength"]
                    ]
                )
            ),
        }
        for r in runs
        if r["seed"] == seeds[0]
    ]
    none = rows["none"]["test_accuracy"]
    metrics: dict[str, Any] = {
        "table": table,
        "selection_grid": grid,
        "seeds": seeds,
        "num_train_examples": len(splits["train"].y),
        "none_train_accuracy": rows["none"]["train_accuracy"],
        "none_train_loss": rows["none"]["train_loss"],
        "early_stopping_best_epochs": [r["best_epoch"] for r in early],
        "early_stopping_stopped_epochs": [r["stopped_epoch"] for r in early],
        "grid_time_s": grid_time,
        "early_stopping_time_s": early_time,
    }
    for row in table:
        metrics[f"{row['arm']}_test_accuracy"] = row["test_accuracy"]
    metrics["l1_zero_fraction"] = rows["l1"]["zero_fraction"]
    metrics["none_zero_fraction"] = rows["none"]["zero_fraction"]
    metrics["bars"] = [
        Bar(
            f"{arm} mean test accuracy >= none's ({len(seeds)} seeds)",
            rows[arm]["test_accuracy"],
            f">= {none:.4f}",
            bool(rows[arm]["test_accuracy"] >= none),
            "regularized >= plain (strength picked on val)",
        )
        for arm in ("l2", "l1", "dropout", "early_stopping")
    ]
    for row in table:
        print(
            f"  {row['arm']:>14} (strength {row['strength']:g}): test {row['test_accuracy']:.4f} "
            f"train {row['train_accuracy']:.4f} loss {row['train_loss']:.2e} "
            f"zeros {row['zero_fraction']:.3f}"
        )
    return metrics
