"""The two-player engine: both players move in one step, d_steps, vmapped seeds, the non-finite
guard, and exact resume through the loop's orbax checkpoints."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl import optim
from dl.objectives import gan
from dl.train import adversarial as adv
from dl.train.loop import NonFiniteError

B = 8


def _gen(g, z):
    return z @ g["w"] + g["b"]


def _disc(d, x):
    return jnp.tanh(x @ d["w1"]) @ d["w2"]


def _d_loss(d_params, d_extra, g_state, batch, rng):
    fake = _gen(g_state.params, jax.random.normal(rng, (B, 2)))
    real = batch["x"] + jax.random.normal(jax.random.fold_in(rng, 1), (B, 2))
    loss = gan.discriminator_loss(_disc(d_params, real), _disc(d_params, fake))
    return loss + jnp.log(batch["ok"]), ({"real_mean": jnp.mean(real)}, d_extra)


def _g_loss(g_params, g_extra, d_state, batch, rng):
    fake = _gen(g_params, jax.random.normal(rng, (B, 2)))
    return gan.generator_loss_nonsaturating(_disc(d_state.params, fake)), ({}, g_extra)


def _make_state(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return adv.create(
        d_apply=None,
        d_params={"w1": jax.random.normal(k1, (2, 4)), "w2": jax.random.normal(k2, (4,))},
        d_tx=optim.adam(1e-2),
        g_apply=None,
        g_params={"w": jnp.eye(2), "b": jnp.zeros(2)},
        g_tx=optim.adam(1e-2),
        rng=k3,
    )


_init = jax.jit(_make_state)  # one compilation, not one per eager initializer op
_step2 = adv.jit_adversarial_step(_d_loss, _g_loss, d_steps=2)  # shared by two tests


def _batch(step):
    return {"x": np.full((1, 2), 3.0, np.float32), "ok": np.float32(1.0)}


def test_one_step_moves_both_players_and_counts_d_steps():
    state = _init(jax.random.PRNGKey(0))
    before = jax.tree.map(np.asarray, state.params)
    new, metrics = _step2(state, _batch(0))
    assert int(new.d.step) == 2 and int(new.g.step) == 1 and int(new.step) == 1
    for side in ("d", "g"):
        for k, v in new.params[side].items():
            assert not np.allclose(np.asarray(v), before[side][k]), f"{side}/{k} did not move"
    want = {"d_loss", "g_loss", "loss", "d_real_mean", "d_grad_norm", "g_update_norm"}
    assert want <= set(metrics)
    assert float(metrics["loss"]) == float(metrics["g_loss"])


def test_nonfinite_guard_names_the_step(tmp_path):
    state = _init(jax.random.PRNGKey(0))

    def batch_fn(s):  # the discriminator's loss becomes -inf at step 3
        return {**_batch(s), "ok": np.float32(0.0 if s == 2 else 1.0)}

    with pytest.raises(NonFiniteError, match="step 3"):
        adv.train(
            state,
            train_step=_step2,
            batch_fn=batch_fn,
            num_steps=5,
            workdir=str(tmp_path),
            progress=False,
            log_every=1,
        )


def test_vmapped_seeds_resume_exactly(tmp_path):
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    step = adv.jit_adversarial_step(_d_loss, _g_loss, seeds=True)
    kw = {"train_step": step, "batch_fn": _batch, "progress": False, "log_every": 1}
    straight, rows, _ = adv.train(
        adv.init_seeds(_make_state, keys), num_steps=4, workdir=str(tmp_path / "a"), **kw
    )
    assert jnp.shape(straight.g.step) == (2,)
    assert {"d_loss/0", "d_loss/1", "g_loss/1"} <= set(rows[0])
    assert rows[0]["d_loss/0"] != rows[0]["d_loss/1"]  # two different seeds
    half = str(tmp_path / "b")
    adv.train(
        adv.init_seeds(_make_state, keys), num_steps=2, workdir=half, checkpoint_every=2, **kw
    )
    resumed, _, _ = adv.train(
        adv.init_seeds(_make_state, keys), num_steps=4, workdir=half, resume=True, **kw
    )
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with open(os.path.join(half, "metrics.jsonl")) as f:
        resumed_rows = [json.loads(line) for line in f]
    assert resumed_rows == rows
    one = adv.seed_slice(resumed, 1)
    assert jnp.shape(one.d.params["w1"]) == (2, 4)


def test_simultaneous_generator_step_sees_the_starting_discriminator():
    """With simultaneous=True, G's update does not depend on how many D updates precede it;
    alternating, it does."""
    key = jax.random.PRNGKey(2)
    g_after = {}
    for name, step in {
        "sim1": adv.jit_adversarial_step(_d_loss, _g_loss, simultaneous=True),
        "sim2": adv.jit_adversarial_step(_d_loss, _g_loss, d_steps=2, simultaneous=True),
        "alt2": _step2,
    }.items():
        new, metrics = step(_init(key), _batch(0))
        g_after[name] = (np.asarray(new.g.params["w"]), float(metrics["g_grad_norm"]))
    np.testing.assert_allclose(g_after["sim1"][0], g_after["sim2"][0], rtol=1e-6)
    assert g_after["sim1"][1] == pytest.approx(g_after["sim2"][1], rel=1e-6)
    # (Adam's first update is about lr * sign(grad), so compare the gradients, not the params.)
    assert g_after["sim2"][1] != pytest.approx(g_after["alt2"][1], rel=1e-3)
