"""Random search against grid search at the same budget when one of two hyperparameters matters
(Bergstra & Bengio 2012, Figure 1), with each search's 16 trials trained at once by `vmap`.

Run:    python run.py hyperparameter_search --scale quick
Expect: quick on a 2-core CPU: about 17 s; over 50 paired searches the best validation accuracy
        of random search is 0.21 points above the grid's (standard error 0.12; win rate 0.56;
        test accuracy of the chosen trials +0.43 points); sweep_speedup, the vmapped sweep over
        16 sequential jitted runs, about 2.5-3x (reported, not a bar: see BENCHMARKS.md).

The problem: a one-hidden-layer tanh MLP (16 units) on the 8x8 digits, trained for a fixed 10
epochs by plain SGD, with two hyperparameters over the ranges of the paper's Table 1 (neural
networks): the learning rate, log-uniform on [0.001, 10], which matters a great deal (too small:
still underfit when training stops; too large: diverges or saturates at chance), and the L2
weight penalty, log-uniform on [3.1e-7, 3.1e-5], which at these values hardly changes anything
(a low effective dimension: 1 of 2). With 16 trials a 4x4 grid (per axis np.linspace of the log
range, endpoints included, what np.logspace gives a practitioner) tries 4 distinct learning rates,
16 random points try 16. A search picks the trial with the best validation accuracy (ties: lower
validation cross-entropy); we report its validation and test accuracy.

Where the grid's 4 learning rates fall relative to the unknown optimum decides a fixed grid's
result, so each search s moves the search box by U(-1/2, 1/2) grid spacings per axis (the same
box for both methods); the paper's exact box is run too and reported ("fixed_box_*"). Grid and
random trial i of one search share initial weights and data order (common random numbers), and
the difference is paired over searches. On this problem the learning rate's good plateau is
about a decade wide and validation accuracy on 360 images has a standard error of about 0.9
points, so the advantage is a fraction of a point: the bar needs many searches to be resolved,
and the standard error of the mean difference is reported next to it.

Speed: one search = 16 models in one `dl.train.sweep.jit_sweep` call (one compilation, one
dispatch), all on the search's one data order, so the first layer of the 16 models is one matmul.
The reported `sweep_speedup` compares it with the strongest sequential baseline: one model's
training as one jitted `lax.scan` (compiled once), called 16 times. The gain levels off near
2.5-3x however many models are stacked (`benchmarks/sweep_vmap.py --scaling`): inside one jitted
scan little per-step overhead is left to share, XLA:CPU compiles the elementwise work on the
stacked parameters to scalar (not SIMD) loops, so it costs 16 times one model's, and it runs the
head's per-model matmuls as a loop over models (profile in BENCHMARKS.md; the benchmark also
measures other sizes and the engine's per-step loop). A speed figure depends on the machine
and its load, so it is no bar of this experiment: the goal (>= 4x over 16 sequential runs, on a
GPU) is `benchmarks/sweep_vmap.py`'s, in BENCHMARKS.md.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dl import data
from dl.nn.mlp import MLP
from dl.ops.activations import ACTIVATIONS
from dl.ops.losses import cross_entropy
from dl.ops.regularizers import l2_penalty
from dl.optim.optimizers import sgd
from dl.report import Bar
from dl.train import sweep
from dl.train.loop import history_rows, write_history
from experiments._fields import DATA_DIR, SEED, Choice, Float, Int, Tuple, Where

PAPER = {
    "citation": "Bergstra & Bengio 2012, Random search for hyper-parameter optimization, JMLR "
    "13:281-305 (Figure 1; Table 1 ranges)",
    "claim": "When only a few hyperparameters matter (low effective dimensionality), random "
    "search finds better configurations than grid search with the same number of "
    "trials, because a grid tests few distinct values of the important ones.",
    "published": "qualitative (Figure 1): a 9-trial grid tests 3 values of the important "
    "parameter, random search 9; random search matched or beat grid search of "
    "the same budget on neural networks (Section 4)",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "mean best validation accuracy over 50 paired searches: random > grid "
        "(16 trials each); the sweep's speed is a benchmark's goal (BENCHMARKS.md), not a bar",
        "full": "as quick, over 200 paired searches",
    },
}

AXES = ("learning_rate", "l2")
# metrics.jsonl's budget: rows are about 300 bytes, so about 1 MB. Every trial's curve of every
# search would be 35,200 rows (10 MB) at quick; the history keeps every trial's curve of a few
# evenly spaced searches (`history_plan`), and results.json every search's outcome.
HISTORY_MAX_ROWS = 3000


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # search s: points, box shift, data order and init from (seed, s)
    c.data_dir = ""  # unused: digits ship with scikit-learn
    c.hidden = (16,)  # one hidden layer, small: stacking models pays only for small ones
    c.activation = "tanh"  # the paper's networks use sigmoid/tanh hidden units
    c.batch_size = 16  # small minibatches (the paper: 20 or 100)
    c.num_epochs = {"smoke": 1, "quick": 10, "full": 10}[scale]  # fixed budget per trial (full
    # is the same problem, searched more often)
    c.trials = 16  # per search; the grid is sqrt(trials) values per axis
    c.num_searches = {"smoke": 2, "quick": 50, "full": 200}[scale]  # paired repetitions; the
    # effect is a fraction of a point, so 10 are too few to see it
    c.log10_learning_rate = (-3.0, 1.0)  # Table 1: learning rate log-uniform on [0.001, 10]
    c.log10_l2 = (math.log10(3.1e-7), math.log10(3.1e-5))  # Table 1: L2 penalty range
    c.timing_repeats = {"smoke": 0, "quick": 7, "full": 15}[scale]  # interleaved sweep vs
    # sequential timings (median); 0 skips timing (smoke: compile time)
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "seed": SEED,
    "data_dir": DATA_DIR,
    "hidden": Tuple(Int(lo=1)),
    "activation": Choice(ACTIVATIONS),
    "batch_size": Int(lo=1),
    "num_epochs": Int(lo=1),
    "trials": Where(Int(lo=1), lambda n: math.isqrt(n) ** 2 == n, "a perfect square"),
    "num_searches": Int(lo=1),
    "log10_learning_rate": Tuple(Float(-10.0, 3.0), min_len=2, max_len=2, increasing=True),
    "log10_l2": Tuple(Float(-12.0, 0.0), min_len=2, max_len=2, increasing=True),
    "timing_repeats": Int(lo=0),
}


def search_box(config, search: int, shifted: bool) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), each [2] log10 (learning rate, L2): the paper's box, or (shifted) that box moved
    by U(-1/2, 1/2) grid spacings per axis, drawn per search and shared by both methods."""
    lo = np.array([config.log10_learning_rate[0], config.log10_l2[0]])
    hi = np.array([config.log10_learning_rate[1], config.log10_l2[1]])
    if shifted:
        spacing = (hi - lo) / (grid_size(config) - 1)
        lo, hi = (
            x + (np.random.default_rng([config.seed, search, 1]).random(2) - 0.5) * spacing
            for x in (lo, hi)
        )
    return lo, hi


def grid_size(config) -> int:
    k = math.isqrt(config.trials)
    if k * k != config.trials:
        raise ValueError(f"trials must be a square for the grid, got {config.trials}")
    return k


def grid_points(config, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[trials, 2] log10 points of the grid: per axis np.linspace(lo, hi, k), endpoints included
    (what np.logspace gives a practitioner); learning rate major."""
    k = grid_size(config)
    axes = [np.linspace(lo[i], hi[i], k) for i in range(2)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)


def random_points(config, search: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[trials, 2] log10 points uniform in the box (log-uniform values); the same uniform draws
    for either box of one search."""
    u = np.random.default_rng([config.seed, search]).random((config.trials, 2))
    return lo + (hi - lo) * u


def to_hparams(log10_points: np.ndarray) -> dict[str, jax.Array]:
    """{"learning_rate": [n], "l2": [n]} float32 values from [n, 2] log10 points."""
    values = (10.0**log10_points).astype(np.float32)
    return {name: jnp.asarray(values[:, i]) for i, name in enumerate(AXES)}


def build(model: MLP, input_dim: int):
    """The sweep's three factories: init, loss (cross-entropy + l2/2 ||W||^2, weights only) and
    SGD, with the hyperparameters as traced scalars."""

    def init_fn(key, hparams):
        del hparams
        return model.init(key, jnp.zeros((1, input_dim), jnp.float32))["params"]

    def make_loss(hparams):
        def loss_fn(params, extra, batch, rng):
            del rng
            logits = model.apply({"params": params}, batch["x"])
            data_loss = cross_entropy(logits=logits, targets=batch["y"], mask=batch["mask"])
            return data_loss + hparams["l2"] * l2_penalty(params), ({"data_loss": data_loss}, extra)

        return loss_fn

    def make_tx(hparams):
        return sgd(hparams["learning_rate"])

    return init_fn, make_loss, make_tx


def evaluator(model: MLP):
    """Jitted `(params [n, ...], x [N, d], y [N]) -> (accuracy [n], cross-entropy [n])`."""

    @jax.jit
    def evaluate(params, x, y):
        logits = jax.vmap(lambda p: model.apply({"params": p}, x))(params)  # [n, N, K]
        acc = jnp.mean((jnp.argmax(logits, -1) == y[None]).astype(jnp.float32), axis=1)
        ce = jax.vmap(lambda z: cross_entropy(logits=z, targets=y))(logits)
        return acc, ce

    return evaluate


def pick_best(val_acc: np.ndarray, val_ce: np.ndarray) -> int:
    """Index of the best trial: highest validation accuracy, ties broken by lower (finite)
    validation cross-entropy."""
    ce = np.where(np.isfinite(val_ce), val_ce, np.inf)
    return int(np.lexsort((ce, -val_acc))[0])


def search_inputs(config, train, steps: int, search: int):
    """Search s's shared data schedule ([steps, B, ...]) and its [trials] PRNG keys."""
    loader = data.Loader(train, config.batch_size, seed=config.seed * 10_000 + search)
    batches = jax.device_put(sweep.stack_batches(loader.batch, steps))
    base = jax.random.fold_in(jax.random.PRNGKey(config.seed), search)
    return batches, jax.random.split(base, config.trials)


SEARCHES = ("grid", "random", "fixed_box/grid", "fixed_box/random")  # (box, method)


def trial_steps(config, train) -> int:
    """SGD steps of one trial: num_epochs epochs of train."""
    return config.num_epochs * data.Loader(train, config.batch_size, seed=0).steps_per_epoch


def history_plan(config, steps: int) -> tuple[int, list[int]]:
    """(every, searches) for metrics.jsonl: each trial's sweep metrics at step 1 and at the end
    of every epoch (a stride of `every` steps), for every method of the searches listed: search 0
    and others evenly spaced, as many as fit in HISTORY_MAX_ROWS rows (at least one search)."""
    every = steps // config.num_epochs
    per_trial = len(history_rows({"loss": np.zeros(steps)}, every=every))
    per_search = len(SEARCHES) * config.trials * per_trial
    stride = math.ceil(config.num_searches / max(1, HISTORY_MAX_ROWS // per_search))
    return every, list(range(0, config.num_searches, stride))


def run_searches(config, workdir: str) -> dict:
    splits = data.load("digits")
    train, val, test = splits["train"], splits["val"], splits["test"]
    model = MLP(hidden=tuple(config.hidden), out=10, activation=config.activation)
    init_fn, make_loss, make_tx = build(model, train.x.shape[1])
    evaluate = evaluator(model)
    steps = trial_steps(config, train)
    every, history_searches = history_plan(config, steps)
    batches, keys = search_inputs(config, train, steps, 0)
    # Compiled once here, for every search (same shapes, new values).
    train_all, sweep_compile_s = sweep.compile_timed(
        sweep.jit_sweep(init_fn=init_fn, make_loss=make_loss, make_tx=make_tx),
        keys,
        to_hparams(np.zeros((config.trials, 2))),
        batches,
    )
    records = {m: {"points": [], "val_acc": [], "val_ce": [], "test_acc": []} for m in SEARCHES}
    for s in range(config.num_searches):
        if s:
            batches, keys = search_inputs(config, train, steps, s)
        for name in SEARCHES:
            lo, hi = search_box(config, s, shifted=not name.startswith("fixed_box"))
            points = (
                grid_points(config, lo, hi)
                if name.endswith("grid")
                else random_points(config, s, lo, hi)
            )
            hparams = to_hparams(points)
            result = train_all(keys, hparams, batches)
            if s in history_searches:  # one row per epoch (and step 1) per trial
                write_history(
                    workdir,
                    result.metrics,
                    labels={"search": s, "method": name, **hparams},
                    every=every,
                    append=(s, name) != (0, SEARCHES[0]),
                )
            val_acc, val_ce = evaluate(result.params, val.x, val.y)
            test_acc, _ = evaluate(result.params, test.x, test.y)
            for key, value in (
                ("points", points),
                ("val_acc", val_acc),
                ("val_ce", val_ce),
                ("test_acc", test_acc),
            ):
                records[name][key].append(np.asarray(value))
        print(
            f"  search {s}: best val "
            + ", ".join(f"{m} {records[m]['val_acc'][-1].max():.4f}" for m in SEARCHES),
            flush=True,
        )
    records = {m: {k: np.stack(v) for k, v in rec.items()} for m, rec in records.items()}

    timing = {"sweep_compile_s": sweep_compile_s}
    if config.timing_repeats:
        # Speed, on the last search's random configurations: the sweep against 16 sequential runs.
        hparams = to_hparams(records["random"]["points"][-1])
        one, one_compile_s = sweep.compile_timed(
            sweep.jit_train_one(init_fn=init_fn, make_loss=make_loss, make_tx=make_tx),
            keys[0],
            sweep.model_slice(hparams, 0),
            batches,
        )
        timing.update(
            sweep.time_against_sequential(
                train_all, one, keys, hparams, batches, repeats=config.timing_repeats
            ),
            sequential_compile_s=one_compile_s,
        )
    return {"records": records, "timing": timing, "steps": steps}


def summarize(records: dict) -> dict:
    """Per search and method: the chosen trial's validation and test accuracy and learning rate."""
    out = {}
    for method, rec in records.items():
        best = [pick_best(a, c) for a, c in zip(rec["val_acc"], rec["val_ce"])]
        rows = np.arange(len(best))
        out[method] = {
            "best_val": rec["val_acc"][rows, best],
            "best_test": rec["test_acc"][rows, best],
            "best_log10_lr": rec["points"][rows, best, 0],
        }
    return out


def compare(summary: dict, grid: str, rand: str) -> dict[str, float]:
    """Paired over searches (same initial weights and data order): means, the standard error of
    the mean difference, and the fraction of searches random wins (ties count one half)."""
    g, r = summary[grid]["best_val"], summary[rand]["best_val"]
    wins = np.where(r > g, 1.0, np.where(r == g, 0.5, 0.0))
    se = float(np.std(r - g, ddof=1) / np.sqrt(len(g))) if len(g) > 1 else float("nan")
    test_diff = summary[rand]["best_test"] - summary[grid]["best_test"]
    return {
        "mean_best_val_grid": float(g.mean()),
        "mean_best_val_random": float(r.mean()),
        "mean_best_val_random_minus_grid": float(r.mean() - g.mean()),
        "mean_best_val_random_minus_grid_se": se,
        "mean_test_of_best_random_minus_grid": float(test_diff.mean()),
        "random_win_rate": float(wins.mean()),
        "mean_test_of_best_grid": float(summary[grid]["best_test"].mean()),
        "mean_test_of_best_random": float(summary[rand]["best_test"].mean()),
    }


def nuisance_spread(records: dict, k: int) -> dict[str, float]:
    """From the grid ([searches, k lr, k l2] validation accuracies): the mean spread (max - min)
    across learning rates at fixed L2, and across L2 values at fixed learning rate."""
    acc = records["grid"]["val_acc"].reshape(-1, k, k)
    return {
        "val_acc_range_across_lr": float(np.ptp(acc, axis=1).mean()),
        "val_acc_range_across_l2": float(np.ptp(acc, axis=2).mean()),
    }


def plot_trials(config, records: dict, path: str) -> None:
    """The paper's Figure 1 on our problem: the first search's trials, colored by validation
    accuracy, and every trial's accuracy against each hyperparameter."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    lo, hi = search_box(config, 0, shifted=True)
    for ax, method in zip(axes[:2], ("grid", "random")):
        pts, acc = records[method]["points"][0], records[method]["val_acc"][0]
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=acc, cmap="viridis", vmin=0, vmax=1, s=50)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_xlabel("log10 learning rate (matters)")
        ax.set_ylabel("log10 L2 (hardly matters)")
        ax.set_title(f"{method}: {len(np.unique(pts[:, 0]))} distinct learning rates")
    fig.colorbar(sc, ax=axes[1], label="validation accuracy")
    for ax, axis, name in ((axes[2], 0, "log10 learning rate"), (axes[3], 1, "log10 L2")):
        for method, color in (("grid", "tab:blue"), ("random", "tab:orange")):
            rec = records[method]
            ax.scatter(
                rec["points"][..., axis].ravel(),
                rec["val_acc"].ravel(),
                s=6,
                alpha=0.5,
                c=color,
                label=method,
            )
        ax.set_xlabel(name)
        ax.set_ylabel("validation accuracy")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_best(summary: dict, path: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, style in zip(SEARCHES, ("o-", "s-", "o:", "s:")):
        ax.plot(summary[name]["best_val"], style, label=name, alpha=0.8)
    ax.set_xlabel("search (seed)")
    ax.set_ylabel("best validation accuracy of 16 trials")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    res = run_searches(config, workdir)
    records, timing = res["records"], res["timing"]
    summary = summarize(records)
    plot_trials(config, records, f"{workdir}/trials.png")
    plot_best(summary, f"{workdir}/best_per_search.png")
    main = compare(summary, "grid", "random")
    fixed = compare(summary, "fixed_box/grid", "fixed_box/random")
    metrics = {
        **main,
        **{f"fixed_box_{k}": v for k, v in fixed.items()},
        "distinct_learning_rates_grid": len(np.unique(records["grid"]["points"][0][:, 0])),
        "distinct_learning_rates_random": len(np.unique(records["random"]["points"][0][:, 0])),
        **nuisance_spread(records, grid_size(config)),
        # Diverged or stuck at chance (10 classes): the price of a too-large learning rate.
        "failed_trial_fraction": float(
            np.mean(np.concatenate([records[m]["val_acc"] for m in SEARCHES]) < 0.2)
        ),
        "steps_per_trial": res["steps"],
        **{
            ("sweep_speedup" if k == "speedup" else k): v
            for k, v in timing.items()
            if not k.endswith("runs_s")
        },
        "per_search": {f"{m}/{k}": v for m in SEARCHES for k, v in summary[m].items()},
    }
    diff = main["mean_best_val_random_minus_grid"]
    metrics["bars"] = [
        Bar(
            f"mean best val accuracy over {config.num_searches} searches: random - grid "
            f"({config.trials} trials each)",
            diff,
            "> 0",
            diff > 0,
            "Bergstra & Bengio 2012: random >= grid at equal budget",
        )
    ]
    for k, v in metrics.items():
        if k not in ("bars", "per_search"):
            print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    return metrics
