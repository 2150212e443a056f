"""REINFORCE on CartPole-v1 (Williams 1992): no baseline, a moving-average baseline and a
learned value baseline, 5 seeds each, all trained at once on vmapped pure-JAX CartPoles.

Run:    python run.py reinforce_cartpole --scale quick
Expect: quick (5 seeds x 3 estimators vmapped, 200 updates of 16 episodes, MLP 32 tanh) on a
        2-core CPU: about 45 s of CPU time (user 42.8 s + sys 2.6 s; 207 s wall at load
        average ~15); mean return over 100 episodes (mean of 5 seeds): no baseline 483.4,
        moving average 496.9, value 494.3 (bars >= 400: pass; all three also clear 475); the
        gradient variance relative to no baseline at updates 50/100/150/200 (median over the
        15 models): moving average 0.11/0.12/0.11/0.09, value 0.09/0.11/0.09/0.08 (bar < 1:
        pass). Without a baseline the seeds learn more slowly and some fall back to ~200
        for stretches after nearing 500 (the band in learning_curves.png); with either
        baseline all seeds stay near 500 after ~75 updates. Full scale
        (1000 updates of 32 episodes, MLP 64) has not been run.

Each update samples `num_envs` fresh episodes per model (`dl.envs.rollout`, a `lax.scan` of
`rollout_steps` = 500 steps with auto-reset; every episode that ends in the window counts) and
takes one Adam step on the REINFORCE surrogate with discounted reward-to-go
(`dl.objectives.policy_gradient`). The three estimators differ only in the baseline b
subtracted from G_t: 0; an exponential moving average of past batches' mean G (Williams'
reinforcement comparison); V(s_t) from a value head trained by squared error. Every model
trains a value head and tracks the moving average (only its own estimator uses them), so all
three estimators can be measured at the same parameters.

Reported: the mean undiscounted return over `eval_episodes` episodes of the stochastic policy
(each seed's mean, then the mean over seeds), and the gradient variance at fixed checkpoints:
at each model's parameters, `variance_batches` independent batches of `num_envs` episodes, the
policy gradient of each estimator on each batch, and the total variance (the trace of the
covariance, summed over the policy's parameters) across batches.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dl import envs, optim
from dl.nn.mlp import MLP
from dl.objectives import policy_gradient as pg
from dl.report import at_least, at_most, plots
from dl.train.policy_gradient import history, train_policies
from experiments._fields import SEED, Bool, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Williams 1992, Simple statistical gradient-following algorithms for "
    "connectionist reinforcement learning (REINFORCE, reinforcement comparison); Gymnasium "
    "CartPole-v1 (reward threshold 475)",
    "claim": "The score-function estimator trains a policy from sampled episodes; subtracting a "
    "baseline keeps it unbiased and lowers its variance.",
    "published": "no CartPole number in Williams 1992; Gymnasium counts CartPole-v1 solved at "
    "mean return >= 475 over 100 episodes",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "both baseline estimators: mean return >= 400 over 100 episodes (mean of 5 "
        "seeds); baselines lower the gradient variance at every checkpoint",
        "full": "both baseline estimators: mean return >= 475; baselines lower the variance",
    },
}


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # root PRNG seed: model inits, rollouts and evaluations derive from it
    c.estimators = pg.ESTIMATORS  # which estimators to train (names in ESTIMATORS)
    c.num_seeds = {"smoke": 2, "quick": 5, "full": 5}[scale]  # models per estimator, vmapped
    c.hidden = {"smoke": (8,), "quick": (32,), "full": (64,)}[scale]  # hidden widths (both nets)
    c.num_envs = {"smoke": 4, "quick": 16, "full": 32}[scale]  # episodes sampled per update
    c.rollout_steps = {"smoke": 40, "quick": 500, "full": 500}[scale]  # window per update
    c.num_updates = {"smoke": 4, "quick": 200, "full": 1000}[scale]  # Adam steps per model
    c.learning_rate = 1e-2  # Adam's eta, policy and value head alike
    c.gamma = 0.99  # discount of the reward-to-go
    c.ema_decay = 0.9  # the moving-average baseline's decay per update
    # V(s) = value_scale * MLP(s) with a zero-initialised head: returns reach 1/(1-gamma) = 100,
    # which an O(1) output would take thousands of Adam steps to reach.
    c.value_scale = 100.0
    c.value_coef = 1.0  # weight of the value loss (Adam: only its sign matters here)
    c.chunk_steps = {"smoke": 2, "quick": 25, "full": 50}[scale]  # updates per jitted call
    c.eval_every = {"smoke": 2, "quick": 50, "full": 250}[scale]  # checkpoints for eval/variance
    # Evaluation episodes (Gymnasium's 100), from the variance batches' rollout; complete when
    # rollout_steps = 500. At most variance_batches * num_envs.
    c.eval_episodes = {"smoke": 4, "quick": 100, "full": 100}[scale]
    c.variance_batches = {"smoke": 3, "quick": 16, "full": 32}[scale]  # batches per variance
    c.checkpoint_every = {"smoke": 0, "quick": 0, "full": 250}[scale]  # 0: end only (resume)
    c.progress = scale != "smoke"  # progress bar
    return c


FIELDS = {
    "seed": SEED,
    "estimators": Tuple(Choice(pg.ESTIMATORS)),
    "num_seeds": Int(lo=1),
    "hidden": Tuple(Int(lo=1)),
    "num_envs": Int(lo=1),
    "rollout_steps": Int(lo=1),
    "num_updates": Int(lo=1),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "gamma": Float(lo=0.0, hi=1.0),
    "ema_decay": Float(lo=0.0, hi=1.0, hi_open=True),
    "value_scale": Float(lo=0.0, lo_open=True),
    "value_coef": Float(lo=0.0),
    "chunk_steps": Int(lo=1),
    "eval_every": Int(lo=1),
    "eval_episodes": Int(lo=1),
    "variance_batches": Int(lo=2),
    "checkpoint_every": Int(lo=0),
    "progress": Bool(),
}


def build(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The two networks, their apply functions, the rollout and the loss factory."""
    policy = MLP(hidden=tuple(config.hidden), out=envs.NUM_ACTIONS, activation="tanh")
    value = MLP(hidden=tuple(config.hidden), out=1, activation="tanh")

    def policy_apply(params, obs):
        return policy.apply({"params": params}, obs)

    def value_apply(params, obs):
        return config.value_scale * value.apply({"params": params}, obs)

    rollout = functools.partial(
        envs.rollout, num_envs=config.num_envs, num_steps=config.rollout_steps
    )
    kw = {"policy_apply": policy_apply, "value_apply": value_apply, "gamma": config.gamma}
    make_loss = pg.make_reinforce_loss(
        rollout, **kw, ema_decay=config.ema_decay, value_coef=config.value_coef
    )
    return {"policy": policy, "value": value, "rollout": rollout, "make_loss": make_loss, **kw}


def init_models(config, parts, key: jax.Array, m: int):
    """params {"policy", "value"} and extra {"baseline"} for m models (leaves [m, ...])."""
    obs = jnp.zeros((1, envs.OBS_SIZE), jnp.float32)

    def one(k):
        kp, kv = jax.random.split(k)
        value = parts["value"].init(kv, obs)["params"]
        value["head"] = jax.tree.map(jnp.zeros_like, value["head"])  # V = 0 at the start
        return {"policy": parts["policy"].init(kp, obs)["params"], "value": value}

    params = jax.vmap(one)(jax.random.split(key, m))
    return params, {"baseline": jnp.zeros((m,), jnp.float32)}


def make_eval(config, parts, key: jax.Array):
    """stacked TrainState -> {"eval_return", "grad_var_<estimator>" for each estimator} [m]."""
    kw = {k: parts[k] for k in ("policy_apply", "value_apply", "gamma")}

    def one(params, extra, key):
        # One rollout of K * num_envs environments: the first eval_episodes environments'
        # first episodes give the mean return, and cut into K batches of num_envs independent
        # environments it gives K independent gradient estimates, taken in a loop (one rollout
        # and a loop compile far faster than a vmap of rollouts: XLA compiles batched threefry
        # slowly on CPU).
        k, n = config.variance_batches, config.num_envs
        traj = envs.rollout(
            parts["policy_apply"], params["policy"], key, k * n, config.rollout_steps
        )
        first = envs.first_episode_returns(traj.rewards, traj.dones)
        ret = jnp.mean(first[: config.eval_episodes])
        traj = jax.tree.map(
            lambda x: jnp.moveaxis(x.reshape(x.shape[0], k, n, *x.shape[2:]), 1, 0), traj
        )

        def batch_grads(tr):  # [estimators, P]: each estimator's gradient on one batch
            g = pg.estimator_gradients(params, extra, tr, **kw)
            return jnp.concatenate([x.reshape(x.shape[0], -1) for x in jax.tree.leaves(g)], 1)

        grads = jax.lax.map(batch_grads, traj)  # [K, estimators, P]
        var = jnp.sum(jnp.var(grads, axis=0, ddof=1), axis=-1)  # [estimators]
        return ret, var

    @jax.jit
    def eval_fn(state):
        m = state.step.shape[0]
        keys = jax.random.split(jax.random.fold_in(key, state.step[0]), m)
        ret, var = jax.vmap(one)(state.params, state.extra, keys)
        out = {"eval_return": ret}
        for j, name in enumerate(pg.ESTIMATORS):
            out[f"grad_var_{name}"] = var[:, j]
        return out

    return eval_fn


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    if config.eval_every % config.chunk_steps or config.checkpoint_every % config.chunk_steps:
        raise ValueError("eval_every and checkpoint_every must be multiples of chunk_steps")
    if config.eval_episodes > config.variance_batches * config.num_envs:
        raise ValueError("eval_episodes must be at most variance_batches * num_envs")
    parts = build(config)
    arms = list(config.estimators)
    n = config.num_seeds
    m = n * len(arms)  # model i: estimator arms[i // n], seed i % n
    init_key, step_root, eval_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    params, extra = jax.jit(functools.partial(init_models, config, parts, m=n))(init_key)
    # Seed s starts from the same initial policy and samples its batches from the same keys
    # under every estimator: the arms differ only in the baseline.
    params = jax.tree.map(lambda x: jnp.concatenate([x] * len(arms)), params)
    extra = jax.tree.map(lambda x: jnp.concatenate([x] * len(arms)), extra)
    step_keys = jnp.concatenate([jax.random.split(step_root, n)] * len(arms))
    codes = np.repeat([pg.ESTIMATORS.index(a) for a in arms], n).astype(np.int32)
    _, rows = train_policies(
        params,
        extra,
        step_keys,
        {"estimator": jnp.asarray(codes)},
        make_loss=parts["make_loss"],
        tx=optim.adam(config.learning_rate),
        num_steps=config.num_updates,
        chunk_steps=config.chunk_steps,
        workdir=workdir,
        eval_fn=make_eval(config, parts, eval_key),
        eval_every=config.eval_every,
        labels={"estimator": np.repeat(arms, n), "seed": np.tile(np.arange(n), len(arms))},
        checkpoint_every=config.checkpoint_every,
        resume=config.get("resume", False),
        name="reinforce",
        progress=config.progress,
    )
    steps, train_ret = history(rows, "episode_return", m)
    eval_steps, eval_ret = history(rows, "eval_return", m)
    var = {e: history(rows, f"grad_var_{e}", m)[1] for e in pg.ESTIMATORS}

    plots.bands(
        {a: (steps, train_ret[i * n : (i + 1) * n]) for i, a in enumerate(arms)},
        f"{workdir}/learning_curves.png",
        xlabel="update",
        ylabel="training episode return (band: seed range)",
        title=f"REINFORCE on CartPole-v1, {n} seeds, {config.num_envs} episodes per update",
    )
    plots.curves(
        {e: (eval_steps, np.median(var[e], axis=0)) for e in pg.ESTIMATORS},
        f"{workdir}/gradient_variance.png",
        xlabel="update (checkpoint)",
        ylabel="total gradient variance (median over all models)",
        logy=True,
        title="variance of each estimator at the same parameters",
    )
    metrics: dict[str, Any] = {"checkpoints": eval_steps.tolist()}
    table = []
    for i, a in enumerate(arms):
        sl = slice(i * n, (i + 1) * n)
        final = eval_ret[sl, -1]
        metrics[f"{a}_return"] = float(np.mean(final))
        metrics[f"{a}_return_per_seed"] = [float(v) for v in final]
        row = {
            "estimator": a,
            "return_mean": float(np.mean(final)),
            "return_min": float(final.min()),
        }
        for e in pg.ESTIMATORS:  # variance at this arm's final parameters, median over seeds
            row[f"grad_var_{e}"] = float(np.median(var[e][sl, -1]))
        table.append(row)
    metrics["table"] = table
    for e in ("moving_average", "value"):
        # Per checkpoint, the median over all models of var(e) / var(none) at their parameters.
        ratio = np.median(var[e] / var["none"], axis=0)
        metrics[f"variance_ratio_{e}"] = [float(r) for r in ratio]
    bars = []
    bound = 475.0 if config.num_updates >= 1000 else 400.0
    for a in ("moving_average", "value"):
        if a in arms:
            bars.append(
                at_least(
                    f"{a} baseline: mean return over {config.eval_episodes} episodes",
                    metrics[f"{a}_return"],
                    bound,
                    paper="Gymnasium threshold 475",
                )
            )
    for e in ("moving_average", "value"):
        bars.append(
            at_most(
                f"{e} baseline: gradient variance / no baseline's (worst checkpoint)",
                max(metrics[f"variance_ratio_{e}"]),
                1.0,
                paper="a baseline lowers the variance (Williams 1992)",
            )
        )
    metrics["bars"] = bars
    for key, v in metrics.items():
        if isinstance(v, float):
            print(f"  {key}: {v:.4g}")
    print(
        f"  variance ratios: {[(e, metrics[f'variance_ratio_{e}']) for e in ('moving_average', 'value')]}"
    )
    return metrics
