"""Saxe, McClelland & Ganguli (2014): with random orthogonal weights a deep linear network learns
in a depth-independent number of steps; with scaled Gaussian weights learning slows with depth.

Run:    python run.py deep_linear_orthogonal --scale quick
Expect: quick on a 2-core CPU: about 17 s; steps to 1% relative error, orthogonal: 6 at
        depth 2 and 9-11 at depths 5 to 50 (ratio 1.83; 1.67 and 2.0 with seeds 1 and 2,
        bar <= 2); Gaussian: 6 at depth 2, 314 at depth 20, more than the 400-step cap from
        depth 30 on (ratio >= 66.7 = 400 / 6, bar >= 5).

Task: a network of `depth` weight matrices, x -> W_depth ... W_1 x, learns a fixed linear map
T (the teacher; `outputs` x `width`, entries N(0, 1/width)) from whitened inputs. With input
correlation E[x x^T] = I the mean squared error is, up to a constant, the matrix loss

    L(W) = 1/2 ||T - W_depth ... W_1||_F^2     (Saxe et al. eq. 1-2 with Sigma^11 = I),

which full-batch gradient descent minimizes here: one step is one epoch. Learning time is the
number of steps until the relative error ||T - P||_F^2 / ||T||_F^2 <= `criterion`.

Initializations (hidden layers `width` x `width`; the first is `width` x `width`, the last
`outputs` x `width`): "orthogonal", random orthogonal matrices (`dl.ops.initializers.orthogonal`;
their product is a partial isometry, all singular values 1), and "gaussian", i.i.d. N(0, 1/n_in)
(variance 1/N as in the paper's "scaled random Gaussian"; `lecun_normal`), whose product's
singular values spread out with depth.

Learning rate: the largest stable rate of a deep linear network falls as 1/depth (the Hessian at
a solution grows with the number of layers; Saxe et al. Sec. 3), so each (depth, init) runs a
grid of rates eta / depth and keeps the fastest (median over seeds), i.e. every network gets its
best rate, as the paper's comparison of learning times across depths does.

The teacher has fewer outputs than inputs (like a readout of 10 classes from many pixels). With a
square teacher the comparison is confounded by a topological obstruction, not by the initial
scale: the product of square matrices must keep the sign of its determinant unless it passes
through a singular matrix, and gradient descent from an orthogonal product reaches a teacher of
the other sign, or one far in rotation, only after a slow passage near singular products. With a
square teacher (`--config.outputs=32`, quick) the orthogonal learning time is flat from depth 5
to 50 (65 to 132 steps; 85 at depth 50) but 9 at depth 2, so its ratio is 9.4 and the bar fails;
the Gaussian one exceeds the cap from depth 10 on.
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

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dl.ops.initializers import lecun_normal, orthogonal
from dl.report import at_least, at_most
from dl.train.loop import write_history
from experiments._fields import DATA_DIR, SEED, Float, Int, Tuple

PAPER = {
    "citation": "Saxe, McClelland & Ganguli 2014, Exact solutions to the nonlinear dynamics of "
    "learning in deep linear neural networks (ICLR), Sec. 4 and its depth figure",
    "claim": "With random orthogonal initial weights deep linear networks learn in a number of "
    "epochs that does not grow with depth; with scaled random Gaussian weights it does.",
    "published": "qualitative (a figure): learning time flat in depth for orthogonal, growing "
    "for scaled Gaussian",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "orthogonal: steps to criterion at the largest depth (50) <= 2x those at "
        "depth 2; Gaussian: >= 5x (a lower bound when it hits the step cap)",
        "full": "as quick, at depths up to 100",
    },
}

INITS = {"orthogonal": orthogonal, "gaussian": lecun_normal}


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # teacher and initial weights
    c.data_dir = ""  # unused: the task is synthetic
    c.width = {"smoke": 8, "quick": 32, "full": 64}[scale]  # inputs and hidden units, N
    c.outputs = {"smoke": 2, "quick": 8, "full": 16}[scale]  # teacher rows; < width, see above
    c.depths = {
        "smoke": (2, 5),
        "quick": (2, 5, 10, 20, 30, 50),
        "full": (2, 5, 10, 20, 30, 50, 75, 100),
    }[scale]  # weight matrices per network
    # Step size eta / depth for eta on this log grid: orthogonal nets are fastest at 0.8 at every
    # depth; deep Gaussian nets need small rates (their product has large singular values), so
    # the grid reaches down to where they stop improving.
    c.etas = {
        "smoke": (0.4, 0.8),
        "quick": (0.05, 0.1, 0.2, 0.4, 0.8, 1.6),
        "full": (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2),
    }[scale]
    c.num_seeds = {"smoke": 2, "quick": 3, "full": 5}[scale]  # initializations per (depth, eta)
    c.criterion = 1e-2  # relative error ||T - P||^2 / ||T||^2 that counts as learned
    c.max_steps = {"smoke": 40, "quick": 400, "full": 4000}[scale]  # cap: censored beyond it
    c.chunk_steps = 20  # steps per compiled call between checks for early stopping
    c.ratio_orthogonal_max = 2.0  # bar: orthogonal steps(max depth) / steps(min depth) <= this
    c.ratio_gaussian_min = 5.0  # bar: Gaussian steps(max depth) / steps(min depth) >= this
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "seed": SEED,
    "data_dir": DATA_DIR,
    "width": Int(lo=2),
    "outputs": Int(lo=1),
    "depths": Tuple(Int(lo=1), min_len=2, increasing=True),
    "etas": Tuple(Float(lo=0.0, lo_open=True), increasing=True),
    "num_seeds": Int(lo=1),
    "criterion": Float(0.0, 1.0, lo_open=True),
    "max_steps": Int(lo=1),
    "chunk_steps": Int(lo=1),
    "ratio_orthogonal_max": Float(lo=1.0),
    "ratio_gaussian_min": Float(lo=1.0),
}


def teacher(key: jax.Array, outputs: int, width: int) -> jax.Array:
    """T: [outputs, width] with i.i.d. N(0, 1/width) entries (a random linear map)."""
    return jax.random.normal(key, (outputs, width), jnp.float32) / math.sqrt(width)


@functools.partial(jax.jit, static_argnames=("init", "depth", "width", "outputs"))
def init_weights(key: jax.Array, init: str, depth: int, width: int, outputs: int) -> jax.Array:
    """[depth, width, width] weights W_1..W_depth, layer i mapping h -> W_i h. The last layer is
    `outputs` x `width`, stored padded with zero rows so that all layers stack (the padding rows
    receive zero gradient when the target is padded with zeros too, so they stay zero)."""
    make = INITS[init]()
    keys = jax.random.split(key, depth)
    # Initializers take [fan_in, fan_out] kernels (x @ K); our layers act as W x, so W = K^T.
    hidden = jax.vmap(lambda k: make(k, (width, width)).T)(keys[:-1])
    last = make(keys[-1], (width, outputs)).T
    last = jnp.zeros((width, width), jnp.float32).at[:outputs].set(last)
    return jnp.concatenate([hidden, last[None]])


def end_to_end(ws: jax.Array) -> jax.Array:
    """P = W_depth ... W_1 for ws [depth, N, N]."""
    return jax.lax.associative_scan(lambda a, b: b @ a, ws)[-1]


def loss_and_grads(ws: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
    """L = 1/2 ||P - T||_F^2 and dL/dW_i = (W_depth...W_{i+1})^T (P - T) (W_{i-1}...W_1)^T.

    Prefix products W_i...W_1 and suffix products W_depth...W_i come from two associative scans,
    so a step costs O(log depth) sequential matrix products rather than depth of them.

    Args:
      ws: [depth, N, N]; target: [N, N] (T padded with zero rows).
    Returns:
      (L [], grads [depth, N, N]).
    """
    prefix = jax.lax.associative_scan(lambda a, b: b @ a, ws)  # W_i ... W_1
    suffix = jax.lax.associative_scan(lambda a, b: a @ b, ws, reverse=True)  # W_depth ... W_i
    err = prefix[-1] - target
    eye = jnp.eye(ws.shape[-1], dtype=ws.dtype)[None]
    above = jnp.concatenate([suffix[1:], eye])  # W_depth ... W_{i+1} (identity for i = depth)
    below = jnp.concatenate([eye, prefix[:-1]])  # W_{i-1} ... W_1 (identity for i = 1)
    grads = jnp.einsum("dba,bc,dec->dae", above, err, below)
    return 0.5 * jnp.sum(err * err), grads


def gd_chunk(
    ws: jax.Array, lr: jax.Array, target: jax.Array, num_steps: int
) -> tuple[jax.Array, jax.Array]:
    """`num_steps` full-batch gradient steps; returns the new weights and the relative error
    ||P - T||^2 / ||T||^2 before each step, [num_steps]."""
    scale = 2.0 / jnp.sum(target * target)

    def step(ws, _):
        loss, grads = loss_and_grads(ws, target)
        return ws - lr * grads, loss * scale

    return jax.lax.scan(step, ws, None, length=num_steps)


def first_hit(errors: np.ndarray, criterion: float) -> np.ndarray:
    """Steps to reach `criterion`: errors [..., T] (error before step t) -> [...] the first t with
    errors <= criterion (0 if the initial error already is), inf if never."""
    hit = errors <= criterion
    return np.where(hit.any(-1), hit.argmax(-1), np.inf)


def time_to_criterion(config, depth: int, target: jax.Array, key: jax.Array, init: str) -> dict:
    """Runs every (seed, eta) of one (depth, init) at once and returns the fastest eta's median
    steps (inf when it never reached the criterion within `max_steps`)."""
    seeds, etas = config.num_seeds, np.asarray(config.etas, np.float32)
    keys = jax.random.split(key, seeds)
    ws = jnp.stack([init_weights(k, init, depth, config.width, config.outputs) for k in keys])
    ws = jnp.repeat(ws, len(etas), axis=0)  # [seeds * etas, depth, N, N]
    lrs = jnp.asarray(np.tile(etas / depth, seeds))
    chunk = _compiled_chunk(config.chunk_steps)
    errors = []
    while len(errors) * config.chunk_steps < config.max_steps:
        ws, err = chunk(ws, lrs, target)
        errors.append(np.asarray(err))
        hits = first_hit(np.concatenate(errors, axis=1), config.criterion)
        median = np.median(hits.reshape(seeds, len(etas)), axis=0)  # [etas]
        # Once some eta's median is known and no longer than the steps run, no other eta can
        # beat it.
        if np.isfinite(median).any() and np.nanmin(median) <= len(errors) * config.chunk_steps:
            break
    errors = np.concatenate(errors, axis=1).reshape(seeds, len(etas), -1)
    steps = np.median(first_hit(errors, config.criterion), axis=0)
    best = int(np.argmin(steps))  # the first eta when none reached the criterion
    censored = not np.isfinite(steps[best])
    return {
        "steps": float(steps[best]),
        "eta": None if censored else config.etas[best],
        "censored": censored,
        "steps_run": errors.shape[-1],
        # inf: not reached within steps_run (the search stops once the best eta is known)
        "curve": errors[:, best].mean(axis=0),
        "steps_per_eta": steps.tolist(),
    }


_CHUNKS: dict[int, object] = {}


def _compiled_chunk(num_steps: int):
    """`gd_chunk` vmapped over networks (weights and rates; one target), jitted once per chunk
    length; jax caches the compiled program per depth (the weights' shape)."""
    if num_steps not in _CHUNKS:
        _CHUNKS[num_steps] = jax.jit(
            jax.vmap(lambda ws, lr, t: gd_chunk(ws, lr, t, num_steps), in_axes=(0, 0, None))
        )
    return _CHUNKS[num_steps]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    start = time.perf_counter()
    teacher_key, init_key = jax.random.split(jax.random.PRNGKey(config.seed))
    t = teacher(teacher_key, config.outputs, config.width)
    target = jnp.zeros((config.width, config.width), jnp.float32).at[: config.outputs].set(t)
    results = {init: {} for init in INITS}
    for depth in config.depths:
        for k, init in enumerate(INITS):
            # The same keys for both inits at each depth: only the distribution differs.
            results[init][depth] = time_to_criterion(
                config, depth, target, jax.random.fold_in(init_key, depth), init
            )
            r = results[init][depth]
            print(
                f"  depth {depth:3d} {init:<10} steps to {config.criterion:g}: "
                + (
                    f"> {r['steps_run']}" if r["censored"] else f"{r['steps']:g} (eta {r['eta']:g})"
                ),
                flush=True,
            )

    def steps_or_cap(r):  # a censored run is known only to need more than the steps run
        return r["steps_run"] if r["censored"] else r["steps"]

    lo, hi = min(config.depths), max(config.depths)
    table = [
        {
            "depth": d,
            **{
                f"{init}_{k}": results[init][d][k]
                for init in INITS
                for k in ("steps", "eta", "censored", "steps_run", "steps_per_eta")
            },
        }
        for d in config.depths
    ]
    ratio = {
        init: steps_or_cap(results[init][hi]) / max(steps_or_cap(results[init][lo]), 1.0)
        for init in INITS
    }
    _plot_steps(results, config, f"{workdir}/steps_vs_depth.png")
    _plot_curves(results, config, f"{workdir}/error_curves.png")
    for i, (init, d) in enumerate((init, d) for init in INITS for d in config.depths):
        r = results[init][d]  # history: mean relative error after t steps at the chosen eta
        labels = {"init": init, "depth": d, "eta": r["eta"]}
        curve = {"relative_error": r["curve"]}
        write_history(workdir, curve, labels=labels, steps=np.arange(len(r["curve"])), append=i > 0)
    singular_values = np.linalg.svd(np.asarray(t), compute_uv=False)
    metrics = {
        "table": table,
        "ratio_orthogonal": ratio["orthogonal"],
        "ratio_gaussian": ratio["gaussian"],
        "gaussian_max_depth_censored": results["gaussian"][hi]["censored"],
        "teacher_singular_values": singular_values.tolist(),
        "wall_time_s": time.perf_counter() - start,
        "bars": [
            at_most(
                f"orthogonal: steps to criterion, depth {hi} / depth {lo}",
                ratio["orthogonal"],
                config.ratio_orthogonal_max,
                paper="depth-independent",
            ),
            at_least(
                f"gaussian: steps to criterion, depth {hi} / depth {lo}"
                + (" (lower bound: capped)" if results["gaussian"][hi]["censored"] else ""),
                ratio["gaussian"],
                config.ratio_gaussian_min,
                paper="grows with depth",
            ),
        ],
    }
    return metrics


def _plot_steps(results: dict, config, path: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for init, color in zip(INITS, ("C0", "C3")):
        depths = list(config.depths)
        steps = [
            results[init][d]["steps_run"]
            if results[init][d]["censored"]
            else results[init][d]["steps"]
            for d in depths
        ]
        ax.plot(depths, steps, "-", color=color, label=init)
        for d, s in zip(depths, steps):
            censored = results[init][d]["censored"]
            ax.plot(d, s, "^" if censored else "o", color=color, mfc="none" if censored else color)
    ax.set_yscale("log")
    ax.set_xlabel("depth (weight matrices)")
    ax.set_ylabel(f"steps to relative error {config.criterion:g}")
    ax.set_title("deep linear networks: learning time vs depth (open: >= cap)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_curves(results: dict, config, path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, init in zip(axes, INITS):
        for d in config.depths:
            curve = results[init][d]["curve"]
            ax.plot(np.arange(len(curve)), curve, label=f"depth {d}")
        ax.axhline(config.criterion, color="k", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("full-batch steps (epochs)")
        ax.set_title(f"{init} (best eta per depth, mean over seeds)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("relative error ||T - P||^2 / ||T||^2")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
