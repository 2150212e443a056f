"""The hybrid loss: REINFORCE and baseline gradients against the hand formulas."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dl.models.ram import RAM
from dl.objectives.hard_attention import (
    attention_eval,
    attention_loss,
    baseline_loss,
    reinforce_surrogate,
)

SD = 0.3  # the location policy's standard deviation


@functools.cache
def _one_glimpse_ram():
    """One tiny T = 1 RAM, five 16x16 images and its params, shared by the tests below: each
    distinct model or shape costs a compile of its init."""
    model = RAM(
        glimpses=1,
        base=4,
        scales=2,
        what_features=4,
        where_features=3,
        glimpse_features=5,
        core_features=6,
        loc_std=SD,
    )
    x = jax.random.uniform(jax.random.PRNGKey(0), (5, 16, 16, 1))
    return model, x, jax.jit(model.init)(jax.random.PRNGKey(1), x)["params"]


def test_surrogate_gradients_are_the_reinforce_formulas():
    logp = jnp.array([[-1.0, -2.0], [-0.5, -0.1], [-3.0, -1.0]])
    reward = jnp.array([1.0, 0.0, 1.0])
    base = jnp.array([[0.2, 0.7], [0.4, 0.1], [0.9, 0.5]])
    mask = jnp.array([1.0, 1.0, 0.0])  # the padded row counts for nothing
    g_logp, g_base = jax.grad(reinforce_surrogate, argnums=(0, 2))(logp, reward, base, mask)
    want = -(reward[:, None] - base) * mask[:, None] / 2.0
    np.testing.assert_allclose(g_logp, want, rtol=1e-6)
    assert float(jnp.abs(g_base).max()) == 0.0  # the baseline is not trained by the policy term
    g_b = jax.grad(baseline_loss, argnums=1)(reward, base, mask)
    np.testing.assert_allclose(
        g_b, -2.0 * (reward[:, None] - base) * mask[:, None] / 2.0, rtol=1e-6
    )


def test_location_bias_gradient_on_a_one_glimpse_model():
    # T = 1: h_0 = 0, so mu = tanh(b_l) and the kernel's gradient is 0; by hand,
    # d/db_l of mean_n -(R_n - b_n) log N(l_n | mu, sd^2) = mean_n -(R_n - b_n) (l_n - mu)/sd^2 (1 - mu^2)
    sd = SD
    model, x, params = _one_glimpse_ram()
    params = jax.tree.map(jnp.asarray, params)  # fresh dicts: the cached ones stay untouched
    params["location"]["bias"] = jnp.array([0.3, -0.4])  # a mean off the centre
    params["location"]["kernel"] = params["location"]["kernel"] + 0.5  # unused at t = 1
    batch = {"x": x, "y": jnp.array([0, 1, 2, 3, 4]), "mask": jnp.ones(5)}
    rng = jax.random.PRNGKey(7)
    loss_fn = attention_loss(model, baseline_weight=0.0)
    grads = jax.jit(jax.grad(lambda p: loss_fn(p, {}, batch, rng)[0]))(params)
    apply = jax.jit(lambda p: model.apply({"params": p}, x, train=True, rngs={"glimpse": rng}))
    out = apply(params)
    reward = (out["logits"].argmax(-1) == batch["y"]).astype(jnp.float32)
    mu = jnp.tanh(params["location"]["bias"])
    # the unclipped sample: sd 0.3 around |mu| < 0.4 leaves [-1, 1] rarely; recover it from log pi
    loc = out["locations"][:, 0]
    assert float(jnp.abs(loc).max()) < 1.0  # no clipping happened in this draw
    adv = reward - out["baselines"][:, 0]
    want = jnp.mean(-adv[:, None] * (loc - mu) / sd**2 * (1 - mu**2), axis=0)
    np.testing.assert_allclose(grads["location"]["bias"], want, rtol=1e-4, atol=1e-6)
    assert float(jnp.abs(grads["location"]["kernel"]).max()) == 0.0


def test_loss_terms_and_eval_sums():
    model, x, params = _one_glimpse_ram()
    batch = {"x": x, "y": jnp.array([1, 2, 3, 4, 5]), "mask": jnp.array([1.0, 1.0, 1.0, 1.0, 0.0])}
    rng = jax.random.PRNGKey(2)
    total, (m, _) = jax.jit(attention_loss(model, baseline_weight=0.5))(params, {}, batch, rng)
    np.testing.assert_allclose(
        total, m["data_loss"] + m["reinforce"] + 0.5 * m["baseline_mse"], rtol=1e-5
    )
    ce_only, (m2, _) = jax.jit(attention_loss(model, reinforce=False))(params, {}, batch, rng)
    assert "reinforce" not in m2 and float(ce_only) == float(m["data_loss"])
    sums = attention_eval(model)(params, {}, batch)
    assert float(sums["count"]) == 4.0 and 0.0 <= float(sums["accuracy"]) <= 4.0
