"""dl.train.policy_gradient: exact resume, metrics rows and the non-finite guard."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl import envs, optim
from dl.objectives.policy_gradient import make_reinforce_loss
from dl.train.loop import NonFiniteError
from dl.train.policy_gradient import history, train_policies


def _linear(params, obs):
    return obs @ params["w"] + params["b"]


# One factory for every run of the test: the runs share one compiled chunk.
_MAKE_LOSS = make_reinforce_loss(
    functools.partial(envs.rollout, num_envs=3, num_steps=25),
    policy_apply=_linear,
    value_apply=_linear,
    gamma=0.99,
    ema_decay=0.9,
    value_coef=0.5,
)
_TX = optim.adam(1e-2)  # static in the TrainState: a new one would compile anew


def _setup():
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    w = jnp.asarray(np.random.default_rng(0).normal(0, 0.1, (2, 4, 2)), jnp.float32)
    params = {
        "policy": {"w": w, "b": jnp.zeros((2, 2))},
        "value": {"w": jnp.zeros((2, 4, 1)), "b": jnp.zeros((2, 1))},
    }
    extra = {"baseline": jnp.zeros(2)}
    hparams = {"estimator": jnp.array([1, 2], jnp.int32)}  # moving average, value
    return params, extra, keys, hparams, _MAKE_LOSS


def _train(workdir, num_steps, resume):
    params, extra, keys, hparams, make_loss = _setup()
    return train_policies(
        params,
        extra,
        keys,
        hparams,
        make_loss=make_loss,
        tx=_TX,
        num_steps=num_steps,
        chunk_steps=2,
        workdir=str(workdir),
        eval_fn=lambda state: {"baseline_now": state.extra["baseline"]},
        eval_every=2,
        checkpoint_every=2,
        resume=resume,
        progress=False,
    )


def test_resumed_run_is_bit_identical(tmp_path):
    whole, rows = _train(tmp_path / "whole", 4, resume=False)
    _train(tmp_path / "split", 2, resume=True)  # "interrupted" after 2 steps
    split, split_rows = _train(tmp_path / "split", 4, resume=True)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(split)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert rows == split_rows
    with open(os.path.join(tmp_path / "split", "metrics.jsonl")) as f:
        assert [json.loads(line) for line in f] == rows
    steps, ret = history(rows, "episode_return", 2)
    assert steps.tolist() == [1, 2, 3, 4] and np.all(ret >= 1)
    assert int(whole.step[0]) == 4 and np.any(np.asarray(whole.extra["baseline"]) > 0)


def test_non_finite_metric_stops_the_run(tmp_path):
    def make_loss(hp):
        def loss_fn(params, extra, batch, rng):
            loss = jnp.sum(params["w"]) * jnp.where(batch["step"] >= 1, jnp.nan, 1.0)
            return loss, ({}, extra)

        return loss_fn

    with pytest.raises(NonFiniteError, match="at step 2"):
        train_policies(
            {"w": jnp.ones((2, 3))},
            {},
            jax.random.split(jax.random.PRNGKey(0), 2),
            {"x": jnp.zeros(2)},
            make_loss=make_loss,
            tx=optim.sgd(0.1),
            num_steps=4,
            chunk_steps=4,
            workdir=str(tmp_path),
            progress=False,
        )
