"""dl.objectives.policy_gradient against numpy loops and the REINFORCE formula by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.envs.cartpole import Trajectory
from dl.objectives import policy_gradient as pg


def _episodes(rng, t=12, n=3):
    rewards = rng.normal(size=(t, n)).astype(np.float32)
    dones = rng.random((t, n)) < 0.25
    dones[:, 0] = False  # one environment never finishes: its whole window is masked out
    return rewards, dones


def test_reward_to_go_and_mask_match_numpy_loops():
    rewards, dones = _episodes(np.random.default_rng(0))
    gamma = 0.9
    want = np.zeros_like(rewards)
    want_mask = np.zeros_like(rewards)
    for i in range(rewards.shape[1]):
        g, ends_later = 0.0, False
        for t in reversed(range(rewards.shape[0])):
            g = rewards[t, i] + (0.0 if dones[t, i] else gamma * g)
            ends_later = ends_later or dones[t, i]
            want[t, i], want_mask[t, i] = g, float(ends_later)
    got = jax.jit(pg.reward_to_go, static_argnums=2)(rewards, dones, gamma)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(jax.jit(pg.complete_mask)(dones)), want_mask)
    assert want_mask[:, 0].sum() == 0 and want_mask.sum() > 0


def _linear(params, obs):
    return obs @ params


@jax.jit  # the estimator code is traced: one compilation serves all three
def _terms(params, extra, traj, code):
    kw = {"policy_apply": _linear, "value_apply": _linear, "gamma": 0.95, "ema_decay": 0.8}
    terms = pg.reinforce_terms(params, extra, traj, code, **kw)
    grad = jax.grad(lambda p: pg.reinforce_terms(p, extra, traj, code, **kw)[0])(params)
    del kw["ema_decay"]
    every = pg.estimator_gradients(params, extra, traj, **kw)  # all three at once, by vjp
    return grad, terms, every


@pytest.mark.parametrize("estimator", pg.ESTIMATORS)
def test_surrogate_gradient_is_the_reinforce_formula(estimator):
    rng = np.random.default_rng(1)
    t, n, d, k = 12, 3, 4, 2
    rewards, dones = _episodes(rng, t, n)
    obs = rng.normal(size=(t, n, d)).astype(np.float32)
    actions = rng.integers(k, size=(t, n)).astype(np.int32)
    traj = Trajectory(obs, actions, None, rewards, dones, dones, dones)
    params = {
        "policy": jnp.asarray(rng.normal(size=(d, k)), jnp.float32),
        "value": jnp.asarray(rng.normal(size=(d, 1)), jnp.float32),
    }
    extra = {"baseline": jnp.float32(0.7)}
    code = pg.ESTIMATORS.index(estimator)
    grad, (_, value_loss, _, new_extra), every = _terms(params, extra, traj, jnp.int32(code))
    # By hand, in float64: grad_W log softmax(s W)[a] = s (onehot(a) - softmax(s W))^T.
    w, v = np.asarray(params["policy"], np.float64), np.asarray(params["value"], np.float64)
    returns, mask = np.zeros((t, n)), np.zeros((t, n))
    for i in range(n):
        g, later = 0.0, False
        for s in reversed(range(t)):
            g = rewards[s, i] + (0.0 if dones[s, i] else 0.95 * g)
            later = later or dones[s, i]
            returns[s, i], mask[s, i] = g, later
    baseline = {
        "none": 0.0 * returns,
        "moving_average": 0.7 + 0.0 * returns,
        "value": (obs @ v)[..., 0],
    }[estimator]
    want = np.zeros((d, k))
    for s in range(t):
        for i in range(n):
            z = obs[s, i] @ w
            p = np.exp(z - z.max())
            p /= p.sum()
            score = np.outer(obs[s, i], np.eye(k)[actions[s, i]] - p)
            want += mask[s, i] * score * (returns[s, i] - baseline[s, i])
    want /= n
    np.testing.assert_allclose(-np.asarray(grad["policy"]), want, rtol=2e-4, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(grad["value"]), 0.0)  # the baseline is stopped
    np.testing.assert_allclose(
        np.asarray(every[code]), np.asarray(grad["policy"]), rtol=1e-5, atol=1e-5
    )

    values = (obs @ v)[..., 0]
    np.testing.assert_allclose(
        float(value_loss), 0.5 * np.sum(mask * (values - returns) ** 2) / mask.sum(), rtol=1e-4
    )
    ema = 0.8 * 0.7 + 0.2 * np.sum(mask * returns) / mask.sum()
    np.testing.assert_allclose(float(new_extra["baseline"]), ema, rtol=1e-5)
