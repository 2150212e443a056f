"""DCGAN and CycleGAN models: shapes, exact parameter counts, the conditional inputs, and batch
norm's train/eval behaviour checked against the formula. Shapes and counts come from
`jax.eval_shape` (no compile); each value check is one jitted call (compiles dominate here)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.models.dcgan import CycleGenerator, Discriminator, Generator, PatchDiscriminator

KEY = jax.random.PRNGKey(0)


def count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def abstract_params(model, *args):
    return jax.eval_shape(functools.partial(model.init, train=False), KEY, *args)["params"]


def test_generator_shapes_and_counts():
    z = jnp.zeros((3, 16))
    g = Generator(channels=(8, 4))
    # dense 16 x 392 (no bias) + BN 2 x 392 + convT 4*4*8*4 (no bias) + BN 2 x 4 + convT 4*4*4 + 1
    assert count(abstract_params(g, z)) == 16 * 392 + 784 + 512 + 8 + 65
    gc = Generator(channels=(8, 4), classes=10)
    assert count(abstract_params(gc, z, jnp.zeros(3, jnp.int32))) == 7641 + 10 * 392  # one-hot rows
    v = jax.eval_shape(g.init, KEY, z)
    assert jax.eval_shape(g.apply, v, jnp.zeros((2, 3, 16))).shape == (2, 3, 28, 28, 1)
    with pytest.raises(ValueError, match="needs labels"):
        jax.eval_shape(gc.init, KEY, z)


def test_conditional_generator_values_and_batch_norm():
    g = Generator(channels=(8, 4), classes=10)

    @jax.jit
    def run(z, y, z_other_rows):
        v = g.init(KEY, z, y)
        train, upd = g.apply(v, z, y, train=True, mutable=["batch_stats"])
        train_other = g.apply(v, z_other_rows, y, train=True, mutable=["batch_stats"])[0]
        evals = g.apply(v, z, y), g.apply(v, z_other_rows, y)
        return v, upd, train, train_other, evals

    z = jax.random.normal(KEY, (4, 16))
    z = z.at[1].set(z[0]).at[2].set(z[0])  # rows 0-2 share z
    y = jnp.array([5, 5, 6, 1])  # rows 0 and 1: same z and label; row 2: another label
    z_other = z.at[3].set(-z[3])  # only row 3 differs
    v, upd, train, train_other, (ev, ev_other) = run(z, y, z_other)
    assert float(jnp.max(jnp.abs(train))) < 1.0  # tanh
    np.testing.assert_allclose(train[0], train[1], rtol=1e-6)
    assert float(jnp.max(jnp.abs(train[0] - train[2]))) > 1e-3  # the label changes the image
    # Running statistics move 1 - momentum = 0.1 of the way to the batch mean of the projection
    # of [z; onehot(y)], and to its unbiased variance (PyTorch's convention).
    h = np.concatenate([np.asarray(z), np.eye(10)[np.asarray(y)]], axis=1)
    h = h @ np.asarray(v["params"]["project"]["kernel"])
    stats = upd["batch_stats"]["bn_project"]
    np.testing.assert_allclose(stats["mean"], 0.1 * h.mean(0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * h.var(0, ddof=1), rtol=1e-4)
    # Eval mode is per example (running statistics); train mode mixes the batch.
    np.testing.assert_allclose(ev[:3], ev_other[:3], rtol=1e-6)
    assert float(jnp.max(jnp.abs(train[0] - train_other[0]))) > 1e-4


def test_discriminator_counts_and_labels():
    x = jax.random.uniform(KEY, (3, 28, 28, 1))
    y = jnp.array([1, 2, 3])
    # conv 4*4*C*4 + 4, conv 4*4*4*8 (no bias: BN), BN 2 x 8, dense 392 + 1 (+ embed 10 x 392)
    body = 4 + 512 + 16 + 393
    concat = Discriminator(channels=(4, 8), classes=10, conditioning="concat")
    projection = Discriminator(channels=(4, 8), classes=10, conditioning="projection")
    assert count(abstract_params(concat, x, y)) == 16 * 11 * 4 + body
    assert count(abstract_params(projection, x, y)) == 16 * 1 * 4 + body + 10 * 392
    plain = Discriminator(channels=(4, 8), batch_norm=False)
    vp = jax.eval_shape(plain.init, KEY, x)
    assert "batch_stats" not in vp and jax.eval_shape(plain.apply, vp, x[None]).shape == (1, 3)

    @jax.jit
    def logits(x2, y2):  # eval mode: each row on its own
        return [d.apply(d.init(KEY, x2, y2), x2, y2) for d in (concat, projection)]

    y_other = jnp.array([1, 2, 4])
    for out in logits(jnp.concatenate([x, x]), jnp.concatenate([y, y_other])):
        assert out.shape == (6,)
        np.testing.assert_allclose(out[:2], out[3:5], rtol=1e-5)
        assert float(jnp.abs(out[2] - out[5])) > 0  # the label changes the logit


def test_cycle_models_shapes():
    g = CycleGenerator(features=2, blocks=1, mixing_width=8)
    d = PatchDiscriminator(features=2)
    x = jax.random.uniform(KEY, (4, 28, 28, 1), minval=-1, maxval=1)
    x = x.at[2].set(x[0])  # rows 0 and 2 equal, their neighbours differ

    @jax.jit
    def run(x):
        v = g.init(KEY, x)
        return v, g.apply(v, x), d.apply(d.init(KEY, x), x)

    v, y, logits = run(x)
    assert set(v) == {"params"}  # instance norm: no running statistics
    assert y.shape == x.shape and float(jnp.max(jnp.abs(y))) < 1.0
    np.testing.assert_allclose(y[0], y[2], rtol=1e-5, atol=1e-6)  # each image on its own
    assert logits.shape == (4, 7, 7)
    assert jax.eval_shape(g.apply, v, jnp.zeros((2, 3, 28, 28, 1))).shape == (2, 3, 28, 28, 1)
