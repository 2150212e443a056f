"""Nets on scalar inputs for function-approximation experiments, as pure functions.

One-hidden-layer nets g(x) = sum_j v_j act(w_j x + b_j) + c (Cybenko 1989; Hornik 1991) are
padded to a fixed width with a 0/1 mask on the units, so nets of many widths share one shape
and `bucket_sweep` trains a whole width sweep in a few compiled, vmapped calls. Parameters are
a dict w, b, v: [max_width]; c: [] (`hidden_init` draws them; `random_head` or `lstsq_head` sets
the output layer). `deep_sawtooth_params` is Telgarsky's (2016) exact deep ReLU net for
`dl.data.synthetic.sawtooth`, written as parameters of `dl.nn.mlp.MLP`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from dl.ops.activations import get_activation

Params = dict[str, jax.Array]


def width_mask(max_width: int, width: jax.Array, dtype=jnp.float32) -> jax.Array:
    """[max_width]: 1 on the first `width` units, 0 on the padding."""
    return (jnp.arange(max_width, dtype=width.dtype) < width).astype(dtype)


def one_hidden(params: Params, x: jax.Array, mask: jax.Array, *, activation: str) -> jax.Array:
    """g(x) = sum_j mask_j v_j act(w_j x + b_j) + c, a one-hidden-layer net on scalar inputs.

    params: w, b, v: [n]; c: []. x: [m]; mask: [n] in {0, 1} (which of the n padded units exist).
    Returns [m]. With mask = 1 on the first `width` units it equals `MLP(hidden=(width,), out=1)`
    with kernels w, v and biases b, c.
    """
    _check_net(params, mask)
    chex.assert_rank(x, 1, custom_message="one_hidden x: [m] scalar inputs")
    act = get_activation(activation)
    h = act(x[:, None] * params["w"] + params["b"])
    out = h @ (mask * params["v"]) + params["c"]
    chex.assert_shape(out, x.shape)
    return out


def _check_net(params: Params, mask: jax.Array) -> None:
    """w, b, v, mask: [n]; c: [] (the padded one-hidden-layer net's parameters)."""
    chex.assert_rank(mask, 1)
    chex.assert_shape([params["w"], params["b"], params["v"]], mask.shape)
    chex.assert_rank(params["c"], 0)


def hidden_init(
    key: jax.Array, max_width: int, *, low: float, high: float, positive: bool, dtype=jnp.float64
) -> Params:
    """Hidden units w_j ~ N(0, 1) (LeCun normal for fan_in 1; |w_j| if `positive`) centred at
    c_j ~ U[low, high] (b_j = -w_j c_j: tanh's midpoint or ReLU's kink inside the domain); the
    output layer (v, c) is zero, to be set by `lstsq_head` or `random_head`."""
    kw, kc = jax.random.split(key)
    w = jax.random.normal(kw, (max_width,), dtype)
    w = jnp.abs(w) if positive else w
    centres = jax.random.uniform(kc, (max_width,), dtype, low, high)
    return {
        "w": w,
        "b": -w * centres,
        "v": jnp.zeros((max_width,), dtype),
        "c": jnp.zeros((), dtype),
    }


def random_head(key: jax.Array, params: Params, width: jax.Array) -> Params:
    """v ~ N(0, 1/width) (LeCun normal, fan_in = width), c = 0: as `MLP` initializes its head."""
    v = jax.random.normal(key, params["v"].shape, params["v"].dtype)
    return {**params, "v": v / jnp.sqrt(width.astype(v.dtype))}


def lstsq_head(
    params: Params, mask: jax.Array, x: jax.Array, y: jax.Array, *, activation: str
) -> Params:
    """The least-squares output layer (v, c) for fixed hidden units: a convex problem, solved
    exactly (SVD; masked units give zero columns and get v = 0). x, y: [m]."""
    _check_net(params, mask)
    chex.assert_rank(x, 1)
    chex.assert_equal_shape([x, y])
    h = get_activation(activation)(x[:, None] * params["w"] + params["b"]) * mask
    design = jnp.concatenate([h, jnp.ones((x.shape[0], 1), h.dtype)], axis=1)
    coef = jnp.linalg.lstsq(design, y)[0]
    return {**params, "v": coef[:-1] * mask, "c": coef[-1]}


def even_kinks(params: Params, width: jax.Array) -> Params:
    """Moves the kinks of the first `width` ReLU units to j / width, j = 0 .. width - 1 (w > 0):
    with width = 2^k these are exactly the sawtooth's kinks, so least squares fits it exactly."""
    n = params["w"].shape[0]
    kinks = jnp.arange(n, dtype=params["w"].dtype) / width.astype(params["w"].dtype)
    return {**params, "b": -params["w"] * kinks}


def errors(prediction: jax.Array, truth: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(RMS, max absolute) error over a grid; prediction, truth: [..., m]."""
    diff = prediction - truth
    return jnp.sqrt(jnp.mean(jnp.square(diff), axis=-1)), jnp.max(jnp.abs(diff), axis=-1)


def bucket_sweep(
    widths: np.ndarray,
    pad_to: Sequence[int],
    candidates: int,
    make_one: Callable[[int], Callable[..., jax.Array]],
    key: jax.Array,
    truth: jax.Array,
) -> dict[str, Any]:
    """Trains `candidates` nets per width and keeps the best by RMS on the evaluation grid.

    Widths are padded to the first size in `pad_to` that holds them; each size is one compiled
    call, vmapped over its (width, candidate) pairs. `make_one(max_width)` returns
    `one(key, width, candidate) -> predictions [m_eval]`; `truth`: [m_eval].
    Returns rms, max: [W]; rms_all: [W, candidates]; pred: [W, m_eval] (the best candidate's).
    """
    widths = np.asarray(widths)
    bucket = np.array([min(b for b in pad_to if b >= w) for w in widths])
    rms_all = np.zeros((len(widths), candidates))
    max_all = np.zeros((len(widths), candidates))
    preds = np.zeros((len(widths), candidates, truth.shape[0]))
    for size in sorted(set(bucket.tolist())):
        rows = np.flatnonzero(bucket == size)
        keys = jax.random.split(jax.random.fold_in(key, size), len(rows) * candidates)
        pred = jax.jit(jax.vmap(make_one(size)))(
            keys,
            jnp.asarray(np.repeat(widths[rows], candidates), jnp.int32),
            jnp.asarray(np.tile(np.arange(candidates), len(rows)), jnp.int32),
        )
        rms, mx = errors(pred, truth[None])
        rms_all[rows] = np.asarray(rms).reshape(len(rows), candidates)
        max_all[rows] = np.asarray(mx).reshape(len(rows), candidates)
        preds[rows] = np.asarray(pred).reshape(len(rows), candidates, -1)
    best = rms_all.argmin(axis=1)
    idx = np.arange(len(widths))
    return {
        "widths": widths,
        "rms_all": rms_all,
        "rms": rms_all[idx, best],
        "max": max_all[idx, best],
        "pred": preds[idx, best],
    }


def deep_sawtooth_params(k: int) -> dict[str, Any]:
    """Parameters of `MLP(hidden=(2,) * k, out=1, activation="relu")` that compute t^k exactly on
    [0, 1] (Telgarsky 2016), from t(x) = 2 relu(x) - 4 relu(x - 1/2) there: layer 1 gives
    (relu(x), relu(x - 1/2)); every later layer takes z = 2 h_1 - 4 h_2 (= t of the previous
    layer's input) and gives (relu(z), relu(z - 1/2)); the head outputs 2 h_1 - 4 h_2.
    6k + 1 parameters, float32."""
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    params = {"dense_0": {"kernel": f32([[1.0, 1.0]]), "bias": f32([0.0, -0.5])}}
    for i in range(1, k):
        params[f"dense_{i}"] = {"kernel": f32([[2.0, 2.0], [-4.0, -4.0]]), "bias": f32([0.0, -0.5])}
    params["head"] = {"kernel": f32([[2.0], [-4.0]]), "bias": f32([0.0])}
    return params
