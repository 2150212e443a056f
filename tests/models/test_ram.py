"""RAM and soft attention: shapes, eval determinism, stop-gradients, jit and vmap."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.models.ram import RAM, SoftAttention, candidate_grid, gaussian_log_prob

SMALL = {"base": 4, "scales": 2, "what_features": 6, "where_features": 5, "glimpse_features": 7}
X = jax.random.uniform(jax.random.PRNGKey(0), (3, 16, 16, 1))


@functools.cache
def _ram(**kw):
    """A tiny RAM, its params, and its apply jitted (eager flax would compile op by op); cached,
    so the tests that use one variant share its compiles."""
    model = RAM(glimpses=3, core_features=8, **SMALL, **kw)
    params = jax.jit(model.init)(jax.random.PRNGKey(1), X)["params"]
    return model, params, jax.jit(model.apply, static_argnames=("train",))


def test_shapes_and_eval_is_the_mean_path():
    _, params, apply = _ram(core="lstm")
    out = apply({"params": params}, X)
    shapes = {k: v.shape for k, v in out.items()}
    assert shapes == {
        "logits": (3, 10),
        "locations": (3, 3, 2),
        "log_probs": (3, 3),
        "baselines": (3, 3),
    }
    # eval looks at the mean: log pi of the mean is the density's maximum, -2 log(sd sqrt(2 pi))
    np.testing.assert_allclose(out["log_probs"], gaussian_log_prob(jnp.zeros(2), 0.0, 0.17))
    rngs = {"glimpse": jax.random.PRNGKey(2)}
    a = apply({"params": params}, X, train=True, rngs=rngs)
    b = apply({"params": params}, X, train=True, rngs=rngs)
    np.testing.assert_array_equal(a["locations"], b["locations"])
    assert not np.allclose(a["locations"], out["locations"])
    assert float(jnp.abs(a["locations"]).max()) <= 1.0


def test_gaussian_log_prob_matches_scipy():
    from scipy.stats import norm

    x, m = np.array([0.3, -0.2]), np.array([0.1, 0.4])
    want = norm.logpdf(x, m, 0.25).sum()
    np.testing.assert_allclose(
        gaussian_log_prob(jnp.asarray(x), jnp.asarray(m), 0.25), want, rtol=1e-6
    )


def test_random_policy_ignores_parameters_and_is_uniform():
    _, params, apply = _ram(policy="random")
    zeroed = jax.tree.map(jnp.zeros_like, params)
    a = apply({"params": params}, X)["locations"]
    b = apply({"params": zeroed}, X)["locations"]
    np.testing.assert_array_equal(a, b)  # fixed eval keys, independent of the weights
    big = jnp.zeros((400, 16, 16, 1))
    locs = apply({"params": params}, big, train=True, rngs={"glimpse": jax.random.PRNGKey(3)})
    flat = np.asarray(locs["locations"]).ravel()
    assert abs(flat.mean()) < 0.05 and abs(flat.var() - 1 / 3) < 0.03  # U[-1, 1]: 0, 1/3


def test_policy_and_baseline_send_no_gradient_to_core_or_glimpse_net():
    model, params, _ = _ram()
    rngs = {"glimpse": jax.random.PRNGKey(4)}

    def rl_terms(p):
        out = model.apply({"params": p}, X, train=True, rngs=rngs)
        return out["log_probs"].sum() + out["baselines"].sum()

    g = jax.jit(jax.grad(rl_terms))(params)
    for name in ("core", "glimpse", "classifier"):
        assert all(float(jnp.abs(v).max()) == 0.0 for v in jax.tree.leaves(g[name])), name
    assert float(jnp.abs(g["location"]["kernel"]).max()) > 0.0
    assert float(jnp.abs(g["baseline"]["kernel"]).max()) > 0.0


def test_jit_and_vmap_over_sampling_keys():
    model, params, apply = _ram()
    keys = jax.random.split(jax.random.PRNGKey(5), 4)
    fn = jax.jit(
        jax.vmap(lambda k: model.apply({"params": params}, X, train=True, rngs={"glimpse": k}))
    )
    out = fn(keys)
    assert out["logits"].shape == (4, 3, 10)
    one = apply({"params": params}, X, train=True, rngs={"glimpse": keys[2]})
    np.testing.assert_allclose(out["logits"][2], one["logits"], rtol=1e-5, atol=1e-6)


def test_soft_attention_weights_and_grid():
    np.testing.assert_allclose(
        candidate_grid(2), [[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]
    )
    model = SoftAttention(steps=1, grid=2, core_features=8, attention_features=4, **SMALL)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), X)

    def first_logit(v):
        out = model.apply(v, X)
        return out["logits"][:, 0].sum(), out

    # one compile for the outputs and their gradient
    (_, out), g = jax.jit(jax.value_and_grad(first_logit, has_aux=True))(variables)
    assert out["logits"].shape == (3, 10) and out["weights"].shape == (3, 1, 4)
    np.testing.assert_allclose(out["weights"].sum(-1), 1.0, rtol=1e-6)
    # end to end differentiable: the attention scores get a gradient from the logits
    assert float(jnp.abs(g["params"]["att_score"]["kernel"]).max()) > 0.0


def test_mnist_cnn_global_max_reads_a_canvas():
    from dl.models.cnn import MnistCNN

    model = MnistCNN(channels=(2, 3, 4), hidden=5, readout="global_max")
    canvas = jnp.zeros((2, 40, 40, 1))
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), canvas)
    assert jax.jit(model.apply)(variables, canvas).shape == (2, 10)
    with pytest.raises(AssertionError):
        MnistCNN(channels=(2, 3), hidden=5, readout="flatten").init(jax.random.PRNGKey(0), canvas)
