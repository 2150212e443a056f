"""dl.envs.cartpole against Gymnasium's own CartPole-v1, and its batching and auto-reset."""

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from dl import envs
from dl.envs import cartpole

_step = jax.jit(envs.step)
_returns = jax.jit(envs.first_episode_returns)


def _state(values, time=0):
    """A batch of one state holding the float32 `values` (x, x_dot, theta, theta_dot)."""
    return cartpole.EnvState(
        jnp.asarray(values, jnp.float32).reshape(1, 4), jnp.full((1,), time, jnp.int32)
    )


def test_matches_gymnasium_for_500_steps():
    rng = np.random.default_rng(0)
    gym = gymnasium.make("CartPole-v1")

    def start():  # the same fresh state in both (reset first: it restarts the time limit)
        gym.reset(seed=int(rng.integers(2**31)))
        values = rng.uniform(-0.05, 0.05, 4).astype(np.float32)
        gym.unwrapped.state = values.astype(np.float64)
        return _state(values)

    state = start()
    terminations = 0
    for t in range(500):
        action = int(rng.integers(2))
        # Step from the same state: Gymnasium's float64 state is set to our float32 one, so
        # the comparison measures one step's rounding, not chaos amplifying it over an episode.
        gym.unwrapped.state = np.asarray(state.physics[0], np.float64)
        want_obs, want_r, want_term, want_trunc, _ = gym.step(action)
        obs, state, r, term, trunc = _step(
            jax.random.PRNGKey(t), state, jnp.array([action], jnp.int32)
        )
        assert bool(term[0]) == want_term and bool(trunc[0]) == want_trunc, f"step {t}"
        assert float(r[0]) == want_r, f"step {t}"
        if want_term or want_trunc:  # ours auto-reset: its obs starts the next episode
            terminations += int(want_term)
            state = start()
            continue
        # float32 tolerance: a few float32 roundings (eps 1.2e-7) in one step.
        np.testing.assert_allclose(obs[0], want_obs, rtol=1e-6, atol=1e-7, err_msg=f"step {t}")
    assert terminations >= 10  # random actions: episodes of ~20 steps, so many were compared


def test_terminating_observation_matches_gymnasium():
    values = np.array([2.39, 1.0, 0.0, 0.0], np.float32)  # one push right leaves the track
    gym = gymnasium.make("CartPole-v1")
    gym.reset(seed=0)
    gym.unwrapped.state = values.astype(np.float64)
    want_obs, _, want_term, _, _ = gym.step(1)
    got = jax.jit(cartpole.dynamics)(jnp.asarray(values), jnp.int32(1))
    assert want_term and float(got[0]) > cartpole.X_LIMIT
    np.testing.assert_allclose(np.asarray(got), want_obs, rtol=1e-6)


def test_truncation_at_500_steps_and_auto_reset():
    state = _state([0.0, 0.0, 0.0, 0.0], time=cartpole.MAX_STEPS - 1)
    obs, state, r, term, trunc = _step(jax.random.PRNGKey(1), state, jnp.array([1], jnp.int32))
    assert bool(trunc[0]) and not bool(term[0]) and float(r[0]) == 1.0
    assert int(state.time[0]) == 0  # a new episode began
    assert np.all(np.abs(np.asarray(obs)) <= 0.05) and np.any(np.asarray(obs) != 0)
    np.testing.assert_array_equal(np.asarray(obs), np.asarray(state.physics))


def _lean_policy(params, obs):  # pushes toward the side the pole leans, times params
    return jnp.stack([-obs[:, 2], obs[:, 2]], axis=1) * params


def test_vmapped_step_equals_separate_steps():
    physics = np.random.default_rng(4).uniform(-0.05, 0.05, (2, 3, 4)).astype(np.float32)
    time = np.zeros((2, 3), np.int32)
    time[1, 0] = cartpole.MAX_STEPS - 1  # this one truncates and resets
    state = cartpole.EnvState(jnp.asarray(physics), jnp.asarray(time))  # 2 seeds x 3 envs
    fresh = jnp.asarray(np.full((2, 3, 4), 0.01, np.float32))  # the reset states
    actions = jnp.array([[0, 1, 1], [1, 0, 1]], jnp.int32)
    both = jax.jit(jax.vmap(cartpole.step_to))(fresh, state, actions)
    one_step = jax.jit(cartpole.step_to)
    for j in range(2):
        one = one_step(fresh[j], jax.tree.map(lambda a: a[j], state), actions[j])  # noqa: B023
        for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(both)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b[j]))
    assert bool(both[4][1, 0]) and int(both[1].time[1, 0]) == 0
    np.testing.assert_array_equal(np.asarray(both[0][1, 0]), np.float32(0.01))  # the fresh state


def test_rollout_shapes_returns_and_auto_reset():
    roll = jax.jit(envs.rollout, static_argnums=(0, 3, 4))
    key = jax.random.PRNGKey(3)
    traj = roll(_lean_policy, 0.0, key, 6, 150)  # uniform random play
    assert traj.obs.shape == (150, 6, 4) and traj.actions.shape == (150, 6)
    np.testing.assert_allclose(np.asarray(traj.log_probs), np.log(0.5), rtol=1e-6)  # uniform
    dones = np.asarray(traj.dones)
    assert dones.any(axis=0).all()  # random play: every first episode ends within 150 steps
    t, i = np.argwhere(dones)[0]
    assert np.all(np.abs(np.asarray(traj.obs[t + 1, i])) <= 0.05)  # the next obs is a reset
    # Between resets, obs[t + 1] is the dynamics of (obs[t], action[t]).
    ok = ~dones[:-1]
    np.testing.assert_allclose(
        np.asarray(jax.jit(cartpole.dynamics)(traj.obs[:-1], traj.actions[:-1]))[ok],
        np.asarray(traj.obs[1:])[ok],
        rtol=1e-6,
        atol=1e-6,
    )
    returns = np.asarray(_returns(traj.rewards, traj.dones))
    np.testing.assert_array_equal(returns, dones.argmax(axis=0) + 1)  # reward 1 per step
    lean = roll(_lean_policy, 50.0, key, 6, 150)  # same compiled rollout: params are traced
    balanced = np.asarray(_returns(lean.rewards, lean.dones))
    assert balanced.mean() > returns.mean()  # the leaning policy keeps the pole up longer
