"""CartPole-v1 (Barto, Sutton & Anderson 1983; Gymnasium's version) in pure JAX: a batch of
environments `vmap`ped, with auto-reset, and whole rollouts in one `lax.scan`.

The step is written from Gymnasium's `CartPoleEnv.step` (gymnasium 1.3): the same constants
(g = 9.8, cart 1.0 kg, pole 0.1 kg, half length 0.5 m, force 10 N, tau = 0.02 s), Euler
integration, termination at |x| > 2.4 or |theta| > 12 degrees, reward 1 on every step including
the terminating one, truncation after 500 steps (Gymnasium's `TimeLimit`), and a reset state
uniform in [-0.05, 0.05]^4. One difference: Gymnasium keeps its state in float64 and rounds only
the observation to float32; here the state is float32. `tests/envs/test_cartpole.py` steps
Gymnasium's CartPole-v1 and this one from the same states with the same actions for 500 steps
and finds the observations equal to float32 rounding, rewards and terminations identical.

Why not gymnax (its CartPole-v1 has the same dynamics): `import gymnax` imports all its
environments and, through them, seaborn and scipy.stats, about 5 CPU-seconds per process
(measured), which every test worker and experiment would pay; and its step mixes Python floats
with int and bool arrays, which this project's strict dtype promotion rejects.

Conventions: a batch of `n` environments has obs [n, 4] float32 (x, x_dot, theta, theta_dot),
actions [n] int32 in {0 (push left), 1 (push right)}. `step` returns the observation after the
auto-reset: where an episode ended (`done = terminated | truncated`), the observation is the
first of a new episode, and the reward and flags belong to the step that ended the old one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

OBS_SIZE = 4
NUM_ACTIONS = 2
MAX_STEPS = 500  # CartPole-v1's time limit (max_episode_steps)
GRAVITY, MASS_CART, MASS_POLE, LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
TOTAL_MASS = MASS_CART + MASS_POLE
POLEMASS_LENGTH = MASS_POLE * LENGTH
THETA_LIMIT = 12 * 2 * math.pi / 360
X_LIMIT = 2.4
RESET_BOUND = 0.05

# policy_fn(params, obs [n, 4]) -> logits [n, NUM_ACTIONS]
PolicyFn = Callable[[Any, jax.Array], jax.Array]


class EnvState(NamedTuple):
    """physics: [n, 4] float32 (x, x_dot, theta, theta_dot; the observation); time: [n] int32,
    steps taken in the current episode."""

    physics: jax.Array
    time: jax.Array


def reset(key: jax.Array, num_envs: int) -> tuple[jax.Array, EnvState]:
    """`num_envs` fresh episodes: (obs [n, 4], state)."""
    physics = jax.random.uniform(key, (num_envs, OBS_SIZE), jnp.float32, -RESET_BOUND, RESET_BOUND)
    return physics, EnvState(physics, jnp.zeros((num_envs,), jnp.int32))


def dynamics(physics: jax.Array, action: jax.Array) -> jax.Array:
    """One Euler step of Gymnasium's cart-pole equations: physics [..., 4], action [...] int."""
    x, x_dot, theta, theta_dot = jnp.moveaxis(physics, -1, 0)
    force = jnp.where(action == 1, FORCE, -FORCE).astype(physics.dtype)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    temp = (force + POLEMASS_LENGTH * theta_dot**2 * sin) / TOTAL_MASS
    theta_acc = (GRAVITY * sin - cos * temp) / (
        LENGTH * (4.0 / 3.0 - MASS_POLE * cos**2 / TOTAL_MASS)
    )
    x_acc = temp - POLEMASS_LENGTH * theta_acc * cos / TOTAL_MASS
    return jnp.stack(
        [
            x + TAU * x_dot,
            x_dot + TAU * x_acc,
            theta + TAU * theta_dot,
            theta_dot + TAU * theta_acc,
        ],
        axis=-1,
    )


def step(
    key: jax.Array, state: EnvState, action: jax.Array
) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, jax.Array]:
    """One step of every environment, auto-resetting those whose episode ended (the fresh
    state is drawn from `key`).

    Returns (obs [n, 4] (after any reset), state, reward [n] float32 (always 1), terminated [n]
    bool (the pole fell or the cart left the track), truncated [n] bool (the 500-step limit)).
    """
    fresh, _ = reset(key, action.shape[0])
    return step_to(fresh, state, action)


def step_to(
    fresh: jax.Array, state: EnvState, action: jax.Array
) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, jax.Array]:
    """`step` with the reset states given: fresh [n, 4] replaces the physics of the
    environments whose episode ends (rollouts draw all of them at once, outside the scan)."""
    physics = dynamics(state.physics, action)
    x, theta = physics[:, 0], physics[:, 2]
    terminated = (x < -X_LIMIT) | (x > X_LIMIT) | (theta < -THETA_LIMIT) | (theta > THETA_LIMIT)
    time = state.time + 1
    truncated = time >= MAX_STEPS
    done = terminated | truncated
    physics = jnp.where(done[:, None], fresh, physics)
    time = jnp.where(done, 0, time)
    reward = jnp.ones(action.shape, jnp.float32)
    return physics, EnvState(physics, time), reward, terminated, truncated


class Trajectory(NamedTuple):
    """A rollout of `n` environments for `T` steps; every field is [T, n, ...].

    obs: the observation the action was taken in; actions: int32; log_probs: log pi(action |
    obs) under the rollout's parameters; rewards: float32; dones: the episode ended at this
    step (terminated or truncated; the next obs starts a new episode); terminated, truncated:
    the two reasons apart.
    """

    obs: jax.Array
    actions: jax.Array
    log_probs: jax.Array
    rewards: jax.Array
    dones: jax.Array
    terminated: jax.Array
    truncated: jax.Array


def rollout(
    policy_fn: PolicyFn, params: Any, key: jax.Array, num_envs: int, num_steps: int
) -> Trajectory:
    """Samples actions from softmax(policy_fn(params, obs)) in `num_envs` fresh episodes for
    `num_steps` steps, in one `lax.scan`, with auto-reset. Jittable and `vmap`-able (e.g. over
    seeds' params and keys). With `num_steps >= MAX_STEPS` every environment's first episode
    ends inside the window. Differentiating through it is not meaningful (actions are sampled);
    recompute log-probs from `obs` and `actions` for a loss."""
    reset_key, noise_key, fresh_key = jax.random.split(key, 3)
    obs, state = reset(reset_key, num_envs)
    # All randomness drawn up front, in two bulk calls (much faster on CPU than small draws
    # inside the scan): Gumbel noise for the actions (argmax(logits + g) ~ softmax(logits), as
    # jax.random.categorical samples) and the reset states for every step.
    gumbel = jax.random.gumbel(noise_key, (num_steps, num_envs, NUM_ACTIONS), jnp.float32)
    fresh = jax.random.uniform(
        fresh_key, (num_steps, num_envs, OBS_SIZE), jnp.float32, -RESET_BOUND, RESET_BOUND
    )

    def body(carry, noise):
        obs, state = carry
        g, reset_physics = noise
        logits = policy_fn(params, obs)
        action = jnp.argmax(logits + g, axis=-1).astype(jnp.int32)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], axis=1)[:, 0]
        next_obs, state, reward, terminated, truncated = step_to(reset_physics, state, action)
        out = Trajectory(
            obs, action, log_prob, reward, terminated | truncated, terminated, truncated
        )
        return (next_obs, state), out

    _, traj = jax.lax.scan(body, (obs, state), (gumbel, fresh))
    return traj


def first_episode_returns(rewards: jax.Array, dones: jax.Array) -> jax.Array:
    """Undiscounted return of each environment's first episode: rewards, dones [T, n] -> [n],
    the sum of rewards up to and including the first done (all T steps if none)."""
    d = dones.astype(jnp.int32)
    before = jnp.cumsum(d, axis=0) - d  # dones strictly before step t
    return jnp.sum(jnp.where(before == 0, rewards, 0.0), axis=0)
