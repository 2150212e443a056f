"""Pure-JAX environments for policy-gradient experiments: jittable, `vmap`-able, run in
`lax.scan` with auto-reset."""

from dl.envs.cartpole import (
    NUM_ACTIONS,
    OBS_SIZE,
    Trajectory,
    first_episode_returns,
    reset,
    rollout,
    step,
)

__all__ = [
    "NUM_ACTIONS",
    "OBS_SIZE",
    "Trajectory",
    "first_episode_returns",
    "reset",
    "rollout",
    "step",
]
