"""experiments/optimizers_digits.py: smoke run (including the halving rule read back from the
curves), and its per-epoch bookkeeping against plain Python references."""

import json
import math
import os

import hypothesis.strategies as st
import numpy as np
import optax
import pytest
from hypothesis import given, settings

from dl.optim.optimizers import OPTIMIZERS, sgd
from dl.optim.schedules import halve_on_rise, scale_by_plateau_factor
from experiments import optimizers_digits as exp
from experiments._runner import run_experiment

# Each optimizer costs a compile of the train step (about 1 s); three keep the smoke test short.
# All eight are checked against optax in tests/optim and run together at the quick scale.
SMOKE_OPTIMIZERS = ("sgd", "momentum", "adam")


def test_smoke(tmp_path):
    results = run_experiment(
        "optimizers_digits",
        {"optimizers_digits": exp},
        scale="smoke",
        workdir=str(tmp_path),
        overrides=[f"optimizers={SMOKE_OPTIMIZERS!r}"],
    )
    for name in ("config.json", "results.json", "curves.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "optimizers_digits"
    config = exp.get_config("smoke")
    m = results["metrics"]
    names = set(SMOKE_OPTIMIZERS) | {"sgd_halving"}
    assert set(m["table"]) == names == set(m["curves"])
    for name in names:
        assert os.path.getsize(tmp_path / "runs" / name / "metrics.jsonl") > 0
        row, curve = m["table"][name], m["curves"][name]
        acc = np.asarray(curve["val_accuracy"])
        assert acc.shape == (config.num_epochs,)
        assert ((0 <= acc) & (acc <= 1)).all()
        assert all(math.isfinite(v) and v > 0 for v in curve["train_loss"] + curve["val_loss"])
        assert row["best_val_accuracy"] == acc.max()
        assert row["epochs_to_threshold"] == exp.epochs_to_threshold(acc, config.threshold)
    # Two epochs of any optimizer at its default rate get well above chance (10%) on digits.
    assert min(m["table"][n]["best_val_accuracy"] for n in names) > 0.3
    # The halving rule, read back from the curves: one halving per rise of the validation loss.
    val_loss = np.asarray(m["curves"]["sgd_halving"]["val_loss"])
    rises = int((np.diff(val_loss) > 0).sum())
    assert m["table"]["sgd_halving"]["final_rate_factor"] == 0.5**rises
    # Same data, init and rate: until a halving, SGD with the (unit) factor is plain SGD.
    np.testing.assert_allclose(
        m["curves"]["sgd_halving"]["train_loss"][0], m["curves"]["sgd"]["train_loss"][0], rtol=1e-5
    )
    # "k of 8 reach 97%" plus "<= SGD" for each fast method that ran.
    assert len(results["bars"]) == 1 + len(set(exp.FAST_METHODS) & set(SMOKE_OPTIMIZERS))
    assert all(isinstance(b["passed"], bool) for b in results["bars"])


def _first_epoch_reference(accs, threshold):
    for epoch, a in enumerate(accs, start=1):
        if a >= threshold:
            return epoch
    return None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 1), st.sampled_from([0.97, 0.9699999, 1.0])), max_size=20))
def test_epochs_to_threshold_matches_reference(accs):
    assert exp.epochs_to_threshold(accs, 0.97) == _first_epoch_reference(accs, 0.97)


def test_per_epoch_against_numpy():
    rng = np.random.default_rng(0)
    spe, epochs = 3, 4
    losses = rng.uniform(0.1, 2.0, size=spe * epochs)
    history = [{"step": s + 1, "loss": float(l), "grad_norm": 1.0} for s, l in enumerate(losses)]
    evals = [
        {"step": (e + 1) * spe, "val_loss": float(e), "val_accuracy": 0.1 * e}
        for e in range(epochs)
    ]
    # The engine writes an epoch's evaluation after its step rows; order must not matter.
    history = history[::-1] + evals
    out = exp.per_epoch(history, spe, epochs)
    np.testing.assert_allclose(
        out["train_loss"], [losses[e * spe : (e + 1) * spe].mean() for e in range(epochs)]
    )
    np.testing.assert_array_equal(out["val_loss"], np.arange(epochs, dtype=float))
    np.testing.assert_allclose(out["val_accuracy"], 0.1 * np.arange(epochs))
    with pytest.raises(ValueError, match="step rows"):
        exp.per_epoch(history[1:], spe, epochs)


def test_plateau_factor_reads_the_chained_state():
    params = {"w": np.zeros(3, np.float32)}
    state = optax.chain(sgd(0.1), scale_by_plateau_factor()).init(params)
    assert exp.plateau_factor(state) == 1.0
    state = halve_on_rise(state, val_error=0.3, prev_val_error=0.2)
    state = halve_on_rise(state, val_error=0.4, prev_val_error=0.3)
    assert exp.plateau_factor(state) == 0.25
    assert exp.plateau_factor(sgd(0.1).init(params)) is None


def test_config_covers_every_optimizer():
    config = exp.get_config("quick")
    assert set(config.optimizers) == set(OPTIMIZERS) == set(config.learning_rates)
