"""The perceptron: Novikoff's (1962) mistake bound on separable data, and its failure on XOR.

Run:    python run.py perceptron --scale quick
Expect: quick on a 2-core CPU: about 3 s; worst mistakes / (R/gamma)^2 over 200 instances
        about 0.48 (Novikoff: <= 1); XOR training accuracy: perceptron at best 75%, MLP 100%.

Part 1 draws linearly separable instances through the origin (`dl.data.synthetic.separable`, no
bias: the generator's separator passes through 0) at several margins, measures each instance's
true R = max ||x|| and gamma = min y <w*, x> (for the generator's unit w*, in float64; the
sample's best margin can only be larger, which loosens the bound), and runs the perceptron from
w = 0, cycling in a fixed order until a pass makes no mistake. All instances run at once:
`vmap` over a jitted `lax.while_loop` of `lax.scan` passes (`dl.models.perceptron`).

Part 2 is XOR (Minsky & Papert 1969): with a bias folded into x as a constant feature no
perceptron weight vector classifies all four clusters (the best line gets 3 of 4), while a
one-hidden-layer MLP trained by backprop reaches 100% training accuracy.
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dl.data.synthetic import separable, xor
from dl.models import perceptron
from dl.nn.mlp import MLP
from dl.objectives.classification import classifier_loss
from dl.ops.activations import ACTIVATIONS
from dl.optim.optimizers import adam
from dl.report import Bar, at_least, at_most
from dl.train.loop import write_history
from experiments._fields import DATA_DIR, SEED, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Rosenblatt 1958 (perceptron); Novikoff 1962 (mistake bound); "
    "Minsky & Papert 1969 (XOR)",
    "claim": "On data with ||x|| <= R separable with margin gamma by a unit w*, the perceptron "
    "makes at most (R/gamma)^2 mistakes; no perceptron computes XOR, a hidden layer does.",
    "published": "mistakes <= (R/gamma)^2 (a theorem: ratio <= 1); XOR not linearly separable",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "mistakes <= (R/gamma)^2 on all 200 instances (4 margins x 50); XOR "
        "training accuracy: perceptron < 100%, MLP = 100%",
        "full": "mistakes <= (R/gamma)^2 on all 2000 instances (4 margins x 500); XOR "
        "training accuracy: perceptron < 100%, MLP = 100%",
    },
}


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # instance i at margin k uses seed [seed, k, i]
    c.data_dir = ""  # unused: all data here is synthetic
    c.margins = (0.05, 0.1, 0.2, 0.4)  # generator margins gamma (R = 1): bounds 400 ... 6.25
    c.instances_per_margin = {"smoke": 3, "quick": 50, "full": 500}[scale]  # per margin
    c.num_examples = {"smoke": 50, "quick": 200, "full": 1000}[scale]  # n per instance
    c.dim = 10  # input dimension; the bound does not depend on it
    c.radius = 1.0  # generator radius (the measured R is <= this)
    c.xor_examples = 200  # training points, 4 noisy clusters at (+-1, +-1)
    c.xor_noise = 0.1  # cluster std; small enough that every point lies in
    # its cluster's quadrant, so XOR is exactly the task
    c.xor_perceptron_epochs = 100  # passes; every pass errs on XOR, so this is a cap
    c.mlp_hidden = (8,)  # one hidden layer; 2 tanh units suffice in principle,
    # 8 make plain gradient descent reliable
    c.mlp_activation = "tanh"  # as in Rumelhart, Hinton & Williams 1986 (sigmoid-like)
    c.mlp_learning_rate = 0.03  # Adam (dl.optim), full batch
    c.mlp_steps = {"smoke": 100, "quick": 1000, "full": 1000}[scale]  # full-batch Adam steps
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "seed": SEED,
    "data_dir": DATA_DIR,
    "margins": Tuple(Float(0.0, 1.0, lo_open=True)),  # gamma <= R = 1
    "instances_per_margin": Int(lo=1),
    "num_examples": Int(lo=2),
    "dim": Int(lo=1),
    "radius": Float(lo=0.0, lo_open=True),
    "xor_examples": Int(lo=4),
    "xor_noise": Float(lo=0.0),
    "xor_perceptron_epochs": Int(lo=1),
    "mlp_hidden": Tuple(Int(lo=1)),
    "mlp_activation": Choice(ACTIVATIONS),
    "mlp_learning_rate": Float(lo=0.0, lo_open=True),
    "mlp_steps": Int(lo=1),
}


def novikoff_instances(config) -> dict[str, np.ndarray]:
    """Stacks every instance ([I, n, d], [I, n]) with its measured R, gamma (float64) and margin."""
    xs, ys, radius, gamma, margin = [], [], [], [], []
    for k, m in enumerate(config.margins):
        for i in range(config.instances_per_margin):
            d, w_star = separable(
                config.num_examples,
                dim=config.dim,
                margin=m,
                radius=config.radius,
                seed=[config.seed, k, i],
            )
            x64 = d.x.astype(np.float64)
            w64 = w_star.astype(np.float64) / np.linalg.norm(w_star.astype(np.float64))
            xs.append(d.x)
            ys.append(d.y)
            radius.append(np.linalg.norm(x64, axis=1).max())
            gamma.append((d.y * (x64 @ w64)).min())
            margin.append(m)
    return {
        "x": np.stack(xs),
        "y": np.stack(ys),
        "radius": np.array(radius),
        "gamma": np.array(gamma),
        "margin": np.array(margin),
    }


def run_novikoff(config) -> dict:
    inst = novikoff_instances(config)
    bound = (inst["radius"] / inst["gamma"]) ** 2
    # Twice the largest bound (plus slack) so that a violation would show as extra mistakes,
    # not be cut off by the cap.
    max_epochs = 2 * math.ceil(bound.max()) + 2
    train_all = jax.jit(jax.vmap(functools.partial(perceptron.train, max_epochs=max_epochs)))
    x, y = jnp.asarray(inst["x"]), jnp.asarray(inst["y"])
    start = time.perf_counter()
    compiled = train_all.lower(x, y).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    result = jax.block_until_ready(compiled(x, y))
    run_s = time.perf_counter() - start
    mistakes = np.asarray(result.mistakes)
    return {
        **inst,
        "bound": bound,
        "mistakes": mistakes,
        "epochs": np.asarray(result.epochs),
        "converged": np.asarray(result.converged),
        "w": np.asarray(result.w),
        "compile_s": compile_s,
        "run_s": run_s,
    }


def run_xor(config) -> dict:
    train = xor(config.xor_examples, noise=config.xor_noise, seed=config.seed)
    # Perceptron: labels {0, 1} -> {-1, +1}, bias as a constant feature.
    xb = perceptron.with_bias_feature(jnp.asarray(train.x))
    y_pm = jnp.asarray(2 * train.y - 1)
    ws, pass_mistakes = jax.jit(
        functools.partial(perceptron.train_epochs, num_epochs=config.xor_perceptron_epochs)
    )(xb, y_pm)
    # Accuracy after every pass: the bar holds for the best weights ever visited, not only the last.
    accs = np.asarray(jnp.mean((jnp.einsum("nd,ed->en", xb, ws) > 0) == (y_pm > 0)[None], axis=1))

    model = MLP(hidden=tuple(config.mlp_hidden), out=2, activation=config.mlp_activation)
    loss_fn = classifier_loss(model)
    batch = {
        "x": jnp.asarray(train.x),
        "y": jnp.asarray(train.y),
        "mask": jnp.ones(len(train.y), jnp.float32),
    }
    params = model.init(jax.random.PRNGKey(config.seed), batch["x"])["params"]
    tx = adam(config.mlp_learning_rate)  # dl.optim's: optax's promotes dtypes under strict mode

    def step(carry, i):
        params, opt_state = carry
        (loss, (metrics, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, {}, batch, jax.random.PRNGKey(0)
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, metrics["accuracy"])

    @jax.jit
    def fit(params):
        return jax.lax.scan(step, (params, tx.init(params)), jnp.arange(config.mlp_steps))

    (params, _), (losses, train_accs) = fit(params)
    logits = model.apply({"params": params}, batch["x"])
    mlp_acc = float(jnp.mean(jnp.argmax(logits, -1) == batch["y"]))

    def mlp_predict(points):
        return np.asarray(jnp.argmax(model.apply({"params": params}, jnp.asarray(points)), -1))

    best_w = ws[int(np.argmax(accs))]  # the plot shows the best line the perceptron visited

    def perceptron_predict(points):
        pb = perceptron.with_bias_feature(jnp.asarray(points))
        return np.asarray(perceptron.scores(best_w, pb) > 0).astype(np.int32)

    return {
        "x": train.x,
        "y": train.y,
        "perceptron_accs": accs,
        "perceptron_pass_mistakes": np.asarray(pass_mistakes),
        "mlp_acc": mlp_acc,
        "mlp_final_loss": float(losses[-1]),
        "mlp_history": {"loss": np.asarray(losses), "accuracy": np.asarray(train_accs)},
        "mlp_predict": mlp_predict,
        "perceptron_predict": perceptron_predict,
    }


def plot_novikoff(nov: dict, path: str) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for m in sorted(set(nov["margin"].tolist())):
        sel = nov["margin"] == m
        ax.scatter(
            nov["bound"][sel],
            np.maximum(nov["mistakes"][sel], 1),
            s=10,
            alpha=0.7,
            label=f"margin {m:g}",
        )
    lim = [1.0, nov["bound"].max() * 1.5]
    ax.plot(lim, lim, "k--", lw=1, label="mistakes = (R/gamma)^2")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("(R / gamma)^2")
    ax.set_ylabel("perceptron mistakes")
    ax.set_title("Novikoff's bound: every point lies below the line")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_xor(res: dict, path: str) -> None:
    g = np.linspace(-2.0, 2.0, 201, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    panels = [
        ("perceptron, best pass", res["perceptron_predict"], res["perceptron_accs"].max()),
        ("MLP", res["mlp_predict"], res["mlp_acc"]),
    ]
    for ax, (name, predict, acc) in zip(axes, panels):
        ax.contourf(
            gx,
            gy,
            predict(grid).reshape(gx.shape),
            levels=[-0.5, 0.5, 1.5],
            colors=["#c6dbef", "#fdd0a2"],
        )
        for label, color in ((0, "#08519c"), (1, "#a63603")):
            sel = res["y"] == label
            ax.scatter(res["x"][sel, 0], res["x"][sel, 1], s=8, c=color, label=f"class {label}")
        ax.set_title(f"{name}: training accuracy {acc:.0%}")
        ax.set_aspect("equal")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    nov = run_novikoff(config)
    ratio = nov["mistakes"] / nov["bound"]
    xr = run_xor(config)
    plot_novikoff(nov, f"{workdir}/novikoff.png")
    plot_xor(xr, f"{workdir}/xor_regions.png")
    # History: XOR per perceptron pass (step = epoch) and per MLP step. The Novikoff runs'
    # while_loop keeps only totals per instance (summarized in results.json), no history.
    pass_hist = {"mistakes": xr["perceptron_pass_mistakes"], "accuracy": xr["perceptron_accs"]}
    write_history(workdir, pass_hist, labels={"arm": "xor_perceptron"})
    write_history(workdir, xr["mlp_history"], labels={"arm": "xor_mlp"}, append=True)

    n_inst = len(ratio)
    best_perceptron = float(xr["perceptron_accs"].max())
    metrics = {
        "instances": n_inst,
        "worst_mistake_ratio": float(ratio.max()),
        "median_mistake_ratio": float(np.median(ratio)),
        "converged_fraction": float(nov["converged"].mean()),
        "max_mistakes": int(nov["mistakes"].max()),
        "max_epochs_used": int(nov["epochs"].max()),
        "novikoff_compile_s": nov["compile_s"],
        "novikoff_run_s": nov["run_s"],
        "xor_perceptron_final_accuracy": float(xr["perceptron_accs"][-1]),
        "xor_perceptron_best_accuracy": best_perceptron,
        "xor_mlp_accuracy": xr["mlp_acc"],
        "xor_mlp_final_loss": xr["mlp_final_loss"],
    }
    for m in config.margins:
        sel = nov["margin"] == m
        metrics[f"worst_mistake_ratio_margin_{m:g}"] = float(ratio[sel].max())
    metrics["bars"] = [
        at_most(
            f"worst mistakes / (R/gamma)^2 over {n_inst} instances",
            ratio.max(),
            1.0,
            paper="Novikoff 1962: <= 1",
        ),
        at_least(
            "fraction of instances separated",
            nov["converged"].mean(),
            1.0,
            paper="perceptron convergence theorem: 1",
        ),
        Bar(
            "XOR: perceptron's best training accuracy (any pass)",
            best_perceptron,
            "< 1",
            best_perceptron < 1.0,
            "Minsky & Papert 1969: < 1 (a line gets 3 of 4 clusters)",
        ),
        at_least("XOR: MLP training accuracy", xr["mlp_acc"], 1.0, paper="1 with a hidden layer"),
    ]
    for k, v in metrics.items():
        if k != "bars":
            print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    return metrics
