"""Eight first-order optimizers on the Rosenbrock valley and on an ill-conditioned quadratic:
their paths over the contour lines, and the steps each needs to reach the optimum.

Run:    python run.py optimizers_rosenbrock --scale quick
Expect: quick on a 2-core CPU: about 5 s; steps to ||p - p*|| < 1e-3 (staying there), each at
        its best grid rate: Rosenbrock SGD 9625, momentum 858; quadratic (condition number 100)
        SGD 389, momentum 148. Adadelta (both) and RMSprop (quadratic) stay outside the ball.

Every optimizer in `dl.optim.OPTIMIZERS` starts from the same point with its default
hyperparameters (momentum/Nesterov beta 0.9, Adam's b1 0.9 and b2 0.999, ...) and only its
learning rate chosen, so that no method is favoured by hand tuning: for each optimizer and problem
the whole rate grid runs at once, `vmap` over the rate of one jitted `lax.scan` of `num_steps`
steps, and the rate that reaches the tolerance in the fewest steps is kept (if no rate reaches it,
the one ending nearest the optimum). "Reaching" means entering the ball ||p - p*|| < tol and never
leaving it again within the budget, so an oscillation that passes through the ball does not count.

Problems (both minimized at p* = (1, 1), both started from (-1.5, 2)):
  rosenbrock: f(x, y) = (1 - x)^2 + 100 (y - x^2)^2 (Rosenbrock 1960), a curved, narrow valley.
  quadratic:  f(p) = 1/2 (p - p*)^T H (p - p*), H with eigenvalues 1 and `condition`, eigenvectors
              rotated by 45 degrees off the axes so that per-coordinate (diagonal) scaling, as in
              Adagrad/RMSprop/Adam, cannot undo the conditioning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dl.optim.optimizers import OPTIMIZERS, get_optimizer
from dl.report import Bar
from dl.train.loop import write_history
from experiments._fields import DATA_DIR, SEED, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Polyak 1964 and Rumelhart, Hinton & Williams 1986 (momentum); Nesterov 1983; "
    "Duchi, Hazan & Singer 2011 (Adagrad); Tieleman & Hinton 2012 (RMSprop); "
    "Zeiler 2012 (Adadelta); Kingma & Ba 2015 (Adam, Adamax); Rosenbrock 1960",
    "claim": "Momentum accelerates gradient descent along low-curvature directions: on an "
    "ill-conditioned quadratic heavy-ball momentum needs about sqrt(condition number) "
    "times fewer steps than plain gradient descent (Polyak 1964), and it crosses "
    "Rosenbrock's curved valley much faster.",
    "published": "no number on these instances; theory: gradient descent contracts by "
    "(k - 1)/(k + 1) per step at best, heavy-ball by (sqrt k - 1)/(sqrt k + 1)",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "momentum reaches the tolerance in fewer steps than plain SGD, on both "
        "problems, each at its best grid learning rate",
        "full": "momentum reaches the tolerance in fewer steps than plain SGD, on both "
        "problems, each at its best grid learning rate",
    },
}

OPTIMUM = (1.0, 1.0)  # p* of both problems


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # unused: everything here is deterministic
    c.data_dir = ""  # unused: no data
    c.start = (-1.5, 2.0)  # the classic start on the far side of Rosenbrock's valley
    c.condition = 100.0  # quadratic's Hessian condition number (eigenvalues 1, 100)
    c.angle_deg = 45.0  # rotation of the quadratic's eigenvectors off the axes
    c.tolerance = 1e-3  # "reached": ||p - p*|| < tolerance from then on
    c.rosenbrock_steps = {"smoke": 300, "quick": 20000, "full": 50000}[scale]  # step budget
    c.quadratic_steps = {"smoke": 100, "quick": 2000, "full": 5000}[scale]  # step budget
    # Learning-rate grid, log-spaced, shared by every optimizer: wide enough that no chosen rate
    # lies on its edge (SGD's is below 2/L ~ 2e-3 on Rosenbrock; Adagrad/Adamax pick ~3).
    c.lr_min_log10 = -5.0  # smallest rate 1e-5
    c.lr_max_log10 = 1.0  # largest rate 10
    c.lr_per_decade = {"smoke": 1, "quick": 4, "full": 8}[scale]  # grid density
    c.optimizers = tuple(OPTIMIZERS)  # all eight, default hyperparameters apart from the rate
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "seed": SEED,
    "data_dir": DATA_DIR,
    "start": Tuple((Float(), Float())),
    "condition": Float(lo=1.0),
    "angle_deg": Float(-360.0, 360.0),
    "tolerance": Float(lo=0.0, lo_open=True),
    "rosenbrock_steps": Int(lo=1),
    "quadratic_steps": Int(lo=1),
    "lr_min_log10": Float(-10.0, 3.0),
    "lr_max_log10": Float(-10.0, 3.0),
    "lr_per_decade": Int(lo=1),
    "optimizers": Tuple(Choice(OPTIMIZERS)),
}


def rosenbrock(p: jax.Array, *, a: float = 1.0, b: float = 100.0) -> jax.Array:
    """Rosenbrock's (1960) function ``(a - x)^2 + b (y - x^2)^2``; p: [2]; minimum 0 at (a, a^2)."""
    x, y = p[0], p[1]
    return (a - x) ** 2 + b * (y - x * x) ** 2


def rotated_hessian(condition: float, angle_deg: float) -> np.ndarray:
    """[2, 2] float32 ``R diag(1, condition) R^T``, R the rotation by ``angle_deg``."""
    t = math.radians(angle_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return (rot @ np.diag([1.0, condition]) @ rot.T).astype(np.float32)


def quadratic(p: jax.Array, *, hessian: jax.Array, center: jax.Array) -> jax.Array:
    """``1/2 (p - c)^T H (p - c)``; p, center: [2]; hessian: [2, 2] symmetric positive definite."""
    d = p - center
    return 0.5 * d @ hessian @ d


def descend(
    loss_fn: Callable[[jax.Array], jax.Array],
    start: jax.Array,
    tx: optax.GradientTransformation,
    num_steps: int,
) -> jax.Array:
    """Full-gradient optimization of ``loss_fn`` from ``start`` ([d]) by ``tx``.

    Returns:
      [num_steps + 1, d]: the path; row k holds the iterate after k steps (row 0 is ``start``).
    """

    def step(carry, _):
        p, opt_state = carry
        updates, opt_state = tx.update(jax.grad(loss_fn)(p), opt_state, p)
        p = optax.apply_updates(p, updates)
        return (p, opt_state), p

    _, path = jax.lax.scan(step, (start, tx.init(start)), None, length=num_steps)
    return jnp.concatenate([start[None], path])


def steps_to_tolerance(distances: jax.Array, tolerance: float) -> jax.Array:
    """Steps after which the iterate enters the ball ``distance < tolerance`` and never leaves it.

    Args:
      distances: [..., T + 1], distance to the optimum after 0 ... T steps (NaN counts as outside).
    Returns:
      [...] int32: the first k such that every distance from index k on is < tolerance; -1 if the
      last one is not (the tolerance was not reached to stay within the budget).
    """
    inside = distances < tolerance  # NaN compares False: a diverged run is never inside
    index = jnp.arange(distances.shape[-1], dtype=jnp.int32)
    last_outside = jnp.max(jnp.where(inside, -1, index), axis=-1)
    return jnp.where(inside[..., -1], last_outside + 1, -1).astype(jnp.int32)


def sweep_rates(
    name: str,
    loss_fn: Callable[[jax.Array], jax.Array],
    start: jax.Array,
    rates: jax.Array,
    num_steps: int,
) -> jax.Array:
    """Paths of optimizer ``name`` at every learning rate in ``rates`` ([R]) at once.

    One compiled program: ``vmap`` over the rate of a ``lax.scan`` (the rate is traced, so the
    optimizer's formulas see it as an array). Returns [R, num_steps + 1, d].
    """

    def one(lr):
        return descend(loss_fn, start, get_optimizer(name, learning_rate=lr), num_steps)

    return jax.jit(jax.vmap(one))(rates)


def best_rate_index(steps: np.ndarray, final_distance: np.ndarray) -> int:
    """The grid rate to keep: fewest ``steps`` (>= 0; ties go to the smaller rate), or if no rate
    reached the tolerance (all -1) the smallest finite ``final_distance``. Both: [R]."""
    steps = np.asarray(steps)
    if (steps >= 0).any():
        return int(np.argmin(np.where(steps >= 0, steps, np.iinfo(np.int32).max)))
    final = np.asarray(final_distance, np.float64)
    return int(np.argmin(np.where(np.isfinite(final), final, np.inf)))


def problems(config) -> dict[str, dict[str, Any]]:
    """The two test functions with their budgets and plotting boxes."""
    center = jnp.asarray(OPTIMUM, jnp.float32)
    hessian = jnp.asarray(rotated_hessian(config.condition, config.angle_deg))
    return {
        "rosenbrock": {
            "loss": rosenbrock,
            "num_steps": config.rosenbrock_steps,
            "box": (-2.0, 2.0, -1.0, 3.0),
        },
        "quadratic": {
            "loss": lambda p: quadratic(p, hessian=hessian, center=center),
            "num_steps": config.quadratic_steps,
            "box": (-2.0, 3.0, -1.5, 3.0),
        },
    }


def compare(config) -> dict[str, dict[str, dict[str, Any]]]:
    """For every problem and optimizer: the grid, steps at each rate, the chosen rate and path."""
    start = jnp.asarray(config.start, jnp.float32)
    optimum = np.asarray(OPTIMUM, np.float32)
    n_rates = round((config.lr_max_log10 - config.lr_min_log10) * config.lr_per_decade) + 1
    rates = np.logspace(config.lr_min_log10, config.lr_max_log10, n_rates).astype(np.float32)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for problem, spec in problems(config).items():
        out[problem] = {}
        for name in config.optimizers:
            t0 = time.perf_counter()
            paths = np.asarray(
                sweep_rates(name, spec["loss"], start, jnp.asarray(rates), spec["num_steps"])
            )
            with np.errstate(over="ignore", invalid="ignore"):  # diverged rates: inf/NaN, by design
                distances = np.linalg.norm(paths - optimum, axis=-1)  # [R, T + 1]
            steps = np.asarray(steps_to_tolerance(jnp.asarray(distances), config.tolerance))
            best = best_rate_index(steps, distances[:, -1])
            out[problem][name] = {
                "rates": rates,
                "steps_per_rate": steps,
                "best_index": best,
                "learning_rate": float(rates[best]),
                "steps": int(steps[best]) if steps[best] >= 0 else None,
                "final_distance": float(distances[best, -1]),
                "path": paths[best],
                "distance": distances[best],
                "time_s": time.perf_counter() - t0,
            }
    return out


def plot_paths(results, config, path: str) -> None:
    """Both problems side by side: log-spaced contour lines and each optimizer's path."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.8))
    colors = plt.get_cmap("tab10").colors
    for ax, (problem, spec) in zip(axes, problems(config).items()):
        x0, x1, y0, y1 = spec["box"]
        gx, gy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
        grid = jnp.asarray(np.stack([gx, gy], -1).reshape(-1, 2), jnp.float32)
        z = np.asarray(jax.vmap(spec["loss"])(grid)).reshape(gx.shape)
        ax.contour(
            gx,
            gy,
            z,
            levels=np.logspace(-2, math.log10(z.max()), 18),
            colors="0.75",
            linewidths=0.7,
        )
        for color, (name, r) in zip(colors, results[problem].items()):
            n = r["steps"] if r["steps"] is not None else len(r["path"]) - 1
            p = r["path"][: n + 1]
            steps = r["steps"] if r["steps"] is not None else "never"
            ax.plot(
                p[:, 0],
                p[:, 1],
                "-",
                color=color,
                lw=1.2,
                alpha=0.9,
                label=f"{name} (lr {r['learning_rate']:.2g}): {steps}",
            )
        ax.plot(*config.start, "ko", ms=5)
        ax.plot(*OPTIMUM, "k*", ms=12)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_title(f"{problem}: steps to ||p - p*|| < {config.tolerance:g}")
        ax.legend(fontsize=7, loc="lower left" if problem == "rosenbrock" else "upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_distances(results, path: str) -> None:
    """Distance to the optimum against steps, each optimizer at its chosen rate."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, (problem, per_opt) in zip(axes, results.items()):
        for name, r in per_opt.items():
            d = np.where(np.isfinite(r["distance"]), r["distance"], np.nan)
            ax.plot(np.maximum(d, 1e-8), lw=1, label=name)
        ax.set_yscale("log")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(0, len(next(iter(per_opt.values()))["distance"]))
        ax.set_xlabel("step")
        ax.set_ylabel("||p - p*||")
        ax.set_title(problem)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    results = compare(config)
    plot_paths(results, config, f"{workdir}/paths.png")
    plot_distances(results, f"{workdir}/distance.png")
    # History: distance to the optimum after 0..T steps at each optimizer's chosen rate (about
    # 500 rows per curve; the other rates' paths are summarized by steps_per_rate).
    for i, (problem, name, r) in enumerate(
        (p, n, r) for p, per_opt in results.items() for n, r in per_opt.items()
    ):
        labels = {"problem": problem, "optimizer": name, "learning_rate": r["learning_rate"]}
        every = max(1, (len(r["distance"]) - 1) // 500)
        write_history(
            workdir,
            {"distance": r["distance"]},
            labels=labels,
            every=every,
            steps=np.arange(len(r["distance"])),
            append=i > 0,
        )
    table = {
        problem: {
            name: {
                "learning_rate": r["learning_rate"],
                "steps": r["steps"],
                "final_distance": r["final_distance"],
                "rates_reaching": int((r["steps_per_rate"] >= 0).sum()),
            }
            for name, r in per_opt.items()
        }
        for problem, per_opt in results.items()
    }
    metrics: dict[str, Any] = {
        "table": table,
        "lr_grid": results["rosenbrock"][config.optimizers[0]]["rates"],
        "sweep_time_s": sum(r["time_s"] for per_opt in results.values() for r in per_opt.values()),
    }
    print(f"  steps to ||p - p*|| < {config.tolerance:g} at each optimizer's best grid rate")
    print(f"  {'optimizer':<10}" + "".join(f"{p:>26}" for p in table))
    for name in config.optimizers:
        cells = [
            f"{t[name]['steps']!s:>8} (lr {t[name]['learning_rate']:8.2g})" for t in table.values()
        ]
        print(f"  {name:<10}" + "".join(f"{c:>26}" for c in cells))
    bars = []
    for problem, t in table.items():
        for name in ("sgd", "momentum"):
            if name in t:
                metrics[f"{problem}_{name}_steps"] = t[name]["steps"]
        if "sgd" in t and "momentum" in t:
            sgd, mom = t["sgd"]["steps"], t["momentum"]["steps"]
            mom_f = float("inf") if mom is None else float(mom)
            sgd_f = float("inf") if sgd is None else float(sgd)
            bars.append(
                Bar(
                    f"{problem}: momentum steps to tolerance (< SGD's)",
                    mom_f,
                    f"< {sgd_f:g} (SGD)",
                    bool(mom_f < sgd_f),
                    "Polyak 1964: fewer steps",
                )
            )
    metrics["bars"] = bars
    return metrics
