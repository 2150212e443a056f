"""REINFORCE (Williams 1992) for episodic tasks: reward-to-go returns, the score-function
surrogate, and its baselines, in the engine's loss shape.

For a batch of trajectories of `n` environments over `T` steps (arrays [T, n]), REINFORCE
estimates the gradient of the expected discounted return by

    g = (1/n) sum_{t,i} m_ti grad log pi(a_ti | s_ti) (G_ti - b_ti),
    G_ti = r_ti + gamma (1 - d_ti) G_{t+1,i}      (reward-to-go, cut at episode ends d),

where m masks the steps whose episode ends inside the window (an unfinished episode has no
return yet) and b is a baseline that does not depend on the action a_ti, so it leaves the
estimate unbiased and can lower its variance:

- "none": b = 0;
- "moving_average": b = an exponential moving average of past batches' mean reward-to-go
  (`dl.objectives.estimators.ema_update`; Williams' reinforcement comparison), updated after
  the batch that uses it;
- "value": b = V(s_ti), a value head trained by squared error toward G (a learned baseline;
  Sutton et al. 2000). Its gradient is stopped in the surrogate.

`make_reinforce_loss` binds a rollout and two networks into the engine's
`loss_fn(params, extra, batch, rng) -> (loss, (metrics, new_extra))` with `params =
{"policy", "value"}` and `extra = {"baseline": []}`; the estimator is a traced integer code
(an index into ESTIMATORS), so the three estimators train side by side under one `vmap`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from dl.objectives.estimators import ema_update

ESTIMATORS = ("none", "moving_average", "value")

# apply(params, obs [B, d]) -> [B, k]: policy logits (k actions) or a value (k = 1).
ApplyFn = Callable[[Any, jax.Array], jax.Array]
# rollout(policy_fn, policy_params, key) -> a trajectory with fields obs, actions, rewards,
# dones, each [T, n, ...] (e.g. `dl.envs.rollout` with num_envs and num_steps bound).
RolloutFn = Callable[[ApplyFn, Any, jax.Array], Any]


def reward_to_go(rewards: jax.Array, dones: jax.Array, gamma: float) -> jax.Array:
    """G_t = r_t + gamma (1 - d_t) G_{t+1} with G_T = 0: rewards, dones [T, ...] -> [T, ...].
    A done at t ends the episode, so G_t = r_t there and later rewards belong to the next one."""
    keep = gamma * (1.0 - dones.astype(rewards.dtype))

    def body(g, x):
        r, k = x
        g = r + k * g
        return g, g

    _, returns = jax.lax.scan(body, jnp.zeros_like(rewards[0]), (rewards, keep), reverse=True)
    return returns


def complete_mask(dones: jax.Array) -> jax.Array:
    """1.0 at the steps whose episode ends inside the window (a done at that step or later),
    0.0 on the unfinished tail: dones [T, ...] -> float32 [T, ...]."""
    later = jnp.cumsum(dones[::-1].astype(jnp.int32), axis=0)[::-1]
    return (later > 0).astype(jnp.float32)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def reinforce_surrogate(log_probs: jax.Array, advantages: jax.Array, mask: jax.Array) -> jax.Array:
    """-(1/n) sum_{t,i} m_ti log pi_ti stop_gradient(A_ti), arrays [T, n]: its gradient is minus
    the REINFORCE estimate (module doc) with A = G - b."""
    weighted = mask * log_probs * jax.lax.stop_gradient(advantages)
    return -jnp.sum(weighted) / log_probs.shape[1]


def action_log_probs(logits: jax.Array, actions: jax.Array) -> jax.Array:
    """log softmax(logits)[action]: logits [..., k], actions [...] int -> [...]."""
    logp = jax.nn.log_softmax(logits)
    return jnp.take_along_axis(logp, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]


def _flat_apply(apply: ApplyFn, params: Any, obs: jax.Array) -> jax.Array:
    """apply over obs [T, n, d] as one [T*n, d] batch -> [T, n, k]."""
    t, n = obs.shape[:2]
    return apply(params, obs.reshape(t * n, -1)).reshape(t, n, -1)


def reinforce_terms(
    params: dict[str, Any],
    extra: dict[str, jax.Array],
    traj: Any,
    estimator: jax.Array,
    *,
    policy_apply: ApplyFn,
    value_apply: ApplyFn,
    gamma: float,
    ema_decay: float,
) -> tuple[jax.Array, jax.Array, dict[str, jax.Array], dict[str, jax.Array]]:
    """The pieces of one REINFORCE update from a trajectory (fields [T, n, ...]).

    estimator: [] int, an index into ESTIMATORS (may be traced).
    Returns (policy surrogate, value loss 0.5 E_m (V - G)^2, metrics, new extra). The value head
    is trained for every estimator (it is used as the baseline only for "value"), so all three
    can be compared at the same parameters.
    """
    returns = reward_to_go(traj.rewards, traj.dones, gamma)
    mask = complete_mask(traj.dones)
    logp = action_log_probs(_flat_apply(policy_apply, params["policy"], traj.obs), traj.actions)
    values = _flat_apply(value_apply, params["value"], traj.obs)[..., 0]
    zero = jnp.zeros_like(returns)
    baseline = jnp.stack([zero, zero + extra["baseline"], jax.lax.stop_gradient(values)])[estimator]
    policy_loss = reinforce_surrogate(logp, returns - baseline, mask)
    value_loss = 0.5 * masked_mean((values - returns) ** 2, mask)
    dones = traj.dones.astype(jnp.float32)
    metrics = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "baseline": extra["baseline"],
        # Undiscounted return per finished episode in the window.
        "episode_return": jnp.sum(traj.rewards * mask) / jnp.maximum(jnp.sum(dones), 1.0),
        "episodes": jnp.sum(dones),
    }
    new_extra = {"baseline": ema_update(extra["baseline"], masked_mean(returns, mask), ema_decay)}
    return policy_loss, value_loss, metrics, new_extra


def estimator_gradients(
    params: dict[str, Any],
    extra: dict[str, jax.Array],
    traj: Any,
    *,
    policy_apply: ApplyFn,
    value_apply: ApplyFn,
    gamma: float,
) -> Any:
    """The policy gradient of every estimator on one trajectory: a pytree like
    params["policy"] with a leading [len(ESTIMATORS)] axis, entry e equal to the gradient of
    `reinforce_terms(..., estimator=e)[0]`. The surrogate is linear in the advantage, so one
    forward pass and one vjp per estimator's weights -(1/n) m (G - b_e) suffice."""
    returns = reward_to_go(traj.rewards, traj.dones, gamma)
    mask = complete_mask(traj.dones)
    values = _flat_apply(value_apply, params["value"], traj.obs)[..., 0]
    zero = jnp.zeros_like(returns)
    baselines = jnp.stack([zero, zero + extra["baseline"], values])
    weights = -mask * (returns - baselines) / traj.obs.shape[1]  # [estimators, T, n]

    def log_probs(policy):
        return action_log_probs(_flat_apply(policy_apply, policy, traj.obs), traj.actions)

    _, vjp = jax.vjp(log_probs, params["policy"])
    return jax.vmap(lambda w: vjp(w)[0])(weights)


def make_reinforce_loss(
    rollout: RolloutFn,
    *,
    policy_apply: ApplyFn,
    value_apply: ApplyFn,
    gamma: float,
    ema_decay: float,
    value_coef: float,
) -> Callable[[dict[str, Any]], Callable[..., Any]]:
    """A sweep-style factory: hparams {"estimator": [] int} -> the engine's loss_fn(params,
    extra, batch, rng), which samples a fresh batch of episodes from `rollout` with `rng` (the
    step's key) at the current policy, and returns policy surrogate + value_coef * value loss.
    `batch` is unused (on-policy data come from `rng`)."""

    def factory(hparams):
        def loss_fn(params, extra, batch, rng):
            del batch
            traj = rollout(policy_apply, jax.lax.stop_gradient(params["policy"]), rng)
            policy_loss, value_loss, metrics, new_extra = reinforce_terms(
                params,
                extra,
                traj,
                hparams["estimator"],
                policy_apply=policy_apply,
                value_apply=value_apply,
                gamma=gamma,
                ema_decay=ema_decay,
            )
            return policy_loss + value_coef * value_loss, (metrics, new_extra)

        return loss_fn

    return factory
