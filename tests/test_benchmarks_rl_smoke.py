"""Smoke tests of the reinforcement-learning benchmarks at tiny sizes: structure and parity,
never timings (the machine may be busy)."""

import json

import pytest

from benchmarks import cartpole_rollout, reinforce_step


def test_cartpole_rollout_structure_and_parity():
    res = cartpole_rollout.benchmark(steps=1, repeats=1, num_envs=8, horizon=5)
    assert res["parity"]["same_terminations"] and res["parity"]["max_abs_obs_diff"] <= 1e-6
    assert set(res["results"]) == {
        "jax (dl.envs, jit)",
        "gymnasium CartPoleVectorEnv",
        "gymnasium SyncVectorEnv",
    }
    for r in res["results"].values():
        assert r["env_steps_per_s"] == pytest.approx(r["steps_per_s"] * 8 * 5)
    for key in ("jax_over_gymnasium_vector", "jax_over_gymnasium_sync"):
        assert res["ratios"][key] > 0
    json.dumps(res, allow_nan=False)
    assert "env steps/s" in cartpole_rollout.format_result(res)


def test_reinforce_step_structure_and_loss_parity():
    res = reinforce_step.benchmark(steps=1, repeats=1, num_envs=4, horizon=100, hidden=(8,))
    parity = res["loss_parity_max_rel_diff"]
    assert set(parity) == {"torch eager full", "torch eager given returns"}
    assert all(d <= 1e-3 for d in parity.values())
    full = res["results"]["jax full"]["warmup_losses"]
    given = res["results"]["jax given returns"]["warmup_losses"]
    assert (
        full == pytest.approx(given, rel=1e-5) and full[0] != 0
    )  # episodes ended  # the same update, returns inside or given
    for key in ("jax_over_torch_eager", "jax_over_torch_eager_given_returns"):
        assert res["ratios"][key] > 0
    json.dumps(res, allow_nan=False)
    assert "ms/step" in reinforce_step.format_result(res)
