"""Smoke test of experiments/copy_memory.py, and its pieces against closed forms."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.data.sequences import copy_memory, copy_memory_baseline
from experiments import copy_memory as cm
from experiments._runner import run_experiment


def test_smoke(tmp_path):
    results = run_experiment(
        "copy_memory", {"copy_memory": cm}, scale="smoke", workdir=str(tmp_path)
    )
    for name in ("config.json", "results.json", "learning_curves.png", "metrics.jsonl"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "copy_memory"
    m = results["metrics"]
    config = cm.get_config("smoke")
    assert m["baseline_ce"] == pytest.approx(10 * math.log(8) / (config.delay + 20))
    for arm in config.arms:
        assert math.isfinite(m[f"{arm}_test_ce"]) and m[f"{arm}_test_ce"] > 0
        assert 0.0 <= m[f"{arm}_recall_accuracy"] <= 1.0
    with open(tmp_path / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert {r["arm"] for r in rows} == set(config.arms)
    assert len(rows) == len(config.arms) * config.num_seeds * (
        config.num_steps // config.chunk_steps
    )
    assert len(results["bars"]) == 1  # LSTM vs half the baseline (reported, not asserted here)


def test_memoryless_predictor_scores_the_baseline():
    # Blanks with certainty until the recall steps, then uniform over the 8 symbols: the mean
    # cross-entropy over all T + 20 steps is 10 log 8 / (T + 20), whatever the symbols are.
    delay = 7
    _, y = copy_memory(jax.random.PRNGKey(3), batch=64, delay=delay)
    big = 1e4
    logits = np.zeros(y.shape + (9,), np.float32)
    logits[:, : delay + 10, 0] = big  # certain blank
    logits[:, delay + 10 :, 0] = -big  # uniform over classes 1..8
    s = cm.scores(jnp.asarray(logits), y, delay)
    assert float(s["ce"]) == pytest.approx(copy_memory_baseline(delay), rel=1e-5)
    # A perfect recaller: cross-entropy 0 and recall accuracy 1.
    perfect = big * jax.nn.one_hot(y, 9) - big / 2
    s = cm.scores(perfect, y, delay)
    assert float(s["ce"]) == pytest.approx(0.0, abs=1e-5)
    assert float(s["recall_accuracy"]) == 1.0


def test_chrono_bias_layout_and_range():
    h, t_max = 16, 30.0
    b = np.asarray(cm.chrono_bias(h, t_max)(jax.random.PRNGKey(0), (4 * h,)))
    b_i, b_f, b_g, b_o = b.reshape(4, h)
    assert np.all(b_f >= 0.0) and np.all(b_f <= math.log(t_max - 1) + 1e-6)
    np.testing.assert_array_equal(b_i, -b_f)
    assert not b_g.any() and not b_o.any()
    # Used by the LSTM cell: its input bias is exactly this draw.
    cell = cm.make_cell("lstm", h, chrono=t_max)
    params = cell.init(jax.random.PRNGKey(1), cell.initialize_carry((2,)), jnp.zeros((2, 3)))
    bias = np.asarray(params["params"]["input"]["bias"])
    assert bias.shape == (4 * h,) and np.all(bias[h : 2 * h] >= 0.0)
    np.testing.assert_array_equal(bias[:h], -bias[h : 2 * h])
    with pytest.raises(ValueError, match="chrono init is for an LSTM bias"):
        cm.chrono_bias(h, t_max)(jax.random.PRNGKey(0), (3 * h,))


@pytest.mark.parametrize("arm", cm.ARMS)
def test_every_cell_tags_every_step(arm):
    # The smoke run trains only the LSTM: the other cells' models must build and give one
    # distribution over blank + 8 symbols per step.
    config = cm.get_config("smoke")
    model = cm.build(config, arm)
    x, _ = copy_memory(jax.random.PRNGKey(0), batch=3, delay=config.delay)
    params = jax.jit(model.init)(jax.random.PRNGKey(1), x)  # one compile, not op by op
    logits = jax.jit(model.apply)(params, x)
    assert logits.shape == (3, config.delay + 20, 9) and bool(jnp.all(jnp.isfinite(logits)))


def test_build_rejects_unknown_arm():
    with pytest.raises(ValueError, match="valid: lstm, gru, tanh"):
        cm.make_cell("irnn", 4)
