"""Exploding and vanishing gradients through time (Bengio, Simard & Frasconi 1994; Pascanu,
Mikolov & Bengio 2013): ||ds_T/ds_k|| against the distance T - k for linear, tanh, LSTM and GRU
recurrences, at initialization and after training on the adding problem.

Run:    python run.py bptt_gradients --scale quick
Expect: quick (H = 32) on a 2-core CPU: about 47 s of CPU time (user 46 s + sys 1.4 s; 62 s
        wall at load average ~7). Spectral norm at T - k = 50, geometric mean of 8 sequences:
        linear 0.9 -> 0.00515, 1.1 -> 117.4 (max relative error to rho^(T-k) over 0..50 below
        2e-6: the bar, <= 10%, passes); at init tanh 1.8e-14, LSTM 8.3e-4, GRU 5.0e-5, so
        LSTM / tanh = 4.7e10 (bar >= 100, passes). After 600 Adam steps on the adding
        problem at T = 50 (test MSE tanh 0.163, LSTM 0.064, GRU 0.0009): tanh 5.3e-10,
        LSTM 3.0, GRU 1.03: training pushes the gated cells to norm ~1 over 50 steps.

An RNN unrolled over T steps is a T-layer deep net with tied weights, so the gradient reaching
step k is multiplied by the Jacobian ds_T/ds_k = J_{T-1} ... J_k, J_t = ds_{t+1}/ds_t. Here
s_t is a cell's FULL state (its carry): h for the linear, tanh and GRU cells, the
concatenation (h, c) for the LSTM, so the LSTM's norm covers every path from (h_k, c_k) to
(h_T, c_T), the constant error carousel c included. The norm is the spectral norm (largest
singular value; `norm="frobenius"` switches), computed on the states the cell visits while
reading an adding-problem sequence (`dl.data.sequences.adding`) from the zero state, and
summarized over `num_sequences` sequences by the geometric mean (the mean of log-norms).

* linear: s' = s W + x U with W = rho Q, Q a random orthogonal matrix, so ds_T/ds_k = W^(T-k)
  and its spectral norm is exactly rho^(T-k): 0.9 vanishes, 1.1 explodes (Pascanu et al.
  2013, sec. 2.1: rho < 1 is sufficient for vanishing, rho > 1 necessary for exploding). The
  bar checks our Jacobian products against this closed form.
* tanh: Elman RNN with PyTorch's init; diag(tanh') W^T shrinks the gradient at every step.
* lstm, gru: the cells of `dl.nn.recurrent` (forget / update bias 1): their additive paths
  (c' = f c + ..., h' = u h + ...) keep the product's norm near the gates' values.

The Jacobian of each step is `jax.jacfwd` of the cell's step; the products are accumulated by
a reverse `lax.scan` (`jacobian_norms`), which is checked against `jax.jacrev` of the unrolled
map s_k -> s_T and against matrix powers in tests/experiments/test_bptt_gradients.py.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.flatten_util import ravel_pytree

from dl.data.sequences import adding
from dl.report import at_least, at_most, plots
from experiments import adding_problem
from experiments._fields import SEED, Bool, Check, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Bengio, Simard & Frasconi 1994; Hochreiter & Schmidhuber 1997; Pascanu, "
    "Mikolov & Bengio 2013 (sec. 2-3)",
    "claim": "Backpropagated gradients shrink or grow geometrically with the distance in time "
    "(as rho^(T-k) for a linear RNN with spectral radius rho); gated cells keep them far larger "
    "than a tanh RNN over long distances.",
    "published": "qualitative: ||dh_T/dh_k|| <= (gamma * lambda_1)^(T-k) (Pascanu et al. 2013, "
    "eq. 7); exact rho^(T-k) for a scaled orthogonal linear recurrence",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "linear RNN norm within 10% of rho^(T-k) for T-k <= 50 (rho = 0.9, 1.1); LSTM "
        "norm >= 100 x the tanh RNN's at T-k = 50 at initialization",
        "full": "as quick",
    },
}

TRAINED_ARMS = ("tanh", "lstm", "gru")  # cells of experiments.adding_problem measured here
NORMS = ("spectral", "frobenius")


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # cells' init, the orthogonal matrices and the probe sequences
    c.hidden = {"smoke": 8, "quick": 32, "full": 128}[scale]  # state size H (paper: 128)
    c.max_distance = {"smoke": 12, "quick": 100, "full": 200}[scale]  # largest T - k measured
    c.bar_distance = {"smoke": 10, "quick": 50, "full": 50}[scale]  # T - k of the bars
    c.num_sequences = {"smoke": 2, "quick": 8, "full": 32}[scale]  # probe sequences (geo-mean)
    c.rhos = (0.9, 1.0, 1.1)  # spectral radii of the linear RNNs
    c.norm = "spectral"  # Jacobian norm: "spectral" (largest singular value) or "frobenius"
    c.arms = TRAINED_ARMS  # nonlinear cells, measured at init and after training
    # Short training on the adding problem (experiments.adding_problem's loop), one seed per
    # cell; T = train_length. 0 steps skips the "after training" curves.
    c.train_length = {"smoke": 10, "quick": 50, "full": 100}[scale]
    c.train_steps = {"smoke": 10, "quick": 600, "full": 5000}[scale]
    c.train_batch = {"smoke": 8, "quick": 32, "full": 50}[scale]  # sequences per step
    c.learning_rate = {"smoke": 1e-3, "quick": 5e-3, "full": 1e-3}[scale]  # Adam's eta
    c.clip_norm = 1.0  # global-norm clipping while training
    c.unroll = 1  # scan unroll while training (speed only; 1 is fastest on CPU)
    c.progress = scale != "smoke"  # progress bars (off in the smoke tests)
    return c


FIELDS = {
    "seed": SEED,
    "hidden": Int(lo=1),
    "max_distance": Int(lo=1),
    "bar_distance": Int(lo=1),
    "num_sequences": Int(lo=1),
    "rhos": Tuple(Float(lo=0.0, lo_open=True)),
    "norm": Choice(NORMS),
    "arms": Tuple(Choice(TRAINED_ARMS)),
    "train_length": Int(lo=2),
    "train_steps": Int(lo=0),
    "train_batch": Int(lo=1),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "clip_norm": Float(lo=0.0, lo_open=True),
    "unroll": Int(lo=1),
    "progress": Bool(),
}

CHECKS = [
    Check(("bar_distance", "max_distance"), lambda b, m: b <= m, "be at most max_distance"),
]


def matrix_norm(m: jax.Array, norm: str) -> jax.Array:
    """[D, D] -> []: the spectral norm (largest singular value) or the Frobenius norm."""
    if norm == "spectral":
        return jnp.linalg.svd(m, compute_uv=False)[0]
    if norm == "frobenius":
        return jnp.sqrt(jnp.sum(m * m))
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def jacobian_products(step: Callable, s0: jax.Array, xs: jax.Array) -> jax.Array:
    """ds_T/ds_{T-d} for d = 0..T along the trajectory s_{t+1} = step(s_t, x_t).

    step: (s [D], x [in]) -> s' [D]; s0: [D]; xs: [T, in]. Returns P [T + 1, D, D] with
    P[d] = J_{T-1} J_{T-2} ... J_{T-d} (column convention: ds_T = P[d] ds_{T-d}), P[0] = I,
    where J_t = d step(s_t, x_t) / d s_t is `jax.jacfwd` of one step.
    """

    def forward(s, x):
        return step(s, x), s

    _, visited = jax.lax.scan(forward, s0, xs)  # s_0 .. s_{T-1}
    jacobians = jax.vmap(jax.jacfwd(step))(visited, xs)  # [T, D, D]

    def back(p, j):
        p = p @ j
        return p, p

    eye = jnp.eye(s0.shape[0], dtype=s0.dtype)
    _, ps = jax.lax.scan(back, eye, jacobians, reverse=True)  # ps[t] = ds_T / ds_t
    return jnp.concatenate([eye[None], ps[::-1]], axis=0)


def jacobian_norms(step: Callable, s0: jax.Array, xs: jax.Array, norm: str) -> jax.Array:
    """[T + 1]: ||ds_T/ds_{T-d}|| for d = 0..T (see `jacobian_products`)."""
    products = jacobian_products(step, s0, xs)
    return jax.vmap(functools.partial(matrix_norm, norm=norm))(products)


def flat_step(cell, params: Any) -> tuple[Callable, jax.Array]:
    """A cell's one-step map on its carry raveled into one vector [D] (LSTM: [h, c], D = 2H),
    and the zero state, in the parameters' dtype."""
    dtype = jax.tree.leaves(params)[0].dtype
    s0, unravel = ravel_pytree(cell.initialize_carry((), dtype))

    def step(s, x):
        carry, _ = cell.apply({"params": params}, unravel(s), x)
        return ravel_pytree(carry)[0]

    return step, s0


def linear_weights(key: jax.Array, hidden: int, rho: float) -> tuple[jax.Array, jax.Array]:
    """W = rho Q (Q orthogonal, from the QR of a Gaussian) [H, H] and U ~ N(0, 1/2) [2, H]."""
    k_w, k_u = jax.random.split(key)
    q, r = jnp.linalg.qr(jax.random.normal(k_w, (hidden, hidden)))
    w = rho * q * jnp.sign(jnp.diagonal(r))  # the sign fix makes Q Haar-distributed
    return w, jax.random.normal(k_u, (2, hidden)) / math.sqrt(2.0)


def linear_step(w: jax.Array, u: jax.Array) -> tuple[Callable, jax.Array]:
    """s' = s W + x U in row-vector form, so J_t = W^T and, for W = rho Q, ||(W^T)^d||_2 =
    rho^d exactly; and the zero state."""

    def step(s, x):
        return s @ w + x @ u

    return step, jnp.zeros((w.shape[0],), w.dtype)


def _norms(step: Callable, s0: jax.Array, xs: jax.Array, norm: str) -> jax.Array:
    return jax.vmap(lambda x: jacobian_norms(step, s0, x, norm))(xs)


@functools.partial(jax.jit, static_argnames="norm")
def linear_norms(w: jax.Array, u: jax.Array, xs: jax.Array, *, norm: str) -> jax.Array:
    """xs [n, T, in] -> [n, T + 1] norms of the linear RNN (W, U); one compile for all rho."""
    return _norms(*linear_step(w, u), xs, norm)


@functools.partial(jax.jit, static_argnames=("cell", "norm"))
def cell_norms(cell, params: Any, xs: jax.Array, *, norm: str) -> jax.Array:
    """xs [n, T, in] -> [n, T + 1] norms of `cell` with `params`; one compile per cell."""
    return _norms(*flat_step(cell, params), xs, norm)


def geometric_mean(norms: jax.Array) -> np.ndarray:
    """[n, T + 1] -> [T + 1]: exp(mean over sequences of log norm), in float64."""
    return np.exp(np.mean(np.log(np.asarray(norms, np.float64)), axis=0))


def trained_cell_params(config, arm: str, workdir: str) -> tuple[Any, float]:
    """(cell parameters, final test MSE) of one `arm` model after `train_steps` on the adding
    problem (`experiments.adding_problem.train_arm`, one seed)."""
    c = adding_problem.get_config("quick")
    c.seed = config.seed
    c.length, c.hidden, c.num_seeds = config.train_length, config.hidden, 1
    c.batch_size, c.num_steps = config.train_batch, config.train_steps
    c.learning_rate, c.clip_norm, c.unroll = config.learning_rate, config.clip_norm, config.unroll
    c.test_size, c.chunk_steps = 500, max(config.train_steps // 4, 1)
    c.checkpoint_every_chunks, c.progress = 0, config.progress
    r = adding_problem.train_arm(c, arm, workdir, name=f"train_{arm}")
    return jax.tree.map(lambda a: a[0], r["params"]["cell"]), float(r["test_mse"][0, -1])


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(metrics_path):
        os.remove(metrics_path)  # each training run appends its rows
    key = jax.random.PRNGKey(config.seed)
    k_probe, k_linear, k_cells = jax.random.split(key, 3)
    xs, _ = adding(k_probe, batch=config.num_sequences, length=config.max_distance)
    distance = np.arange(config.max_distance + 1)
    curves: dict[str, np.ndarray] = {}
    for i, rho in enumerate(config.rhos):
        w, u = linear_weights(jax.random.fold_in(k_linear, i), config.hidden, rho)
        curves[f"linear rho={rho:g}"] = geometric_mean(linear_norms(w, u, xs, norm=config.norm))
    metrics: dict[str, Any] = {"norm": config.norm}
    for i, arm in enumerate(config.arms):
        cell = adding_problem.make_cell(arm, config.hidden)
        params = cell.init(jax.random.fold_in(k_cells, i), cell.initialize_carry(()), xs[0, 0])
        norms = cell_norms(cell, params["params"], xs, norm=config.norm)
        curves[f"{arm} init"] = geometric_mean(norms)
        if config.train_steps:
            trained, mse = trained_cell_params(config, arm, workdir)
            metrics[f"{arm}_trained_adding_mse"] = mse
            norms = cell_norms(cell, trained, xs, norm=config.norm)
            curves[f"{arm} trained"] = geometric_mean(norms)

    plots.curves(
        {name: (distance, c) for name, c in curves.items()},
        f"{workdir}/jacobian_norms.png",
        xlabel="T - k (steps back in time)",
        ylabel=f"||ds_T/ds_k|| ({config.norm}, geometric mean)",
        logy=True,
        title=f"gradient norm through time, H = {config.hidden}",
    )
    d = config.bar_distance
    metrics["bar_distance"] = d
    metrics["curves"] = {name: c.tolist() for name, c in curves.items()}
    bars = []
    for rho in config.rhos:
        c = curves[f"linear rho={rho:g}"]
        # Spectral: exactly rho^d; Frobenius: rho^d sqrt(H) (all H singular values are rho^d).
        expected = rho ** distance[: d + 1] * (
            math.sqrt(config.hidden) if config.norm != "spectral" else 1.0
        )
        err = float(np.max(np.abs(c[: d + 1] / expected - 1.0)))
        metrics[f"linear_{rho:g}_norm_at_bar"] = float(c[d])
        metrics[f"linear_{rho:g}_max_rel_error"] = err
        if rho != 1.0:
            bars.append(
                at_most(
                    f"linear rho={rho:g}: max |norm / rho^(T-k) - 1|, T-k <= {d}",
                    err,
                    0.1,
                    paper=f"rho^(T-k) (rho^{d} = {rho**d:.3g})",
                )
            )
    for name, c in curves.items():
        if not name.startswith("linear"):
            metrics[f"{name.replace(' ', '_')}_norm_at_bar"] = float(c[d])
    if "lstm" in config.arms and "tanh" in config.arms:
        ratio = float(curves["lstm init"][d] / curves["tanh init"][d])
        metrics["lstm_over_tanh_at_init"] = ratio
        bars.append(
            at_least(
                f"LSTM / tanh RNN Jacobian norm at T-k = {d}, at init",
                ratio,
                100.0,
                paper="LSTM bridges long lags (Hochreiter & Schmidhuber 1997)",
            )
        )
    metrics["bars"] = bars
    for k, v in metrics.items():
        if isinstance(v, float):
            print(f"  {k}: {v:.4g}")
    return metrics
