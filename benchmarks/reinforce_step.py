"""One REINFORCE update (no baseline) on a fixed batch of CartPole trajectories: dl's engine in
JAX (`dl.objectives.policy_gradient` terms, `dl.train.step.jit_train_step`, `dl.optim.adam`)
side by side with the same policy network and loss in PyTorch (eager; `torch.compile` with
--compile).

Run:    python -m benchmarks.reinforce_step [--steps N] [--repeats R] [--json PATH]
Expect: see BENCHMARKS.md for the figures on the 2-core CPU.

The batch: `NUM_ENVS` episodes' windows of `HORIZON` steps from `dl.envs.rollout` with the
initial policy (obs, actions, rewards, dones; [T, n]). One update: discounted reward-to-go cut
at episode ends, the mask of finished episodes, log softmax of the policy MLP (4-64-64-2, tanh)
at every obs, the surrogate -(1/n) sum m log pi(a|s) G, its gradient and an Adam step. Two
variants: "full" computes the reward-to-go inside the step (JAX: a reverse `lax.scan`; PyTorch:
the usual reverse Python loop over T of vectorized ops), "given returns" takes G and the mask
precomputed (the network's forward, backward and Adam only). Both sides start from the same
parameters (JAX's copied into PyTorch); the warm-up losses of the first steps must agree
(`loss parity`) before anything is timed. Repeats are interleaved; medians reported.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _cli, matmul_peak
from benchmarks.mlp_step import Runner, machine, speed_ratio, summarize, time_runners
from dl import envs, optim
from dl.nn.mlp import MLP
from dl.objectives import policy_gradient as pg
from dl.train.state import TrainState
from dl.train.step import jit_train_step

NUM_ENVS = 32
HORIZON = 500
HIDDEN = (64, 64)
GAMMA = 0.99
LEARNING_RATE = 1e-2
WARMUP_STEPS = 3


def make_batch(seed: int, num_envs: int = NUM_ENVS, horizon: int = HORIZON, hidden=HIDDEN):
    """(initial policy params as host numpy, the trajectory batch as host numpy arrays)."""
    model = MLP(hidden=tuple(hidden), out=envs.NUM_ACTIONS, activation="tanh")
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, envs.OBS_SIZE)))["params"]

    def sample(p, k):
        traj = envs.rollout(lambda q, o: model.apply({"params": q}, o), p, k, num_envs, horizon)
        return {
            "obs": traj.obs,
            "actions": traj.actions,
            "rewards": traj.rewards,
            "dones": traj.dones.astype(jnp.float32),
            "returns": pg.reward_to_go(traj.rewards, traj.dones, GAMMA),
            "mask": pg.complete_mask(traj.dones),
        }

    batch = jax.jit(sample)(params, jax.random.PRNGKey(seed + 1))
    return model, jax.tree.map(np.asarray, params), jax.tree.map(np.asarray, batch)


def jax_loss(model, given_returns: bool):
    def loss_fn(params, extra, batch, rng):
        del rng
        if given_returns:
            returns, mask = batch["returns"], batch["mask"]
        else:
            returns = pg.reward_to_go(batch["rewards"], batch["dones"], GAMMA)
            mask = pg.complete_mask(batch["dones"])
        t, n = batch["actions"].shape
        logits = model.apply({"params": params}, batch["obs"].reshape(t * n, -1)).reshape(t, n, -1)
        logp = pg.action_log_probs(logits, batch["actions"])
        return pg.reinforce_surrogate(logp, returns, mask), ({}, extra)

    return loss_fn


def jax_runner(model, params0, batch, *, given_returns: bool, lr: float) -> Runner:
    state = TrainState.create(
        apply_fn=None,
        params=jax.tree.map(jnp.asarray, params0),
        tx=optim.adam(lr),
        rng=jax.random.PRNGKey(0),
    )
    step = jit_train_step(jax_loss(model, given_returns))
    batch = jax.device_put(batch)
    return _cli.jax_train_runner(step, state, batch, warmup=WARMUP_STEPS)


def torch_runner(params0, batch, *, given_returns: bool, lr: float, compile_model: bool = False):
    import torch

    torch.set_num_threads(matmul_peak.xla_cpu_threads())
    names = sorted(k for k in params0 if k.startswith("dense_")) + ["head"]
    layers: list = []
    for i, name in enumerate(names):
        kernel, bias = params0[name]["kernel"], params0[name]["bias"]
        linear = torch.nn.Linear(*kernel.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
            linear.bias.copy_(torch.from_numpy(np.asarray(bias)))
        layers += [linear] if i == len(names) - 1 else [linear, torch.nn.Tanh()]
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    b = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
    actions = b["actions"].long()
    t, n = actions.shape

    def returns_and_mask():
        if given_returns:
            return b["returns"], b["mask"]
        keep = GAMMA * (1.0 - b["dones"])
        out = torch.empty_like(b["rewards"])
        g = torch.zeros(n)
        for s in range(t - 1, -1, -1):
            g = b["rewards"][s] + keep[s] * g
            out[s] = g
        mask = (torch.flip(torch.cumsum(torch.flip(b["dones"], [0]), 0), [0]) > 0).float()
        return out, mask

    def surrogate(returns, mask):
        logits = model(b["obs"].reshape(t * n, -1)).reshape(t, n, -1)
        logp = torch.log_softmax(logits, -1).gather(-1, actions[..., None])[..., 0]
        return -(mask * logp * returns).sum() / n

    loss_of = torch.compile(surrogate) if compile_model else surrogate

    def one_step():
        with torch.no_grad():
            returns, mask = returns_and_mask()
        opt.zero_grad(set_to_none=True)
        loss = loss_of(returns, mask)
        loss.backward()
        opt.step()
        return loss

    losses = [float(one_step().detach()) for _ in range(WARMUP_STEPS)]

    def run(steps: int) -> None:
        for _ in range(steps):
            one_step()

    return Runner(run, losses)


def benchmark(
    *,
    steps: int,
    repeats: int,
    torch_compile: bool = False,
    seed: int = 0,
    num_envs: int = NUM_ENVS,
    horizon: int = HORIZON,
    hidden=HIDDEN,
    lr: float = LEARNING_RATE,
) -> dict:
    info = machine()
    model, params0, batch = make_batch(seed, num_envs, horizon, hidden)
    runners: dict[str, Runner] = {}
    for variant, given in (("full", False), ("given returns", True)):
        runners[f"jax {variant}"] = jax_runner(model, params0, batch, given_returns=given, lr=lr)
        runners[f"torch eager {variant}"] = torch_runner(params0, batch, given_returns=given, lr=lr)
        if torch_compile:
            runners[f"torch.compile {variant}"] = torch_runner(
                params0, batch, given_returns=given, lr=lr, compile_model=True
            )
    parity = {}
    for variant in ("full", "given returns"):
        ref = runners[f"jax {variant}"].warmup_losses
        for name, r in runners.items():
            if name.endswith(variant) and not name.startswith("jax"):
                scale = max(float(np.max(np.abs(ref))), 1e-12)
                diff = float(np.max(np.abs(np.subtract(r.warmup_losses, ref)))) / scale
                if not diff <= 1e-3:  # NaN fails too
                    raise AssertionError(
                        f"loss parity failed for {name}: {r.warmup_losses} vs {ref}"
                    )
                parity[name] = diff
    seconds, busy = time_runners(runners, steps=steps, repeats=repeats)
    flops = {"model": 0, "matmul_executed": 0, "elementwise": 0}
    results = {
        name: {
            k: v
            for k, v in summarize(seconds[name], busy[name], steps=steps, flops=flops).items()
            if "flops" not in k
        }
        | {"warmup_losses": runners[name].warmup_losses}
        for name in runners
    }
    ratios, notes = {}, {}
    for variant, suffix in (("full", ""), ("given returns", "_given_returns")):
        for torch_name, key in (
            ("torch eager", "jax_over_torch_eager"),
            ("torch.compile", "jax_over_torch_compile"),
        ):
            name = f"{torch_name} {variant}"
            if name in results:
                ratios[key + suffix], _ = speed_ratio(results[f"jax {variant}"], results[name])
                q, why = speed_ratio(results[f"jax {variant}"], results[name], quiet=True)
                ratios[key + suffix + "_quiet"] = q
                if why:
                    notes[key + suffix + "_quiet"] = why
    return {
        "benchmark": "reinforce_step",
        "num_envs": num_envs,
        "horizon": horizon,
        "hidden": list(hidden),
        "steps": steps,
        "repeats": repeats,
        "loss_parity_max_rel_diff": parity,
        "machine": info,
        "results": results,
        "ratios": ratios,
        "notes": notes,
        "goal": "jax_over_torch_eager >= 1.0",
    }


def format_result(res: dict) -> str:
    lines = [
        (
            f"REINFORCE update: {res['num_envs']} envs x {res['horizon']} steps, MLP "
            f"{res['hidden']}, load avg {res['machine']['loadavg_1min_start']:.1f}"
        )
    ]
    for name, r in res["results"].items():
        lines.append(f"  {name:28s} {r['ms_per_step']:8.2f} ms/step")
    for k, v in res["ratios"].items():
        lines.append(f"  {k}: {'null' if v is None else f'{v:.2f}x'}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    res = benchmark(steps=a.steps, repeats=a.repeats, torch_compile=a.compile)
    return _cli.finish(res, format_result(res), a.json, indent=1, allow_nan=False)


if __name__ == "__main__":
    main()
