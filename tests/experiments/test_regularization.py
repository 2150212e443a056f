"""Smoke test of experiments/regularization.py; its vmapped sweep against the engine's own
sequential steps, its penalized loss against `classifier_loss`, and its helpers against numpy."""

import json
import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np

from dl import data, optim
from dl.nn.mlp import MLP
from dl.objectives.classification import classifier_eval, classifier_loss
from dl.train.step import jit_train_step
from dl.train.supervised import init_state
from experiments import regularization as reg
from experiments._runner import run_experiment


def test_smoke(tmp_path):
    results = run_experiment(
        "regularization", {"regularization": reg}, scale="smoke", workdir=str(tmp_path)
    )
    for name in ("config.json", "results.json", "curves.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "regularization"
    m = results["metrics"]
    assert m["num_train_examples"] == 107
    assert [row["arm"] for row in m["table"]] == list(reg.ARMS)
    for row in m["table"]:
        assert 0.0 <= row["test_accuracy"] <= 1.0 and 0.0 <= row["train_accuracy"] <= 1.0
        assert math.isfinite(row["train_loss"]) and 0.0 <= row["zero_fraction"] <= 1.0
        assert len(row["test_accuracy_per_seed"]) == reg.get_config("smoke").num_seeds
    assert len(results["bars"]) == 4
    # History: the vmapped grid's curves (step = epoch); early stopping's, from fit, per seed.
    config = reg.get_config("smoke")
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    runs = 1 + len(config.l2_grid) + len(config.l1_grid) + len(config.dropout_grid)
    assert len(rows) == runs * config.num_seeds * (config.num_epochs // config.eval_every_epochs)
    curves = {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    assert set(rows[0]) == {"step", "arm", "strength", "seed"} | curves
    assert os.path.getsize(tmp_path / f"early_stopping_seed{config.seed}" / "metrics.jsonl") > 0


def _small_problem(batch_size=16):
    splits = data.load("digits", train_fraction=0.1)
    model = MLP(hidden=(32,), out=10, activation="relu", dropout=0.3)
    return splits, model, batch_size


def test_loader_indices_are_the_engines_batches():
    splits, _, bs = _small_problem()
    train = splits["train"]
    idx, mask = reg.loader_indices(len(train.y), bs, seed=3, num_steps=20)
    loader = data.Loader(train, bs, seed=3)
    for step in range(20):
        batch = loader.batch(step)
        np.testing.assert_array_equal(train.x[idx[step]], batch["x"])
        np.testing.assert_array_equal(train.y[idx[step]], batch["y"])
        np.testing.assert_array_equal(mask[step], batch["mask"])


def test_penalized_loss_equals_classifier_loss_with_the_same_strengths():
    splits, model, bs = _small_problem()
    batch = data.Loader(splits["train"], bs, seed=0).batch(0)
    params = model.init(jax.random.PRNGKey(0), batch["x"])["params"]
    rng = jax.random.PRNGKey(5)
    ours = jax.jit(
        jax.value_and_grad(
            lambda p: reg.penalized_loss(model)(p, {}, batch, rng, l2=1e-2, l1=3e-3)[0]
        )
    )(params)
    theirs = jax.jit(
        jax.value_and_grad(lambda p: classifier_loss(model, l2=1e-2, l1=3e-3)(p, {}, batch, rng)[0])
    )(params)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-6)
    chex.assert_trees_all_close(ours[1], theirs[1], rtol=1e-5, atol=1e-7)


def test_vmapped_sweep_replays_the_engines_sequential_steps():
    # Two arms (different L2, same seed) through make_sweep must equal, arm by arm, the engine's
    # jitted step applied to the Loader's batches one at a time (dropout RNG included).
    splits, model, bs = _small_problem()
    tx = optim.momentum(0.05)
    n = len(splits["train"].y)
    chunks, chunk = 2, 5
    idx, mask = reg.loader_indices(n, bs, seed=1, num_steps=chunks * chunk)
    state = init_state(model, tx, splits["train"].x[:bs], seed=1)
    train = {k: jnp.asarray(v) for k, v in zip(("x", "y"), splits["train"])}
    train["mask"] = jnp.ones(n, jnp.float32)
    val = {k: jnp.asarray(v) for k, v in zip(("x", "y"), splits["val"])}
    val["mask"] = jnp.ones(len(splits["val"].y), jnp.float32)
    l2s = [0.0, 1e-2]
    states, curves = reg.make_sweep(model)(
        jax.tree.map(lambda a: jnp.stack([a, a]), state),
        jnp.asarray(np.stack([idx, idx]).reshape(2, chunks, chunk, bs)),
        jnp.asarray(np.stack([mask, mask]).reshape(2, chunks, chunk, bs)),
        jnp.asarray(l2s, jnp.float32),
        jnp.zeros(2, jnp.float32),
        train,
        val,
    )
    loader = data.Loader(splits["train"], bs, seed=1)
    evaluate = classifier_eval(model)
    for arm, l2 in [(1, l2s[1])]:  # the penalized arm; arm 0 must differ from it (below)
        step = jit_train_step(classifier_loss(model, l2=l2))
        s = init_state(model, tx, splits["train"].x[:bs], seed=1)
        for t in range(chunks * chunk):
            s, _ = step(s, loader.batch(t))
        jax.tree.map(
            lambda a, b, arm=arm: np.testing.assert_allclose(a[arm], b, rtol=2e-5, atol=2e-6),
            states.params,
            s.params,
        )
        sums = evaluate(s.params, s.extra, val)
        np.testing.assert_allclose(
            curves["val_accuracy"][arm, -1], sums["accuracy"] / sums["count"], atol=1e-6
        )
    assert not np.allclose(states.params["head"]["kernel"][0], states.params["head"]["kernel"][1])


def test_zero_fraction_counts_kernels_only():
    params = {
        "dense_0": {"kernel": np.array([[0.0, 5e-4], [2e-3, -1.0]]), "bias": np.zeros(2)},
        "head": {"kernel": np.array([[-1e-4], [0.5]]), "bias": np.zeros(1)},
    }
    # Kernel entries: 0, 5e-4, 2e-3, -1, -1e-4, 0.5 -> three below 1e-3; biases are ignored.
    assert reg.zero_fraction(params, 1e-3) == 0.5
    assert reg.zero_fraction(params, 1e-5) == 1.0 / 6.0


def test_select_takes_the_best_mean_validation_accuracy_and_the_weaker_on_ties():
    def run(strength, val, seed):
        return {
            "arm": "l2",
            "strength": strength,
            "seed": seed,
            "val_accuracy": np.array([0.0, val]),
        }

    # Exactly representable accuracies, so that the tie below is exact.
    runs = [
        run(1e-4, 0.5, 0),
        run(1e-4, 0.75, 1),
        run(1e-3, 0.25, 0),
        run(1e-3, 1.0, 1),
        run(1e-2, 0.125, 0),
        run(1e-2, 0.125, 1),
        {"arm": "l1", "strength": 1.0, "seed": 0, "val_accuracy": np.array([1.0])},
    ]
    best, chosen = reg.select(runs, "l2")
    assert best == 1e-4 and [r["seed"] for r in chosen] == [0, 1]  # 0.625 ties: weaker wins
    runs[0]["val_accuracy"] = np.array([0.0, 0.25])
    assert reg.select(runs, "l2")[0] == 1e-3
