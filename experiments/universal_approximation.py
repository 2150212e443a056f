"""Universal approximation with one hidden layer (error falls with width), and the benefit of
depth on Telgarsky's sawtooth (a deep narrow ReLU net vs a shallow wide one).

Run:    python run.py universal_approximation --scale quick
Expect: quick on a 2-core CPU: about 24 s; RMS error of the tanh nets falls from 0.54 (1 unit)
        to 5e-12 (256 units); sawtooth k = 6: the exact deep net has 37 parameters and RMS 0,
        the smallest trained shallow net with RMS <= 0.05 has 64 units (193 parameters).

Part 1 (Cybenko 1989; Hornik 1991). One-hidden-layer tanh nets
    g(x) = sum_j v_j tanh(w_j x + b_j) + c
of width 1, 2, 4, ..., 256 fit f(x) = sin(3x) + 0.3 x^2 on [-2, 2] (smooth, not a polynomial,
so no finite tanh net is exact) by least squares on `train_points` grid points; the error is
measured on a 4x denser grid. Training, per width: hidden units w_j ~ N(0, 1) with their
midpoints -b_j / w_j uniform on [-2, 2]; `seeds` candidates get the exact least-squares output
layer, `seeds` more a random one (LeCun normal, as `MLP` draws it); every candidate then takes
`lm_steps` Levenberg-Marquardt steps on all parameters, and the best candidate counts. The
fits run in float64 (`jax.enable_x64`): in float32 the least-squares floor (~1e-4 RMS in a
pilot) would hide the approximation error of every net wider than ~8 units.

Bar: RMS(256) <= RMS(1) / 10, and the error never rises from one width to the next by more than
a tolerance, RMS(2w) <= 1.25 RMS(w) + 1e-3 (the 1e-3 was meant to absorb an optimizer floor,
which float64 least squares removed: the measured curve is strictly decreasing).

Part 2 (Telgarsky 2016, "Benefits of depth in neural networks"). The tent map
t(x) = 2 min(x, 1 - x) on [0, 1] composed k times is a sawtooth with 2^k linear pieces. A ReLU
net of depth k and width 2 computes it exactly: t(x) = 2 relu(x) - 4 relu(x - 1/2) on [0, 1], so
each layer computes (relu(z), relu(z - 1/2)) of the previous layer's z = 2 h_1 - 4 h_2; that is
6k + 1 parameters (`deep_sawtooth_params` in `dl.models.approximation`, for a `dl.nn.mlp.MLP`).
The deep net here IS that exact construction, not a trained net: training it from random init
is notoriously hard (we also train the same architecture, width 3, from He init with Adam and
report it: it collapses to a constant). A one-hidden-layer ReLU net with n units is piecewise
linear with at most n + 1 pieces, so it needs about 2^k units. The shallow nets ARE trained,
with the benefit of the doubt: kinks inside [0, 1] (evenly spaced at j / n for one candidate,
which for n = 2^k are exactly the sawtooth's kinks; uniform for the others), the least-squares
output layer, then Levenberg-Marquardt on all parameters; the best candidate per width counts.

Bar: at k = 6 the deep net reaches RMS <= 0.05 with at most 1/4 of the parameters of the
smallest shallow net that does.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dl.data.synthetic import sawtooth
from dl.models.approximation import (
    bucket_sweep,
    deep_sawtooth_params,
    errors,
    even_kinks,
    hidden_init,
    lstsq_head,
    one_hidden,
    random_head,
    width_mask,
)
from dl.nn.mlp import MLP
from dl.optim.least_squares import levenberg_marquardt
from dl.optim.optimizers import adam
from dl.optim.schedules import warmup_cosine
from dl.report import Bar, at_most
from dl.train.loop import write_history
from dl.train.state import param_count
from experiments._fields import DATA_DIR, SEED, Float, Int, Tuple

PAPER = {
    "citation": "Cybenko 1989; Hornik 1991 (universal approximation); Telgarsky 2016, "
    "'Benefits of depth in neural networks' (COLT)",
    "claim": "One hidden layer approximates a continuous function arbitrarily well as width "
    "grows; but a k-fold tent-map sawtooth (2^k pieces) needs ~2^k shallow units while "
    "a depth-k ReLU net of width 2 represents it exactly with O(k) parameters.",
    "published": "Telgarsky 2016: a depth-O(k), width-2 ReLU net computes the 2^k-piece "
    "sawtooth exactly; a one-hidden-layer ReLU net with n units has <= n + 1 "
    "pieces, so it needs on the order of 2^k units to approximate it",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "RMS(256 units) <= RMS(1)/10 and RMS(2w) <= 1.25 RMS(w) + 1e-3; sawtooth "
        "k=6: deep params <= 1/4 of the smallest shallow net with RMS <= 0.05",
        "full": "as quick",
    },
}


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # initializations of every net
    c.data_dir = ""  # unused: all targets are closed-form functions
    # Part 1: width sweep.
    c.widths = {  # hidden units of the one-hidden-layer tanh nets
        "smoke": (1, 4, 16),
        "quick": (1, 2, 4, 8, 16, 32, 64, 128, 256),
        "full": (1, 2, 4, 8, 16, 32, 64, 128, 256),
    }[scale]
    c.pad_to = (32, 64, 128, 256)  # nets are padded to the first of these sizes that holds
    # them; each size is one compiled call (padding costs compute,
    # a call costs a compile)
    c.seeds = {"smoke": 1, "quick": 2, "full": 8}[scale]  # per width, this many inits with a
    # least-squares head and as many with a random head; best kept
    c.train_points = 512  # grid on [-2, 2]
    c.eval_points = 4 * 512 + 1  # a 4x denser grid measures the error between training points
    c.lm_steps = {"smoke": 5, "quick": 30, "full": 200}[scale]  # Levenberg-Marquardt, f64
    c.rel_tol = 1.25  # bar: RMS(next width) <= rel_tol * RMS(width) + abs_tol
    c.abs_tol = 1e-3  #      (see the module docstring)
    # Part 2: sawtooth.
    c.k = 3 if scale == "smoke" else 6  # tent-map compositions: 2^6 = 64 linear pieces
    c.target_rms = 0.05  # the error both nets must reach
    c.shallow_widths = {
        "smoke": (4, 8),
        "quick": (16, 32, 48, 56, 60, 62, 63, 64, 96, 128),
        "full": (16, 24, 32, 40, 48, 52, 56, 58, 60, 61, 62, 63, 64, 80, 96, 128, 192, 256),
    }[scale]  # dense just below 2^k, where 0.05 falls
    c.shallow_seeds = {"smoke": 1, "quick": 4, "full": 16}[scale]  # candidates per width
    c.shallow_lm_steps = {"smoke": 5, "quick": 30, "full": 200}[scale]  # LM per candidate
    c.saw_train_points = 513  # grid on [0, 1]: 8 points per linear piece at k = 6, and
    # every kink j / 64 is a grid point
    c.saw_eval_points = 8193  # denser grid for the reported RMS
    c.deep_train_seeds = {"smoke": 2, "quick": 8, "full": 32}[scale]  # the deep net from random
    # init (reported, not the bar): depth k, width deep_train_width
    c.deep_train_width = 3  # one more than the exact net's 2
    c.deep_train_steps = {"smoke": 50, "quick": 3000, "full": 20000}[scale]  # full-batch Adam
    c.deep_train_learning_rate = 3e-3  # peak; cosine-decayed to 0
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "seed": SEED,
    "data_dir": DATA_DIR,
    "widths": Tuple(Int(lo=1), min_len=2, increasing=True),
    "pad_to": Tuple(Int(lo=1), increasing=True),
    "seeds": Int(lo=1),
    "train_points": Int(lo=2),
    "eval_points": Int(lo=2),
    "lm_steps": Int(lo=1),
    "rel_tol": Float(lo=0.0),
    "abs_tol": Float(lo=0.0),
    "k": Int(1, 20),
    "target_rms": Float(lo=0.0, lo_open=True),
    "shallow_widths": Tuple(Int(lo=1), increasing=True),
    "shallow_seeds": Int(lo=1),
    "shallow_lm_steps": Int(lo=1),
    "saw_train_points": Int(lo=2),
    "saw_eval_points": Int(lo=2),
    "deep_train_seeds": Int(lo=1),
    "deep_train_width": Int(lo=2),
    "deep_train_steps": Int(lo=1),
    "deep_train_learning_rate": Float(lo=0.0, lo_open=True),
}


def target(x: jax.Array) -> jax.Array:
    """Part 1's target f(x) = sin(3x) + 0.3 x^2, elementwise."""
    return jnp.sin(3.0 * x) + 0.3 * x * x


def lm_fit(p, mask, x, y, *, activation: str, steps: int) -> dict[str, jax.Array]:
    """`steps` Levenberg-Marquardt iterations on every parameter of a padded one-hidden-layer net
    (masked units have zero gradient and stay out). x, y: [m]."""

    def residual(q, xi, yi):
        return one_hidden(q, xi[None], mask, activation=activation)[0] - yi

    return levenberg_marquardt(p, residual, x, y, steps=steps)[0]


def width_sweep(config) -> dict[str, Any]:
    """Part 1: tanh nets of every width in `config.widths`; candidates 0 .. seeds-1 start from the
    least-squares head, the others from a random head; all then get `lm_steps` of LM."""
    start = time.perf_counter()
    with jax.enable_x64(True):
        x = jnp.linspace(-2.0, 2.0, config.train_points, dtype=jnp.float64)
        x_eval = jnp.linspace(-2.0, 2.0, config.eval_points, dtype=jnp.float64)
        y = target(x)

        def make_one(max_width):
            def one(key, width, candidate):
                mask = width_mask(max_width, width, jnp.float64)
                k_hidden, k_head = jax.random.split(key)
                p = hidden_init(k_hidden, max_width, low=-2.0, high=2.0, positive=False)
                p = jax.tree.map(
                    functools.partial(jnp.where, candidate < config.seeds),
                    lstsq_head(p, mask, x, y, activation="tanh"),
                    random_head(k_head, p, width),
                )
                p = lm_fit(p, mask, x, y, activation="tanh", steps=config.lm_steps)
                return one_hidden(p, x_eval, mask, activation="tanh")

            return one

        out = bucket_sweep(
            config.widths,
            config.pad_to,
            2 * config.seeds,
            make_one,
            jax.random.PRNGKey(config.seed),
            target(x_eval),
        )
    return {**out, "x_eval": np.asarray(x_eval), "time_s": time.perf_counter() - start}


def monotone_ok(errs: np.ndarray, *, rel_tol: float, abs_tol: float) -> bool:
    """True iff errs[i + 1] <= rel_tol * errs[i] + abs_tol for every consecutive pair."""
    errs = np.asarray(errs)
    return bool(np.all(errs[1:] <= rel_tol * errs[:-1] + abs_tol))


def shallow_sweep(config) -> dict[str, Any]:
    """Part 2, shallow side: ReLU nets of every width in `config.shallow_widths`. Candidate 0 has
    evenly spaced kinks, the others uniform ones; all get the least-squares head, then
    `shallow_lm_steps` of LM on every parameter."""
    start = time.perf_counter()
    with jax.enable_x64(True):
        x = jnp.linspace(0.0, 1.0, config.saw_train_points, dtype=jnp.float64)
        x_eval = jnp.linspace(0.0, 1.0, config.saw_eval_points, dtype=jnp.float64)
        y = sawtooth(x, config.k)

        def make_one(max_width):
            def one(key, width, candidate):
                mask = width_mask(max_width, width, jnp.float64)
                p = hidden_init(key, max_width, low=0.0, high=1.0, positive=True)
                p = jax.tree.map(
                    functools.partial(jnp.where, candidate == 0), even_kinks(p, width), p
                )
                p = lstsq_head(p, mask, x, y, activation="relu")
                p = lm_fit(p, mask, x, y, activation="relu", steps=config.shallow_lm_steps)
                return one_hidden(p, x_eval, mask, activation="relu")

            return one

        out = bucket_sweep(
            config.shallow_widths,
            config.pad_to,
            config.shallow_seeds,
            make_one,
            jax.random.PRNGKey(config.seed + 1),
            sawtooth(x_eval, config.k),
        )
    return {
        **out,
        "params": 3 * out["widths"] + 1,
        "x_eval": np.asarray(x_eval),
        "time_s": time.perf_counter() - start,
    }


def deep_sawtooth(config) -> dict[str, Any]:
    """Part 2, deep side: the exact construction, and the same kind of net trained from random
    init (depth k, width `deep_train_width`; reported, not used by the bar)."""
    k = config.k
    x = jnp.linspace(0.0, 1.0, config.saw_train_points, dtype=jnp.float32)
    x_eval = jnp.linspace(0.0, 1.0, config.saw_eval_points, dtype=jnp.float32)
    truth = sawtooth(x_eval, k)
    exact_model = MLP(hidden=(2,) * k, out=1, activation="relu")
    exact = deep_sawtooth_params(k)
    exact_pred = exact_model.apply({"params": exact}, x_eval[:, None])[:, 0]
    exact_rms, exact_max = errors(exact_pred, truth)

    model = MLP(
        hidden=(config.deep_train_width,) * k, out=1, activation="relu", kernel_init="he_normal"
    )  # He et al. 2015: the init for ReLU stacks
    tx = adam(warmup_cosine(config.deep_train_learning_rate, 0, config.deep_train_steps))
    y = sawtooth(x, k)

    def train_one(key):
        params = model.init(key, x[:1, None])["params"]

        def loss(p):
            return jnp.mean(jnp.square(model.apply({"params": p}, x[:, None])[:, 0] - y))

        def step(carry, _):
            p, s = carry
            updates, s = tx.update(jax.grad(loss)(p), s, p)
            return (optax.apply_updates(p, updates), s), None

        (params, _), _ = jax.lax.scan(
            step, (params, tx.init(params)), None, length=config.deep_train_steps
        )
        return model.apply({"params": params}, x_eval[:, None])[:, 0], params

    keys = jax.random.split(jax.random.PRNGKey(config.seed + 2), config.deep_train_seeds)
    trained_pred, trained_params = jax.jit(jax.vmap(train_one))(keys)
    trained_rms, _ = jax.device_get(errors(trained_pred, truth[None]))
    best = int(np.argmin(trained_rms))
    return {
        "exact_params": param_count(exact),
        "exact_rms": float(exact_rms),
        "exact_max": float(exact_max),
        "exact_pred": np.asarray(exact_pred),
        "trained_params": param_count(jax.tree.map(lambda a: a[0], trained_params)),
        "trained_rms_all": trained_rms,
        "trained_rms": float(trained_rms[best]),
        "trained_pred": np.asarray(trained_pred[best]),
        "x_eval": np.asarray(x_eval),
        "truth": np.asarray(truth),
    }


def plot_width(sweep: dict[str, Any], path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    ax.loglog(sweep["widths"], sweep["rms"], "o-", label="RMS error")
    ax.loglog(sweep["widths"], sweep["max"], "s--", label="max error")
    ax.set_xlabel("hidden tanh units")
    ax.set_ylabel("error on the dense grid (best init)")
    ax.set_title("f(x) = sin(3x) + 0.3x^2 on [-2, 2]")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax = axes[1]
    x = sweep["x_eval"]
    ax.plot(x, np.asarray(target(jnp.asarray(x))), "k", lw=2, label="f")
    for i, w in enumerate(sweep["widths"]):
        if w <= 8:
            ax.plot(x, sweep["pred"][i], lw=1, label=f"{w} units")
    ax.set_xlabel("x")
    ax.set_title("fits of the narrow nets")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sawtooth(
    shallow: dict[str, Any], deep: dict[str, Any], k: int, target_rms: float, path: str
) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    x = deep["x_eval"]
    ax.plot(x, deep["truth"], "k", lw=2.5, label=f"t^{k}")
    ax.plot(
        x, deep["exact_pred"], "C2--", lw=1, label=f"deep exact ({deep['exact_params']} params)"
    )
    ax.plot(
        x, deep["trained_pred"], "C3", lw=1, label=f"deep trained ({deep['trained_params']} params)"
    )
    # The widest shallow net that misses the target, and the narrowest that reaches it.
    miss = np.flatnonzero(shallow["rms"] > target_rms)
    hit = np.flatnonzero(shallow["rms"] <= target_rms)
    shown = ([miss[np.argmax(shallow["widths"][miss])]] if miss.size else []) + (
        [hit[np.argmin(shallow["widths"][hit])]] if hit.size else []
    )
    for i in shown:
        ax.plot(
            x,
            shallow["pred"][i],
            lw=1,
            alpha=0.8,
            label=f"shallow {shallow['widths'][i]} units ({shallow['params'][i]} params)",
        )
    ax.set_xlim(0, 0.5)
    ax.set_xlabel("x (left half shown)")
    ax.legend(fontsize=7, loc="lower right")
    ax = axes[1]
    ax.semilogy(shallow["params"], shallow["rms"], "o-", label="shallow ReLU (trained, best init)")
    ax.semilogy(
        [deep["exact_params"]],
        [max(deep["exact_rms"], 1e-8)],
        "C2*",
        ms=12,
        label="deep width 2 (exact construction; RMS 0 drawn at 1e-8)",
    )
    ax.semilogy(
        [deep["trained_params"]],
        [deep["trained_rms"]],
        "C3^",
        ms=9,
        label="deep width 3 (trained, best seed)",
    )
    ax.axhline(target_rms, color="gray", ls=":", label=f"RMS {target_rms}")
    ax.set_xlabel("parameters")
    ax.set_ylabel("RMS error on [0, 1]")
    ax.set_title(f"Telgarsky sawtooth, k = {k} ({2**k} pieces)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    sweep = width_sweep(config)
    shallow = shallow_sweep(config)
    deep = deep_sawtooth(config)
    plot_width(sweep, f"{workdir}/width_error.png")
    plot_sawtooth(shallow, deep, config.k, config.target_rms, f"{workdir}/sawtooth.png")
    # No history (LM and the deep scan keep final values): one row per net at step = its
    # training steps (the best candidate per width; each seed of the trained deep net).
    lm = [
        ("tanh_width", sweep, config.lm_steps),
        ("relu_sawtooth", shallow, config.shallow_lm_steps),
    ]
    for i, (part, out, steps) in enumerate(lm):
        hist = {"rms": out["rms"][:, None], "max_error": out["max"][:, None]}
        labels = {"part": part, "width": out["widths"]}
        write_history(workdir, hist, labels=labels, steps=[steps], append=i > 0)
    hist, labels = {"rms": deep["trained_rms_all"][:, None]}, {"part": "deep_trained"}
    write_history(workdir, hist, labels=labels, steps=[config.deep_train_steps], append=True)

    rms, widths = sweep["rms"], sweep["widths"]
    ok = shallow["rms"] <= config.target_rms
    # If no shallow width reaches the target, the largest one tried bounds the ratio from below.
    smallest = int(shallow["params"][ok].min()) if ok.any() else None
    ratio = (smallest if smallest is not None else int(shallow["params"].max())) / deep[
        "exact_params"
    ]
    metrics: dict[str, Any] = {
        "width_table": [
            {
                "width": int(w),
                "rms": float(r),
                "max_error": float(m),
                "rms_per_candidate": sweep["rms_all"][i].tolist(),
            }
            for i, (w, r, m) in enumerate(zip(sweep["widths"], rms, sweep["max"]))
        ],
        "rms_first_width": float(rms[0]),
        "rms_last_width": float(rms[-1]),
        "rms_ratio_last_first": float(rms[-1] / rms[0]),
        "width_sweep_time_s": sweep["time_s"],
        "sawtooth_table": [
            {
                "width": int(w),
                "params": int(p),
                "rms": float(r),
                "max_error": float(m),
                "rms_per_init": shallow["rms_all"][i].tolist(),
            }
            for i, (w, p, r, m) in enumerate(
                zip(shallow["widths"], shallow["params"], shallow["rms"], shallow["max"])
            )
        ],
        "deep_exact_params": deep["exact_params"],
        "deep_exact_rms": deep["exact_rms"],
        "deep_exact_max_error": deep["exact_max"],
        "deep_trained_params": deep["trained_params"],
        "deep_trained_rms": deep["trained_rms"],
        "deep_trained_rms_per_seed": deep["trained_rms_all"].tolist(),
        "shallow_min_params_at_target": smallest,
        "shallow_over_deep_params": ratio,
        "shallow_reached_target": smallest is not None,
        "shallow_sweep_time_s": shallow["time_s"],
    }
    mono = monotone_ok(rms, rel_tol=config.rel_tol, abs_tol=config.abs_tol)
    metrics["bars"] = [
        at_most(
            f"RMS({widths[-1]} units) / RMS({widths[0]} unit)",
            rms[-1] / rms[0],
            0.1,
            paper="-> 0 as width grows (Cybenko 1989)",
        ),
        Bar(
            f"max over widths of RMS(next) - {config.rel_tol:g} RMS(this)",
            float(np.max(rms[1:] - config.rel_tol * rms[:-1])),
            f"<= {config.abs_tol:g}",
            mono,
            "non-increasing (a wider net contains the narrower ones)",
        ),
        at_most(
            f"deep exact net RMS, k = {config.k}",
            deep["exact_rms"],
            config.target_rms,
            paper="0 (exact, Telgarsky 2016)",
        ),
        Bar(
            f"smallest shallow params at RMS <= {config.target_rms} / deep params",
            ratio,
            ">= 4",
            bool(ratio >= 4.0),
            f"~2^k units vs 6k+1 = {deep['exact_params']} params",
        ),
    ]
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    return metrics
