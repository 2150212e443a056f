"""dl.eval.attribution on linear models, where the optimum and the saliency are closed-form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.eval.attribution import deletion_test, gradient_ascent, saliency


def _w(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def test_ascent_on_linear_objective_reaches_w_over_l2():
    # max <w, x> - l2/2 ||x||^2 has the unique optimum x* = w / l2.
    w = _w((6, 5, 1))
    x, trace = gradient_ascent(
        lambda x: jnp.sum(w * x), jnp.zeros_like(w), steps=200, learning_rate=0.5, l2=0.5
    )
    np.testing.assert_allclose(x, w / 0.5, rtol=1e-5, atol=1e-5)
    assert trace.shape == (200,) and float(trace[0]) == 0.0
    assert np.all(np.diff(np.asarray(trace))[:20] > 0)  # concave: ascent raises <w, x> early on


def test_ascent_with_bounds_is_the_clipped_optimum():
    # Separable and concave: each coordinate's box optimum is clip(w_i / l2, lo, hi).
    w = _w((4, 4, 2), seed=1)
    x, _ = gradient_ascent(
        lambda x: jnp.sum(w * x),
        jnp.full_like(w, 0.5),
        steps=300,
        learning_rate=0.5,
        l2=1.0,
        bounds=(0.0, 1.0),
    )
    np.testing.assert_allclose(x, np.clip(np.asarray(w), 0.0, 1.0), atol=1e-5)


def test_jitter_is_invisible_to_a_shift_invariant_objective():
    # sum(x)^2 / 2 is unchanged by circular shifts, so jittered gradients equal plain ones.
    def f(x):
        return -0.5 * (jnp.sum(x) - 3.0) ** 2

    x0 = _w((5, 5, 1), seed=2)
    plain, _ = gradient_ascent(f, x0, steps=30, learning_rate=0.01)
    jittered, _ = gradient_ascent(
        f, x0, steps=30, learning_rate=0.01, jitter=2, key=jax.random.PRNGKey(3)
    )
    np.testing.assert_allclose(jittered, plain, rtol=1e-5, atol=1e-5)
    # ... while a position-dependent objective sees the shifts (the ascent differs).
    w = _w((5, 5, 1), seed=4)
    a, _ = gradient_ascent(lambda x: jnp.sum(w * x), x0, steps=5, learning_rate=0.1)
    b, _ = gradient_ascent(
        lambda x: jnp.sum(w * x),
        x0,
        steps=5,
        learning_rate=0.1,
        jitter=2,
        key=jax.random.PRNGKey(3),
    )
    assert not np.allclose(a, b)


def test_jitter_needs_a_key():
    with pytest.raises(ValueError, match="PRNG key"):
        gradient_ascent(jnp.sum, jnp.zeros((3, 3, 1)), steps=1, learning_rate=0.1, jitter=1)


def test_vmap_over_class_objectives_equals_one_at_a_time():
    wk = _w((3, 4, 4, 1), seed=5)  # a linear "model" with 3 classes

    def solve(c, key):
        return gradient_ascent(
            lambda x: jnp.sum(wk[c] * x),
            jnp.zeros((4, 4, 1)),
            steps=20,
            learning_rate=0.2,
            l2=0.1,
            jitter=1,
            key=key,
            bounds=(0.0, 1.0),
        )[0]

    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    batched = jax.jit(jax.vmap(solve))(jnp.arange(3), keys)
    for c in range(3):
        np.testing.assert_allclose(batched[c], solve(c, keys[c]), rtol=1e-6, atol=1e-6)


def test_saliency_of_a_linear_model_is_abs_weight_max_over_channels():
    w = _w((4, 3, 2, 5), seed=6)  # [H, W, C, K]

    def logits(x):
        return jnp.einsum("bhwc,hwck->bk", x, w)

    x = _w((7, 4, 3, 2), seed=7)
    labels = jnp.array([0, 1, 2, 3, 4, 0, 1])
    got = saliency(logits, x, labels)
    want = np.abs(np.asarray(w))[..., np.asarray(labels)].max(axis=2).transpose(2, 0, 1)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_deletion_test_against_numpy_masking():
    w = _w((5, 5, 1, 3), seed=8)

    def probs(x):
        return jax.nn.softmax(jnp.einsum("bhwc,hwck->bk", x, w), axis=-1)

    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.uniform(size=(6, 5, 5, 1)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, 6), jnp.int32)
    sal = saliency(lambda x: jnp.einsum("bhwc,hwck->bk", x, w), x, labels)
    key = jax.random.PRNGKey(1)
    out = deletion_test(probs, x, labels, sal, fraction=0.2, key=key)

    noise = np.asarray(jax.random.uniform(key, (6, 5, 5)))
    xn, k = np.asarray(x), 5  # round(0.2 * 25)

    def delete(scores):
        y = xn.copy()
        for b in range(6):
            top = np.argsort(-scores[b].ravel(), kind="stable")[:k]
            y[b].reshape(25, 1)[top] = 0.0
        return np.asarray(probs(jnp.asarray(y)))[np.arange(6), np.asarray(labels)]

    np.testing.assert_allclose(out["salient"], delete(np.asarray(sal)), rtol=1e-5)
    np.testing.assert_allclose(out["random"], delete(noise), rtol=1e-5)
    p0 = np.asarray(probs(x))[np.arange(6), np.asarray(labels)]
    np.testing.assert_allclose(out["original"], p0, rtol=1e-6)
    np.testing.assert_array_equal(out["salient_wins"], out["salient"] < out["random"])
