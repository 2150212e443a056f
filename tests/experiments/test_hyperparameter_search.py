"""experiments/hyperparameter_search.py: the search designs, the selection rule, and a smoke run."""

import json
import math
import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dl import data
from experiments import hyperparameter_search as hs
from experiments._runner import run_experiment


def test_grid_is_a_logspace_grid():
    config = hs.get_config("smoke")
    lo = np.array([config.log10_learning_rate[0], config.log10_l2[0]])
    hi = np.array([config.log10_learning_rate[1], config.log10_l2[1]])
    points = hs.grid_points(config, lo, hi)
    # What a practitioner writes: np.logspace per axis, every pair, learning rate major.
    lrs = np.logspace(*config.log10_learning_rate, 4)
    l2s = np.logspace(*config.log10_l2, 4)
    expected = [(math.log10(a), math.log10(b)) for a in lrs for b in l2s]
    np.testing.assert_allclose(points, expected, atol=1e-12)
    assert len(np.unique(points[:, 0])) == 4


def test_random_points_fill_the_box_with_distinct_values():
    config = hs.get_config("quick")
    for shifted in (False, True):
        lo, hi = hs.search_box(config, 3, shifted=shifted)
        pts = hs.random_points(config, 3, lo, hi)
        assert pts.shape == (config.trials, 2)
        assert (pts >= lo).all() and (pts <= hi).all()
        assert len(np.unique(pts[:, 0])) == config.trials
    # Both boxes use the same uniform draws: the shifted points are the fixed ones moved.
    fixed = hs.random_points(config, 3, *hs.search_box(config, 3, shifted=False))
    lo, hi = hs.search_box(config, 3, shifted=True)
    np.testing.assert_allclose(
        hs.random_points(config, 3, lo, hi) - fixed,
        np.broadcast_to(lo - hs.search_box(config, 3, False)[0], fixed.shape),
    )


def test_box_shift_is_at_most_half_a_grid_spacing():
    config = hs.get_config("quick")
    lo0, hi0 = hs.search_box(config, 0, shifted=False)
    spacing = (hi0 - lo0) / 3
    shifts = np.array([hs.search_box(config, s, shifted=True)[0] - lo0 for s in range(200)])
    assert (np.abs(shifts) <= spacing / 2).all()
    # Spread over the whole half-spacing either way, not stuck at one alignment.
    assert (shifts.min(0) < -0.4 * spacing).all() and (shifts.max(0) > 0.4 * spacing).all()
    for s in range(5):  # the width of the box never changes
        lo, hi = hs.search_box(config, s, shifted=True)
        np.testing.assert_allclose(hi - lo, hi0 - lo0)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([0.1, 0.5, np.inf, np.nan])),
        min_size=1,
        max_size=8,
    )
)
def test_pick_best_is_max_accuracy_then_min_finite_loss(trials):
    acc = np.array([a / 4 for a, _ in trials])
    ce = np.array([c for _, c in trials])
    best = hs.pick_best(acc, ce)
    # Brute force: among the most accurate, the smallest loss (non-finite counts as +inf),
    # the first index on a full tie.
    finite = [c if math.isfinite(c) else math.inf for c in ce]
    top = [i for i in range(len(acc)) if acc[i] == acc.max()]
    expected = min(top, key=lambda i: (finite[i], i))
    assert best == expected


def test_history_plan_keeps_whole_curves_of_evenly_spaced_searches_within_the_budget():
    train = data.load("digits")["train"]
    for scale, searches in (
        ("smoke", [0, 1]),
        ("quick", [0, 13, 26, 39]),
        ("full", [0, 50, 100, 150]),
    ):
        config = hs.get_config(scale)
        steps = hs.trial_steps(config, train)
        every, kept = hs.history_plan(config, steps)
        assert every * config.num_epochs == steps  # a row per epoch
        assert kept == searches
        per_trial = config.num_epochs + 1  # step 1 and the end of every epoch
        assert len(kept) * len(hs.SEARCHES) * config.trials * per_trial <= hs.HISTORY_MAX_ROWS
    # A search too large for the budget is still written (one), never none.
    config = hs.get_config("smoke")
    config.trials, config.num_epochs = 10_000, 1
    assert hs.history_plan(config, 68) == (68, [0])


def test_smoke(tmp_path):
    # One timing repeat: the sweep's speed is reported as a metric whatever its value, and is
    # never a bar (BENCHMARKS.md holds the goal).
    results = run_experiment(
        "hyperparameter_search",
        {"hyperparameter_search": hs},
        scale="smoke",
        workdir=str(tmp_path),
        overrides=["timing_repeats=1"],
    )
    for name in ("config.json", "results.json", "trials.png", "best_per_search.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "hyperparameter_search"
    m = results["metrics"]
    config = hs.get_config("smoke")
    for key in (
        "mean_best_val_grid",
        "mean_best_val_random",
        "mean_test_of_best_grid",
        "fixed_box_mean_best_val_random",
    ):
        assert 0.1 < m[key] <= 1.0, key
    assert 0.0 <= m["random_win_rate"] <= 1.0
    assert m["distinct_learning_rates_grid"] == 4 and m["distinct_learning_rates_random"] == 16
    assert len(m["per_search"]["grid/best_val"]) == config.num_searches
    # Low effective dimension, even after one epoch: the learning rate moves validation accuracy
    # far more than the L2 penalty does.
    assert m["val_acc_range_across_lr"] > 3 * m["val_acc_range_across_l2"]
    assert m["sweep_compile_s"] > 0
    assert {"sweep_speedup", "sweep_s", "sequential_s"} <= set(m)
    # History: every trial's sweep metrics at step 1 and at the end of each epoch.
    path = tmp_path / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    per_trial = config.num_epochs + 1
    assert len(rows) == config.num_searches * len(hs.SEARCHES) * config.trials * per_trial
    assert {"step", "model", "search", "method", "learning_rate", "l2", "loss"} <= set(rows[0])
    assert rows[per_trial - 1]["step"] == m["steps_per_trial"]
    # At quick the same rows (same fields; the step and search numbers a digit longer) for the
    # searches `history_plan` keeps: about 1 MB, not the 10 MB of every search.
    quick = hs.get_config("quick")
    _, kept = hs.history_plan(quick, hs.trial_steps(quick, data.load("digits")["train"]))
    quick_rows = len(kept) * len(hs.SEARCHES) * quick.trials * (quick.num_epochs + 1)
    assert quick_rows * (os.path.getsize(path) / len(rows) + 4) <= 1.1e6
    assert [b["name"].split(":")[0] for b in results["bars"]] == [
        f"mean best val accuracy over {config.num_searches} searches"
    ]
    assert not any("speed" in b["name"] or "faster" in b["name"] for b in results["bars"])
