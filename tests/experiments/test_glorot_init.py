"""glorot_init: the minibatch order, the vmapped SGD grid against a plain Python SGD loop, the
per-layer variances against the paper's linear-regime prediction, and a smoke run."""

import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dl.data.pipeline import ArrayData
from dl.nn.mlp import MLP
from dl.ops.losses import cross_entropy
from experiments import glorot_init as gi
from experiments._runner import run_experiment


def test_minibatch_order_visits_each_example_once_per_epoch():
    order = gi.minibatch_order(23, 5, 13, seed=0)  # 4 steps per epoch, 3 examples dropped
    assert order.shape == (13, 5) and order.dtype == np.int32
    for e in range(3):
        epoch = order[4 * e : 4 * e + 4].ravel()
        assert len(set(epoch.tolist())) == 20 and epoch.max() < 23
    assert not np.array_equal(order[:4], order[4:8])
    np.testing.assert_array_equal(order, gi.minibatch_order(23, 5, 13, seed=0))


def test_train_grid_equals_plain_sgd_per_network(tmp_path):
    rng = np.random.default_rng(0)
    make = lambda n: ArrayData(
        rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, 3, n).astype(np.int32)
    )
    splits = {"train": make(20), "val": make(10), "test": make(10)}
    config = ml_collections.ConfigDict({"batch_size": 4, "num_steps": 6, "eval_every": 3})
    model = MLP(hidden=(5, 5), out=3, activation="tanh", kernel_init="glorot_uniform")
    p0 = jax.jit(model.init)(jax.random.PRNGKey(0), splits["train"].x[:1])["params"]
    lrs = np.array([0.1, 0.5], np.float32)
    stacked = jax.tree.map(lambda p: jnp.stack([p, p]), p0)
    out = gi.train_grid(
        model, stacked, jnp.asarray(lrs), splits, config, seed=3, workdir=str(tmp_path)
    )

    order = gi.minibatch_order(20, 4, 6, seed=3)
    grad = jax.jit(
        jax.grad(lambda p, x, y: cross_entropy(logits=model.apply({"params": p}, x), targets=y))
    )
    for k, lr in enumerate(lrs):
        p, val_errors, val_params = p0, [], []
        for t in range(6):
            idx = order[t]
            g = grad(p, splits["train"].x[idx], splits["train"].y[idx])
            p = jax.tree.map(lambda a, b: a - lr * b, p, g)  # noqa: B023 (called at once)
            if (t + 1) % 3 == 0:
                logits = model.apply({"params": p}, splits["val"].x)
                val_errors.append(float(np.mean(np.argmax(logits, -1) != splits["val"].y)))
                val_params.append(p)
        np.testing.assert_allclose([c[1][k] for c in out["curve"]], val_errors, atol=1e-6)
        assert out["best_val"][k] == min(val_errors)
        # The kept parameters are those of the first evaluation with the lowest validation error.
        kept = val_params[int(np.argmin(val_errors))]
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a[k], b, rtol=1e-4, atol=1e-5),  # noqa: B023 (called at once)
            out["best_params"],
            kept,
        )


def test_linear_regime_variance_prediction_at_init():
    """Glorot & Bengio eq. 8-10 in the linear regime (tanh'(0) = 1, tiny inputs): from one square
    layer to the next, activation variance grows and back-propagated gradient variance shrinks
    (toward the input) by n Var[W]: 1/3 for the standard init, 1 for the normalized one."""
    width, depth, classes = 256, 5, 128  # many classes: gradients span many directions
    rng = np.random.default_rng(0)
    x = 0.01 * rng.normal(size=(400, 64)).astype(np.float32)
    y = rng.integers(0, classes, 400).astype(np.int32)
    for init, factor in (("standard_uniform", 1 / 3), ("glorot_uniform", 1.0)):
        model = MLP(hidden=(width,) * depth, out=classes, activation="tanh", kernel_init=init)
        params = jax.jit(model.init)(jax.random.PRNGKey(1), x[:1])["params"]
        stats = gi.layer_stats_fn(model)(params, x, y)
        np.testing.assert_allclose(stats["grad_var"][:-1] / stats["grad_var"][1:], factor, rtol=0.1)
        np.testing.assert_allclose(stats["act_var"][1:] / stats["act_var"][:-1], factor, rtol=0.1)
        assert stats["act_var"].shape == (depth,) and np.all(np.isfinite(stats["wgrad_var"]))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("glorot_init")
    return workdir, run_experiment(
        "glorot_init", {"glorot_init": gi}, scale="smoke", workdir=str(workdir)
    )


def test_smoke_artifacts(smoke):
    workdir, results = smoke
    for name in (
        "config.json",
        "results.json",
        "activations_init.png",
        "activations_trained.png",
        "gradients_init.png",
        "gradients_trained.png",
        "gradient_variance_init.png",
        "test_error.png",
    ):
        assert os.path.getsize(workdir / name) > 0, name
    with open(workdir / "results.json") as f:
        assert json.load(f)["experiment"] == "glorot_init"
    assert len(results["bars"]) == 3
    # History: every network (activation x init x rate) at every evaluation.
    config = gi.get_config("smoke")
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    nets = len(gi.ACTIVATIONS) * len(gi.INITS) * len(config.learning_rates)
    assert len(rows) == nets * config.num_steps // config.eval_every
    keys = {"step", "model", "activation", "init", "learning_rate", "val_error", "test_error"}
    train = {"loss", "data_loss", "accuracy", "grad_norm", "param_norm", "update_norm"}
    assert set(rows[0]) == keys | train | {"nonfinite_steps"}
    assert rows[-1]["step"] == config.num_steps


def test_smoke_metrics_are_sane(smoke):
    _, results = smoke
    m = results["metrics"]
    depth = gi.get_config("smoke").depth
    assert len(m["table"]) == len(gi.ACTIVATIONS) * len(gi.INITS)
    for row in m["table"]:
        assert 0.0 <= row["test_error_pct"] <= 100.0
        for key in ("grad_var_init", "act_var_init", "grad_var_trained", "act_var_trained"):
            v = np.array(row[key])
            assert v.shape == (depth,) and np.all(np.isfinite(v)) and np.all(v > 0), key
    # At init the normalized tanh network keeps gradients far more even across layers than the
    # standard one (a property of the initializations, not of training).
    assert m["tanh_grad_ratio_normalized"] < m["tanh_grad_ratio_standard"]
    assert math.isfinite(m["tanh_grad_ratio_normalized"])
