"""Glorot & Bengio (2010): standard vs normalized initialization of a 5-hidden-layer network with
sigmoid, tanh and softsign units on Shapeset-3x2 (their Figures 6-7 and Table 1).

Run:    python run.py glorot_init --scale quick
Expect: quick on a 2-core CPU: about 2 min; tanh back-propagated-gradient variance max/min over
        the 5 layers at init 1.91 normalized vs 91 standard; test error after 144k examples:
        Tanh 79.9%, Tanh-N 68.4%, Softsign 72.1%, Softsign-N 67.8%, both sigmoids at chance,
        88.9% (paper, trained to the end: Tanh 27.15%, Tanh-N 15.60%, Sigmoid 82.61%).

Networks: 1024 inputs -> 5 hidden layers of `width` units -> 9-way softmax, cost the mean
negative log-likelihood, biases 0, kernels either "standard" U[-1/sqrt(n_in), 1/sqrt(n_in)]
(paper eq. 1; `standard_uniform`) or "normalized" U[+-sqrt(6/(n_in+n_out))] (eq. 16;
`glorot_uniform`), trained by plain minibatch SGD. As in the paper the learning rate is chosen
per network on validation data (here from `learning_rates`, all trained at once with `vmap`),
and the reported test error is at the evaluation with the best validation error. Training runs
in chunks of `eval_every` steps (`dl.train.sweep.train_chunked`): a progress bar, a row per
network per evaluation in metrics.jsonl, and checkpoints that `--resume` continues from.

Data: `dl.data.shapeset` (our generator of Shapeset-3x2-like images: one or two of triangle,
parallelogram, ellipse; 9 classes), as a fixed training set rather than the paper's online
stream. Inputs are centred by the training set's mean image: the paper's analysis (Sec. 4.2.1)
assumes symmetric inputs in the linear regime, and with raw [0, 1] pixels (mean 0.5) the first
layer's units start with per-unit offsets that push tanh out of that regime; the ratio bar with
raw inputs is reported too (`grad_ratio_raw_inputs`), and does not hold there.

Per-layer statistics (activations h^i and back-propagated gradients dCost/ds^i of the summed
cost, from `dl.nn.probe.dense_probe`) are measured on `probe_examples` test images at
initialization and after training: histograms in activations_{init,trained}.png and
gradients_{init,trained}.png, variances in the metrics' "table".

Scales: quick uses width 128 (not 1000), 20k training images, batch 32 (not 10, for speed) and
4.5k steps, so its errors are those of barely trained networks; full is the paper's width and
batch size (not run on this machine).
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dl.data.shapeset import CLASSES, shapeset_splits
from dl.nn.mlp import MLP
from dl.nn.probe import dense_probe
from dl.objectives.classification import classifier_loss
from dl.ops.losses import cross_entropy
from dl.optim.optimizers import sgd
from dl.report import (
    Bar,
    at_most,
    plots,
)
from dl.train.sweep import train_chunked
from experiments._fields import DATA_DIR, SEED, Bool, Float, Int, Tuple

PAPER = {
    "citation": "Glorot & Bengio 2010, Understanding the difficulty of training deep "
    "feedforward neural networks (AISTATS), Figs. 6-7 and Table 1",
    "claim": "Normalized initialization keeps the variance of back-propagated gradients about "
    "equal across layers (standard initialization shrinks it toward the input), and "
    "trains deep tanh networks to lower error; sigmoid networks saturate and train worst.",
    "published": "Shapeset-3x2 test error %, 5 hidden layers of 1000: Tanh 27.15, Tanh-N 15.60, "
    "Softsign 16.27, Softsign-N 16.06, Sigmoid 82.61",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "(a) tanh at init: back-prop gradient variance max/min over layers <= 2 "
        "normalized, > 2 standard; (b) Tanh-N test error <= Tanh; (c) both "
        "sigmoid networks have a higher test error than every tanh/softsign one",
        "full": "as quick",
    },
}

ACTIVATIONS = ("sigmoid", "tanh", "softsign")
INITS = ("standard_uniform", "glorot_uniform")
# Table 1's Shapeset column (test error %); the paper trained sigmoid with standard init only.
PAPER_ERROR = {
    ("tanh", "standard_uniform"): 27.15,
    ("tanh", "glorot_uniform"): 15.60,
    ("softsign", "standard_uniform"): 16.27,
    ("softsign", "glorot_uniform"): 16.06,
    ("sigmoid", "standard_uniform"): 82.61,
}


def label(activation: str, init: str) -> str:
    """The paper's names: "Tanh", "Tanh-N" (normalized init), ..."""
    return activation.capitalize() + ("-N" if init == "glorot_uniform" else "")


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # data (splits [seed, 0..2]), initialization, minibatch order
    c.data_dir = ""  # unused: the data is synthetic
    c.depth = 5  # hidden layers, as in the paper's Table 1
    c.width = {"smoke": 32, "quick": 128, "full": 1000}[scale]  # paper: 1000 units per layer
    c.num_train = {"smoke": 900, "quick": 20_000, "full": 200_000}[scale]  # paper: online stream
    c.num_val = {"smoke": 450, "quick": 2_000, "full": 10_000}[scale]  # picks rate and step
    c.num_test = {"smoke": 450, "quick": 4_000, "full": 10_000}[scale]  # quick: error s.e. ~0.7%
    c.batch_size = {"smoke": 32, "quick": 32, "full": 10}[scale]  # paper: 10; 32 runs faster
    c.num_steps = {"smoke": 60, "quick": 4_500, "full": 1_000_000}[scale]  # SGD steps; quick:
    # 144k examples (7 epochs), where Tanh has just left its plateau (see test_error.png)
    c.eval_every = {"smoke": 20, "quick": 500, "full": 20_000}[scale]  # steps between evaluations
    # SGD rates tried for every network; the paper picked each network's rate on validation data.
    # Quick picks 0.3 for standard Tanh and Softsign (both sigmoids, at chance whatever the
    # rate, tie and get the smallest, 0.03); 1.0 was tried too and was worse for each of them
    # (tanh 88.6% validation error vs 78.9% at 0.3, softsign 73.2% vs 70.8%).
    c.learning_rates = {
        "smoke": (0.1,),
        "quick": (0.03, 0.1, 0.3),
        "full": (0.003, 0.01, 0.03, 0.1, 0.3),
    }[scale]
    c.center_inputs = True  # subtract the training mean image (see the module docstring)
    c.checkpoint_every_evals = {"smoke": 0, "quick": 3, "full": 1}[scale]  # for --resume
    c.progress = scale != "smoke"  # progress bar over steps (off in the smoke tests)
    c.probe_examples = {"smoke": 200, "quick": 1_000, "full": 1_000}[scale]  # for the statistics
    c.ratio_bound = 2.0  # bar (a): max/min of per-layer gradient variance
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "seed": SEED,
    "data_dir": DATA_DIR,
    "depth": Int(lo=1),
    "width": Int(lo=1),
    "num_train": Int(lo=1),
    "num_val": Int(lo=1),
    "num_test": Int(lo=1),
    "batch_size": Int(lo=1),
    "num_steps": Int(lo=1),
    "eval_every": Int(lo=1),
    "learning_rates": Tuple(Float(lo=0.0, lo_open=True)),
    "center_inputs": Bool(),
    "checkpoint_every_evals": Int(lo=0),
    "progress": Bool(),
    "probe_examples": Int(lo=1),
    "ratio_bound": Float(lo=1.0),
}


def _error_count(model: MLP, params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Number of misclassified examples, as float32 (non-finite logits count as errors)."""
    logits = model.apply({"params": params}, x)
    ok = jnp.all(jnp.isfinite(logits), axis=-1) & (jnp.argmax(logits, -1) == y)
    return jnp.sum(1.0 - ok.astype(jnp.float32))


def minibatch_order(n: int, batch_size: int, num_steps: int, seed: int) -> np.ndarray:
    """[num_steps, batch_size] int32 example indices: epochs of a fresh random permutation each,
    the last partial batch of every epoch dropped (so each example is seen once per epoch)."""
    steps_per_epoch = n // batch_size
    rng = np.random.default_rng([seed, 7])
    epochs = -(-num_steps // steps_per_epoch)
    order = np.concatenate(
        [rng.permutation(n)[: steps_per_epoch * batch_size] for _ in range(epochs)]
    )
    return order[: num_steps * batch_size].reshape(num_steps, batch_size).astype(np.int32)


def train_grid(
    model: MLP,
    params,
    learning_rates: jax.Array,
    splits: dict,
    config,
    seed: int,
    *,
    workdir: str,
    name: str = "grid",
    labels: dict | None = None,
    append: bool = False,
) -> dict:
    """Trains the stacked networks `params` (leaves [G, ...]) with SGD at `learning_rates` [G],
    all on the same minibatch sequence, by `dl.train.sweep.train_chunked` (progress bar, rows in
    `workdir/metrics.jsonl`, checkpoints for --resume under `workdir/checkpoints/<name>`);
    evaluates every `eval_every` steps and keeps, per network, the parameters with the lowest
    validation error."""
    loss_fn = classifier_loss(model)
    x_train, y_train = jnp.asarray(splits["train"].x), jnp.asarray(splits["train"].y)
    b = config.batch_size
    order = minibatch_order(len(splits["train"].y), b, config.num_steps, seed)
    x_val, y_val = jnp.asarray(splits["val"].x), jnp.asarray(splits["val"].y)
    x_test, y_test = jnp.asarray(splits["test"].x), jnp.asarray(splits["test"].y)

    def make_loss(hp):
        def fn(p, extra, batch, rng):  # no dropout: the step's key is not used
            idx = batch["idx"]
            full = {"x": x_train[idx], "y": y_train[idx], "mask": jnp.ones(b, jnp.float32)}
            return loss_fn(p, extra, full, None)

        return fn

    @jax.jit
    @jax.vmap
    def errors(p):
        return {
            "val_error": _error_count(model, p, x_val, y_val) / len(y_val),
            "test_error": _error_count(model, p, x_test, y_test) / len(y_test),
        }

    g = len(learning_rates)
    out = train_chunked(
        params,
        jax.random.split(jax.random.PRNGKey(seed), g),
        {"learning_rate": learning_rates},
        {"idx": order},
        make_loss=make_loss,
        make_tx=lambda hp: sgd(hp["learning_rate"]),
        num_steps=config.num_steps,
        chunk_steps=config.eval_every,
        workdir=workdir,
        eval_fn=errors,
        monitor="val_error",
        mode="min",
        labels=labels,
        checkpoint_every=config.get("checkpoint_every_evals", 0),
        resume=config.get("resume", False),
        append=append,
        name=name,
        progress=config.get("progress", False),
    )
    h = out.history
    curve = [  # (step, val error [G], test error [G], mean train loss [G])
        (int(s), h["val_error"][:, c], h["test_error"][:, c], h["loss"][:, c])
        for c, s in enumerate(out.steps)
    ]
    return {
        "best_val": out.best["val_error"],
        "best_test": out.best["test_error"],
        "best_step": out.best_step,
        "best_params": out.best_params,
        "curve": curve,
    }


def layer_stats_fn(model: MLP):
    """A jitted `(params, x [B, in], y [B]) -> stats` for one model; per hidden layer i = 1..depth:
    activations "act" h^i [B, width], back-propagated gradients "grad" dCost/ds^i [B, width] of
    the summed cost (so each row is one example's gradient), and the variances of those and of
    the weight gradient dCost/dW^i ("act_var", "grad_var", "wgrad_var": [depth])."""

    @jax.jit
    def stats(params, x, y):
        _, layers = dense_probe(
            model,
            {"params": params},
            x,
            lambda logits: cross_entropy(logits=logits, targets=y, reduce=False).sum(),
        )
        names = list(layers)  # dense_0 .. dense_{depth-1}, head, in call order
        acts = [layers[nxt]["input"] for nxt in names[1:]]  # h^i is what layer i+1 receives
        grads = [layers[name]["grad"] for name in names[:-1]]
        wgrads = [layers[name]["input"].T @ layers[name]["grad"] for name in names[:-1]]
        return {
            "act": acts,
            "grad": grads,
            "act_var": jnp.stack([jnp.var(a) for a in acts]),
            "grad_var": jnp.stack([jnp.var(g) for g in grads]),
            "wgrad_var": jnp.stack([jnp.var(w) for w in wgrads]),
        }

    return lambda params, x, y: jax.tree.map(np.asarray, stats(params, x, y))


def _histograms(stats: dict, key: str, path: str, title: str) -> None:
    """One panel per network (rows: activations, cols: inits), one line per layer (paper Figs
    6-7)."""
    fig, axes = plt.subplots(len(ACTIVATIONS), len(INITS), figsize=(10, 9), squeeze=False)
    for r, act in enumerate(ACTIVATIONS):
        for c, init in enumerate(INITS):
            ax, layers = axes[r, c], stats[(act, init)][key]
            if key == "act":
                edges = np.linspace(-1.0, 1.0, 81)
            else:  # gradients: a common range per panel, wide enough for the widest layer
                s = 4.0 * max(float(np.std(v)) for v in layers) + 1e-30
                edges = np.linspace(-s, s, 81)
            for i, v in enumerate(layers):
                hist, _ = np.histogram(v.ravel(), bins=edges)
                ax.plot(
                    0.5 * (edges[1:] + edges[:-1]),
                    hist / max(hist.sum(), 1),
                    label=f"layer {i + 1}",
                )
            ax.set_title(label(act, init), fontsize=9)
            ax.grid(alpha=0.3)
            if r == 0 and c == 0:
                ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.05, top=0.92, hspace=0.3, wspace=0.2)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _ratio(v: np.ndarray) -> float:
    return float(np.max(v) / np.min(v)) if np.min(v) > 0 else math.inf


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    start = time.perf_counter()
    splits = shapeset_splits(
        n_train=config.num_train, n_val=config.num_val, n_test=config.num_test, seed=config.seed
    )
    raw_probe_x = jnp.asarray(splits["test"].x[: config.probe_examples])
    if config.center_inputs:
        mean = splits["train"].x.mean(axis=0)
        splits = {k: v._replace(x=v.x - mean) for k, v in splits.items()}
    data_s = time.perf_counter() - start
    probe_x = jnp.asarray(splits["test"].x[: config.probe_examples])
    probe_y = jnp.asarray(splits["test"].y[: config.probe_examples])
    lrs = np.asarray(config.learning_rates, np.float32)
    key = jax.random.PRNGKey(config.seed)

    init_stats, trained_stats, raw_ratio, results, curves = {}, {}, {}, {}, {}
    for act in ACTIVATIONS:
        models = {
            init: MLP(
                hidden=(config.width,) * config.depth,
                out=len(CLASSES),
                activation=act,
                kernel_init=init,
            )
            for init in INITS
        }
        # The same key for every network: the two inits draw the same uniform variates, scaled.
        inits = {init: m.init(key, probe_x[:1])["params"] for init, m in models.items()}
        layer_stats = layer_stats_fn(models[INITS[0]])  # apply does not depend on the initializer
        for init in INITS:
            init_stats[(act, init)] = layer_stats(inits[init], probe_x, probe_y)
            raw_ratio[(act, init)] = _ratio(
                layer_stats(inits[init], raw_probe_x, probe_y)["grad_var"]
            )
        # One vmapped run per activation: G = len(INITS) * len(lrs) networks (the MLP's apply does
        # not depend on the initializer, so one model object serves both stacks).
        stacked = jax.tree.map(
            lambda *p: np.stack(p), *[jax.device_get(inits[init]) for init in INITS for _ in lrs]
        )
        grid_lrs = jnp.asarray(np.tile(lrs, len(INITS)))
        out = train_grid(
            models[INITS[0]],
            stacked,
            grid_lrs,
            splits,
            config,
            config.seed,
            workdir=workdir,
            name=act,
            labels={
                "activation": act,
                "init": np.repeat(INITS, len(lrs)),
                "learning_rate": grid_lrs,
            },
            append=act != ACTIVATIONS[0],
        )
        for k, init in enumerate(INITS):
            rows = slice(k * len(lrs), (k + 1) * len(lrs))
            j = k * len(lrs) + int(np.argmin(out["best_val"][rows]))  # rate chosen on validation
            params = jax.tree.map(lambda p: p[j], out["best_params"])  # noqa: B023 (called at once)
            trained_stats[(act, init)] = layer_stats(params, probe_x, probe_y)
            results[(act, init)] = {
                "lr": float(lrs[j - k * len(lrs)]),
                "val_error": float(out["best_val"][j]),
                "test_error": float(out["best_test"][j]),
                "best_step": int(out["best_step"][j]),
            }
            curves[label(act, init)] = (
                [s * config.batch_size for s, *_ in out["curve"]],
                [100.0 * t[j] for _, _, t, _ in out["curve"]],
            )

    table = []
    for act in ACTIVATIONS:
        for init in INITS:
            i0, i1, r = init_stats[(act, init)], trained_stats[(act, init)], results[(act, init)]
            table.append(
                {
                    "network": label(act, init),
                    "activation": act,
                    "init": init,
                    "learning_rate": r["lr"],
                    "best_step": r["best_step"],
                    "val_error_pct": 100 * r["val_error"],
                    "test_error_pct": 100 * r["test_error"],
                    "paper_test_error_pct": PAPER_ERROR.get((act, init)),
                    "grad_var_init": i0["grad_var"].tolist(),
                    "act_var_init": i0["act_var"].tolist(),
                    "wgrad_var_init": i0["wgrad_var"].tolist(),
                    "grad_var_trained": i1["grad_var"].tolist(),
                    "act_var_trained": i1["act_var"].tolist(),
                    "wgrad_var_trained": i1["wgrad_var"].tolist(),
                    "grad_ratio_init": _ratio(i0["grad_var"]),
                    "grad_ratio_trained": _ratio(i1["grad_var"]),
                    "grad_ratio_raw_inputs": raw_ratio[(act, init)],
                }
            )

    _histograms(init_stats, "act", f"{workdir}/activations_init.png", "activations h^i at init")
    _histograms(
        trained_stats, "act", f"{workdir}/activations_trained.png", "activations h^i after training"
    )
    _histograms(
        init_stats,
        "grad",
        f"{workdir}/gradients_init.png",
        "back-propagated gradients dCost/ds^i at init",
    )
    _histograms(
        trained_stats,
        "grad",
        f"{workdir}/gradients_trained.png",
        "back-propagated gradients dCost/ds^i after training",
    )
    plots.curves(
        {row["network"]: (np.arange(1, config.depth + 1), row["grad_var_init"]) for row in table},
        f"{workdir}/gradient_variance_init.png",
        xlabel="layer",
        ylabel="Var[dCost/ds^i] at init",
        logy=True,
        title="back-propagated gradient variance per layer",
    )
    plots.curves(
        curves,
        f"{workdir}/test_error.png",
        xlabel="training examples seen",
        ylabel="test error %",
        title="Shapeset test error during training",
    )

    by = {(row["activation"], row["init"]): row for row in table}
    ratio_n = by[("tanh", "glorot_uniform")]["grad_ratio_init"]
    ratio_s = by[("tanh", "standard_uniform")]["grad_ratio_init"]
    err = {k: row["test_error_pct"] for k, row in by.items()}
    sigmoid_min = min(err[("sigmoid", i)] for i in INITS)
    others_max = max(err[(a, i)] for a in ("tanh", "softsign") for i in INITS)
    metrics = {
        "table": table,
        "tanh_grad_ratio_normalized": ratio_n,
        "tanh_grad_ratio_standard": ratio_s,
        **{f"test_error_pct_{label(a, i)}": err[(a, i)] for a in ACTIVATIONS for i in INITS},
        "data_time_s": data_s,
        "wall_time_s": time.perf_counter() - start,
        "bars": [
            Bar(
                "(a) tanh at init: Var[dC/ds] max/min over layers, normalized <= 2 < standard",
                ratio_n,
                f"normalized <= {config.ratio_bound:g} < standard ({ratio_s:.3g})",
                bool(ratio_n <= config.ratio_bound < ratio_s),
                paper="Fig. 7: about equal (N)",
            ),
            at_most(
                "(b) Tanh-N test error % - Tanh's",
                err[("tanh", "glorot_uniform")] - err[("tanh", "standard_uniform")],
                0.0,
                paper="15.60 - 27.15 = -11.55",
            ),
            Bar(
                "(c) lowest sigmoid test error % - highest tanh/softsign",
                sigmoid_min - others_max,
                "> 0",
                bool(sigmoid_min > others_max),
                paper="82.61 vs <= 27.15",
            ),
        ],
    }
    for row in table:
        print(
            f"  {row['network']:<11} lr {row['learning_rate']:<5g} test error "
            f"{row['test_error_pct']:6.2f}% (paper {row['paper_test_error_pct']})  grad ratio "
            f"init {row['grad_ratio_init']:.3g} (raw inputs {row['grad_ratio_raw_inputs']:.3g})"
        )
    return metrics
