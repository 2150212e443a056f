"""experiments/optimizers_rosenbrock.py: smoke run, the test functions against their closed forms,
the scanned optimizer paths against closed forms and an independent optax loop, and the
steps-to-tolerance rule against a plain Python reference."""

import functools
import json
import math
import os

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import given, settings

from dl.optim.optimizers import OPTIMIZERS, get_optimizer
from experiments import optimizers_rosenbrock as exp
from experiments._runner import run_experiment

# Each optimizer costs two compiles (one per problem); three keep the smoke test short. All eight
# are checked against optax in tests/optim and run together at the quick scale.
SMOKE_OPTIMIZERS = ("sgd", "momentum", "adam")


def test_smoke(tmp_path):
    results = run_experiment(
        "optimizers_rosenbrock",
        {"optimizers_rosenbrock": exp},
        scale="smoke",
        workdir=str(tmp_path),
        overrides=[f"optimizers={SMOKE_OPTIMIZERS!r}"],
    )
    for name in ("config.json", "results.json", "paths.png", "distance.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "optimizers_rosenbrock"
    config = exp.get_config("smoke")
    m = results["metrics"]
    grid = np.asarray(m["lr_grid"], np.float64)
    assert len(grid) == (config.lr_max_log10 - config.lr_min_log10) * config.lr_per_decade + 1
    budgets = {"rosenbrock": config.rosenbrock_steps, "quadratic": config.quadratic_steps}
    assert set(m["table"]) == set(budgets)
    for problem, table in m["table"].items():
        assert set(table) == set(SMOKE_OPTIMIZERS)
        for row in table.values():
            assert np.isclose(grid, row["learning_rate"], rtol=1e-6).any()  # chosen from the grid
            assert row["steps"] is None or 0 < row["steps"] <= budgets[problem]
            assert (row["steps"] is None) == (row["rates_reaching"] == 0)
            # A run that reached the tolerance and stayed must end inside it.
            if row["steps"] is not None:
                assert float(row["final_distance"]) < config.tolerance
    assert len(results["bars"]) == 2
    assert all(isinstance(b["passed"], bool) for b in results["bars"])
    # History: each optimizer's distance after 0..T steps at its chosen rate (stride 1 at smoke).
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(SMOKE_OPTIMIZERS) * sum(t + 1 for t in budgets.values())
    assert set(rows[0]) == {"step", "problem", "optimizer", "learning_rate", "distance"}
    assert rows[0]["step"] == 0 and rows[-1]["step"] == config.quadratic_steps


_rosenbrock_and_grad = jax.jit(jax.value_and_grad(exp.rosenbrock))  # compiled once for all examples


@settings(max_examples=40, deadline=None)
@given(st.floats(-3, 3), st.floats(-3, 3))
def test_rosenbrock_value_and_gradient_closed_form(x, y):
    p = jnp.asarray([x, y], jnp.float32)
    x, y = (float(v) for v in np.asarray(p, np.float64))  # compare at the float32 point
    value = (1 - x) ** 2 + 100 * (y - x * x) ** 2
    grad = np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])
    got_value, got_grad = _rosenbrock_and_grad(p)
    assert np.isclose(float(got_value), value, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(got_grad), grad, rtol=1e-4, atol=1e-3)


def test_config_covers_every_optimizer():
    assert set(exp.get_config("quick").optimizers) == set(OPTIMIZERS)


def test_rosenbrock_minimum():
    p = jnp.asarray(exp.OPTIMUM, jnp.float32)
    assert float(exp.rosenbrock(p)) == 0.0
    np.testing.assert_array_equal(np.asarray(jax.grad(exp.rosenbrock)(p)), [0.0, 0.0])


def test_quadratic_hessian_condition_and_minimum():
    h = exp.rotated_hessian(100.0, 45.0)
    evals, evecs = np.linalg.eigh(h.astype(np.float64))
    np.testing.assert_allclose(evals, [1.0, 100.0], rtol=1e-6)
    # 45 degrees: eigenvectors along the diagonals, so no coordinate axis is an eigenvector.
    np.testing.assert_allclose(np.abs(evecs), np.full((2, 2), math.sqrt(0.5)), rtol=1e-6)
    center = jnp.asarray([1.0, 1.0], jnp.float32)
    f = functools.partial(exp.quadratic, hessian=jnp.asarray(h), center=center)
    np.testing.assert_allclose(np.asarray(jax.hessian(f)(center)), h, rtol=1e-6)
    assert float(f(center)) == 0.0
    p = np.array([-1.5, 2.0])
    assert np.isclose(float(f(jnp.asarray(p, jnp.float32))), 0.5 * (p - 1) @ h @ (p - 1), rtol=1e-6)


def test_sgd_path_on_quadratic_is_the_closed_form():
    # Gradient descent on 1/2 d^T H d: d_k = (I - lr H)^k d_0 exactly.
    h = exp.rotated_hessian(10.0, 30.0)
    center = np.array([1.0, 1.0])
    start = np.array([-1.5, 2.0])
    lr, steps = 0.05, 60
    f = functools.partial(
        exp.quadratic, hessian=jnp.asarray(h), center=jnp.asarray(center, jnp.float32)
    )
    path = np.asarray(
        exp.descend(
            f, jnp.asarray(start, jnp.float32), get_optimizer("sgd", learning_rate=lr), steps
        )
    )
    assert path.shape == (steps + 1, 2)
    m = np.eye(2) - lr * h.astype(np.float64)
    want = np.stack(
        [center + np.linalg.matrix_power(m, k) @ (start - center) for k in range(steps + 1)]
    )
    np.testing.assert_allclose(path, want, atol=1e-5)


def test_momentum_path_on_rosenbrock_matches_an_optax_python_loop():
    start = jnp.asarray([-1.5, 2.0], jnp.float32)
    lr, steps = 1e-3, 40
    path = np.asarray(
        exp.descend(exp.rosenbrock, start, get_optimizer("momentum", learning_rate=lr), steps)
    )
    tx = optax.sgd(lr, momentum=0.9)  # independent implementation, stepped from Python
    p, state, want = start, tx.init(start), [np.asarray(start)]
    for _ in range(steps):
        updates, state = tx.update(jax.grad(exp.rosenbrock)(p), state, p)
        p = optax.apply_updates(p, updates)
        want.append(np.asarray(p))
    np.testing.assert_allclose(path, np.stack(want), rtol=1e-5, atol=1e-6)


def test_sweep_over_rates_equals_separate_runs():
    start = jnp.asarray([-1.5, 2.0], jnp.float32)
    rates = np.array([1e-3, 1e-2, 1e-1], np.float32)
    paths = np.asarray(exp.sweep_rates("adam", exp.rosenbrock, start, jnp.asarray(rates), 25))
    assert paths.shape == (3, 26, 2)
    for lr, got in zip(rates, paths):
        want = exp.descend(
            exp.rosenbrock, start, get_optimizer("adam", learning_rate=float(lr)), 25
        )
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-6)


def _steps_reference(distances, tol):
    """Walk back from the end while inside the ball; -1 if the last point is outside."""
    k = len(distances)
    while k > 0 and distances[k - 1] < tol:  # NaN < tol is False: outside
        k -= 1
    return -1 if k == len(distances) else k


_DIST = st.one_of(
    st.floats(0, 2e-3), st.sampled_from([0.0, 1e-3, math.inf, math.nan]), st.floats(0, 10)
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(_DIST, min_size=8, max_size=8), min_size=3, max_size=3))
def test_steps_to_tolerance_matches_reference(rows):
    d = np.asarray(rows, np.float32)  # [3, 8]: a batch of paths, ties at tol exactly included
    got = np.asarray(exp.steps_to_tolerance(jnp.asarray(d), 1e-3))
    want = [_steps_reference(list(row), np.float32(1e-3)) for row in d]
    np.testing.assert_array_equal(got, want)


def test_steps_to_tolerance_edge_cases():
    f = functools.partial(exp.steps_to_tolerance, tolerance=1.0)
    assert int(f(jnp.asarray([0.5, 0.5, 0.5]))) == 0  # inside from the start
    assert int(f(jnp.asarray([2.0, 0.5, 2.0, 0.5]))) == 3  # passing through does not count
    assert int(f(jnp.asarray([2.0, 2.0, 1.0]))) == -1  # the boundary is outside
    assert int(f(jnp.asarray([2.0, math.nan, 0.1]))) == 2


def test_best_rate_index():
    # Fewest steps wins; a tie goes to the smaller (earlier) rate; -1 never wins.
    assert exp.best_rate_index(np.array([-1, 30, 12, 12, -1]), np.zeros(5)) == 2
    # Nobody reached: the nearest finite final distance, diverged (NaN/inf) rates excluded.
    final = np.array([0.5, np.nan, 0.01, np.inf])
    assert exp.best_rate_index(np.array([-1, -1, -1, -1]), final) == 2
