"""experiments/digits_mlp.py: a smoke run, and its vmapped seeds against separate single-seed runs
of the engine's own jitted step (init, dropout keys, data order and schedule included)."""

import json
import os

import jax
import numpy as np
import pytest

from dl import data
from dl.objectives.classification import classifier_loss
from dl.train.step import jit_train_step
from dl.train.supervised import init_state
from experiments import digits_mlp
from experiments._runner import UsageError, build_config, run_experiment


def test_smoke(tmp_path):
    # scikit-learn on, with a few iterations per fit, so that the bars are built too.
    results = run_experiment(
        "digits_mlp",
        {"digits_mlp": digits_mlp},
        scale="smoke",
        workdir=str(tmp_path),
        overrides=["sklearn=True", "sklearn_max_iter=5"],
    )
    for name in ("config.json", "results.json", "curves.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "digits_mlp"
    config = digits_mlp.get_config("smoke")
    n = config.num_seeds
    m = results["metrics"]
    assert m["seeds"] == list(range(config.seed, config.seed + n)) and m["num_seeds"] == n
    for side in ("test_accuracy", "best_val_params_test_accuracy", "sklearn_test_accuracy"):
        per_seed = m[f"{side}_per_seed"]
        assert len(per_seed) == n and all(0.0 <= a <= 1.0 for a in per_seed)
        np.testing.assert_allclose(m[side], np.mean(per_seed), rtol=1e-12)
        np.testing.assert_allclose(m[f"{side}_std"], np.std(per_seed, ddof=1), rtol=1e-9)
    assert m["test_accuracy"] > 0.5  # two epochs of Adam already classify most digits
    # One row per seed per evaluation, labelled with its seed, with the engine's metrics.
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == n * config.num_epochs // config.eval_every_epochs
    assert {r["seed"] for r in rows} == set(m["seeds"])
    assert {"step", "model", "loss", "grad_norm", "val_loss", "val_accuracy"} <= set(rows[0])
    bars = results["bars"]
    assert len(bars) == 2 and all("±" in b["name"] and f"{n} seeds" in b["name"] for b in bars)
    np.testing.assert_allclose(bars[0]["ours"], m["test_accuracy"])
    np.testing.assert_allclose(bars[1]["ours"], m["test_accuracy"] - m["sklearn_test_accuracy"])


def test_init_seeds_is_init_state():
    config = digits_mlp.get_config("smoke")
    model = digits_mlp.MLP(hidden=tuple(config.hidden), out=10, dropout=config.dropout)
    x = data.load("digits")["train"].x[: config.batch_size]
    params, keys = digits_mlp.init_seeds(model, x, np.arange(3, 5))
    for i, seed in enumerate(range(3, 5)):
        state = init_state(model, digits_mlp.optim.adam(1e-3), x, seed=seed)
        np.testing.assert_array_equal(keys[i], state.rng)
        jax.tree.map(lambda a, b, i=i: np.testing.assert_array_equal(a[i], b), params, state.params)


def test_vmapped_seeds_equal_separate_engine_runs(tmp_path):
    # The 5 seeds trained as one vmapped sweep must equal 5 runs of the engine's jitted step, one
    # seed at a time on the Loader's batches: same init, dropout keys, data order and (cosine)
    # schedule; two epochs, so the state also crosses a chunk boundary of the sweep.
    config = digits_mlp.get_config("smoke")
    config.update(num_seeds=5, num_epochs=2, progress=False)
    assert config.lr_schedule == "cosine" and config.dropout > 0
    splits = data.load("digits")
    res = digits_mlp.train_seeds(config, splits, str(tmp_path))
    train = splits["train"]
    loader_steps = data.Loader(train, config.batch_size, seed=0).steps_per_epoch
    num_steps = config.num_epochs * loader_steps
    model = res["model"]
    step = jit_train_step(classifier_loss(model, l2=config.l2))
    for i, seed in enumerate(res["seeds"]):
        tx = digits_mlp.make_tx(config.learning_rate, config.lr_schedule, num_steps)
        state = init_state(model, tx, train.x[: config.batch_size], seed=int(seed))
        loader = data.Loader(train, config.batch_size, seed=int(seed))
        losses = []
        for t in range(num_steps):
            state, metrics = step(state, loader.batch(t))
            losses.append(float(metrics["loss"]))
        jax.tree.map(
            lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=2e-5, atol=2e-6),
            res["params"],
            state.params,
        )
        epoch_means = np.mean(np.reshape(losses, (config.num_epochs, loader_steps)), axis=1)
        np.testing.assert_allclose(res["history"]["loss"][i], epoch_means, rtol=1e-5)
    # The seeds differ from one another (their keys and data orders really are per seed).
    p = res["params"]["head"]["kernel"]
    assert not np.allclose(p[0], p[1])


def test_checkpoint_every_must_fall_between_evaluations(tmp_path):
    bad = ["eval_every_epochs=2", "checkpoint_every_epochs=3"]
    with pytest.raises(UsageError, match="multiple of eval_every_epochs"):  # run.py: before running
        build_config(digits_mlp, scale="smoke", overrides=bad)
    config = digits_mlp.get_config("smoke")
    config.update(eval_every_epochs=2, checkpoint_every_epochs=3)
    with pytest.raises(ValueError, match="multiple of eval_every_epochs"):  # called directly
        digits_mlp.train_seeds(config, data.load("digits"), str(tmp_path))
    build_config(digits_mlp, scale="smoke", overrides=["eval_every_epochs=2"])  # 10 is fine


def test_mean_std_and_format():
    assert digits_mlp.mean_std([0.97, 0.98]) == pytest.approx((0.975, np.std([0.97, 0.98], ddof=1)))
    assert digits_mlp.mean_std([0.9]) == (0.9, 0.0)
    assert digits_mlp.pm([0.97, 0.98]) == "97.50 ± 0.71%"
