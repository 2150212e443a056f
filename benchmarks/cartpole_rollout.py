"""Environment steps per second: 1,024 CartPole-v1s as one jitted `lax.scan` of the vmapped
pure-JAX step (`dl.envs.rollout`, random actions sampled inside), against Gymnasium's own
vectorized CartPole on the same CPU: the native NumPy `CartPoleVectorEnv`
(`gymnasium.make_vec(..., vectorization_mode="vector_entry_point")`) and `SyncVectorEnv` over
1,024 Python environments.

Run:    python -m benchmarks.cartpole_rollout [--steps N] [--repeats R] [--json PATH]
Expect: see BENCHMARKS.md for the figures on the 2-core CPU.

Method: one "step" of the benchmark is a rollout of `--horizon` environment steps of every
environment (auto-reset on); env steps/s = num_envs * horizon * steps / seconds. JAX's rollout
also returns the whole trajectory (obs, actions, log-probs, rewards, dones) to the device
buffer, as a training step would use it; Gymnasium's actions are drawn beforehand (NumPy), so
its timing is the environment alone. Before timing, parity: the NumPy vector env is set to the
JAX batch's states and both take the same actions for one step; observations must agree to
float32 rounding and terminations exactly. Repeats are interleaved; medians reported, with the
other processes' CPU share (`benchmarks.mlp_step.others_busy`).
"""

from __future__ import annotations

import argparse

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _cli
from benchmarks.mlp_step import Runner, machine, speed_ratio, summarize, time_runners
from dl import envs

NUM_ENVS = 1024
HORIZON = 100  # env steps per rollout (one benchmark step)


def _uniform(params, obs):
    del params
    return jnp.zeros((obs.shape[0], envs.NUM_ACTIONS), jnp.float32)


def jax_runner(num_envs: int, horizon: int, seed: int) -> Runner:
    roll = jax.jit(lambda key: envs.rollout(_uniform, None, key, num_envs, horizon))
    key = jax.random.PRNGKey(seed)
    jax.block_until_ready(roll(key))  # compiles
    count = [0]

    def run(steps: int) -> None:
        out = None
        for _ in range(steps):
            count[0] += 1
            out = roll(jax.random.fold_in(key, count[0]))
        jax.block_until_ready(out)

    return Runner(run, [])


def gym_runner(kind: str, num_envs: int, horizon: int, seed: int) -> Runner:
    if kind == "vector":
        env = gymnasium.make_vec("CartPole-v1", num_envs, vectorization_mode="vector_entry_point")
    else:
        env = gymnasium.vector.SyncVectorEnv(
            [lambda: gymnasium.make("CartPole-v1") for _ in range(num_envs)]
        )
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(2, size=(horizon, num_envs))

    def run(steps: int) -> None:
        for _ in range(steps):
            for t in range(horizon):
                env.step(actions[t])

    return Runner(run, [])


def check_parity(num_envs: int, seed: int) -> dict:
    """One step of the JAX batch and of Gymnasium's NumPy vector env from the same states."""
    _, state = envs.reset(jax.random.PRNGKey(seed), num_envs)
    actions = np.random.default_rng(seed).integers(2, size=num_envs).astype(np.int32)
    obs, _, _, term, _ = jax.jit(envs.step)(jax.random.PRNGKey(1), state, jnp.asarray(actions))
    env = gymnasium.make_vec("CartPole-v1", num_envs, vectorization_mode="vector_entry_point")
    env.reset(seed=seed)
    env.unwrapped.state = np.asarray(state.physics, np.float64).T
    want, _, want_term, _, _ = env.step(actions)
    alive = ~np.asarray(term)  # ended episodes reset differently on the two sides
    err = float(np.max(np.abs(np.asarray(obs)[alive] - want[alive]), initial=0.0))
    same_term = bool(np.array_equal(np.asarray(term), want_term))
    if err > 1e-6 or not same_term:
        raise AssertionError(
            f"parity failed: max |obs diff| {err:.3g}, same terminations {same_term}"
        )
    return {"max_abs_obs_diff": err, "same_terminations": same_term}


def benchmark(
    *,
    steps: int,
    repeats: int,
    num_envs: int = NUM_ENVS,
    horizon: int = HORIZON,
    seed: int = 0,
    sync: bool = True,
) -> dict:
    info = machine()
    parity = check_parity(num_envs, seed)
    runners = {
        "jax (dl.envs, jit)": jax_runner(num_envs, horizon, seed),
        "gymnasium CartPoleVectorEnv": gym_runner("vector", num_envs, horizon, seed),
    }
    if sync:
        runners["gymnasium SyncVectorEnv"] = gym_runner("sync", num_envs, horizon, seed)
    seconds, busy = time_runners(runners, steps=steps, repeats=repeats)
    per_step = num_envs * horizon  # env steps per benchmark step
    flops = {"model": 0, "matmul_executed": 0, "elementwise": 0}
    results = {}
    for name in runners:
        r = summarize(seconds[name], busy[name], steps=steps, flops=flops)
        r = {k: v for k, v in r.items() if "flops" not in k}
        r["env_steps_per_s"] = r["steps_per_s"] * per_step
        results[name] = r
    jax_res = results["jax (dl.envs, jit)"]
    ratios, notes = {}, {}
    for key, name in (
        ("jax_over_gymnasium_vector", "gymnasium CartPoleVectorEnv"),
        ("jax_over_gymnasium_sync", "gymnasium SyncVectorEnv"),
    ):
        if name in results:
            ratios[key], _why = speed_ratio(jax_res, results[name])
            ratios[key + "_quiet"], why_q = speed_ratio(jax_res, results[name], quiet=True)
            if why_q:
                notes[key + "_quiet"] = why_q
    return {
        "benchmark": "cartpole_rollout",
        "num_envs": num_envs,
        "horizon": horizon,
        "steps": steps,
        "repeats": repeats,
        "parity": parity,
        "machine": info,
        "results": results,
        "ratios": ratios,
        "notes": notes,
        "goal": "jax_over_gymnasium_vector >= 10",
    }


def format_result(res: dict) -> str:
    lines = [
        (
            f"CartPole-v1 rollouts: {res['num_envs']} envs x {res['horizon']} steps, "
            f"load avg {res['machine']['loadavg_1min_start']:.1f}"
        )
    ]
    for name, r in res["results"].items():
        busy = max(r["others_busy"]) if r["others_busy"] else float("nan")
        lines.append(
            f"  {name:32s} {r['env_steps_per_s']:14,.0f} env steps/s (others busy up to {busy:.0%})"
        )
    for k, v in res["ratios"].items():
        lines.append(f"  {k}: {'null' if v is None else f'{v:.1f}x'}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5, help="rollouts per repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--num-envs", type=int, default=NUM_ENVS)
    p.add_argument("--horizon", type=int, default=HORIZON)
    p.add_argument("--no-sync", action="store_true", help="skip SyncVectorEnv (slow)")
    p.add_argument("--json", default=None, help="write the result here")
    a = p.parse_args(argv)
    res = benchmark(
        steps=a.steps, repeats=a.repeats, num_envs=a.num_envs, horizon=a.horizon, sync=not a.no_sync
    )
    return _cli.finish(res, format_result(res), a.json, indent=1, allow_nan=False)


if __name__ == "__main__":
    main()
