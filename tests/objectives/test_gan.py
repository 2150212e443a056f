"""GAN objectives: against torch's BCEWithLogits and numpy formulas, finite at logits of +-1e4,
and the unrolled generator gradient against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dl import optim
from dl.objectives import gan
from dl.ops.gradcheck import assert_gradcheck

RNG = np.random.default_rng(0)
REAL = RNG.normal(size=7).astype(np.float32) * 3
FAKE = RNG.normal(size=5).astype(np.float32) * 3


def _bce(logits, target):
    t = torch.from_numpy(np.asarray(logits, np.float64))
    return float(F.binary_cross_entropy_with_logits(t, torch.full_like(t, target)))


def _sig(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def test_log_losses_match_torch_and_naive_formula():
    d = float(gan.discriminator_loss(REAL, FAKE))
    assert d == pytest.approx(_bce(REAL, 1.0) + _bce(FAKE, 0.0), rel=1e-5)
    naive_d = -np.mean(np.log(_sig(REAL))) - np.mean(np.log(1 - _sig(FAKE)))
    assert d == pytest.approx(naive_d, rel=1e-5)
    mm = float(gan.generator_loss(FAKE, "minimax"))
    assert mm == pytest.approx(-_bce(FAKE, 0.0), rel=1e-5)
    assert mm == pytest.approx(np.mean(np.log(1 - _sig(FAKE))), rel=1e-5)
    ns = float(gan.generator_loss(FAKE, "nonsaturating"))
    assert ns == pytest.approx(_bce(FAKE, 1.0), rel=1e-5)
    assert ns == pytest.approx(-np.mean(np.log(_sig(FAKE))), rel=1e-5)
    with pytest.raises(ValueError, match="unknown generator loss"):
        gan.generator_loss(FAKE, "wasserstein")


@pytest.mark.parametrize("big", [1e4, -1e4])
def test_log_losses_finite_at_huge_logits(big):
    x = jnp.array([big, -big, 0.0], jnp.float32)
    for fn in (
        lambda v: gan.discriminator_loss(v, v),
        gan.generator_loss_minimax,
        gan.generator_loss_nonsaturating,
    ):
        value, grad = jax.jit(jax.value_and_grad(fn))(x)
        assert np.isfinite(value) and np.all(np.isfinite(grad))
    # Values and gradients at the extremes are the limits: -log sigmoid(-1e4) = 1e4.
    assert float(gan.generator_loss_nonsaturating(jnp.array([-1e4]))) == pytest.approx(1e4)
    g = jax.grad(gan.generator_loss_nonsaturating)(jnp.array([-1e4]))
    assert float(g[0]) == pytest.approx(-1.0)  # non-saturating: full gradient when D rejects
    g = jax.grad(gan.generator_loss_minimax)(jnp.array([-1e4]))
    assert float(g[0]) == pytest.approx(0.0, abs=1e-30)  # minimax: saturated


def test_least_squares_and_cyclegan_losses_against_numpy():
    r, f = REAL, FAKE
    ls_d = 0.5 * (np.mean((r - 1) ** 2) + np.mean(f**2))
    assert float(gan.least_squares_discriminator_loss(r, f)) == pytest.approx(ls_d, rel=1e-5)
    assert float(gan.least_squares_generator_loss(f)) == pytest.approx(np.mean((f - 1) ** 2))
    x, y, xc, yc, xi, yi = (RNG.normal(size=(2, 4, 4, 1)).astype(np.float32) for _ in range(6))
    loss, m = gan.cyclegan_generator_loss(
        dy_fake=f, dx_fake=r, x=x, y=y, x_cycled=xc, y_cycled=yc, x_identity=xi, y_identity=yi
    )
    cycle = np.abs(xc - x).mean() + np.abs(yc - y).mean()
    ident = np.abs(yi - y).mean() + np.abs(xi - x).mean()
    want = np.mean((f - 1) ** 2) + np.mean((r - 1) ** 2) + 10 * cycle + 0.5 * 10 * ident
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert float(m["cycle"]) == pytest.approx(cycle, rel=1e-5)
    loss_log, _ = gan.cyclegan_generator_loss(
        dy_fake=f, dx_fake=r, x=x, y=y, x_cycled=xc, y_cycled=yc, adversarial="log"
    )
    assert float(loss_log) == pytest.approx(_bce(f, 1.0) + _bce(r, 1.0) + 10 * cycle, rel=1e-5)
    d, dm = gan.cyclegan_discriminator_loss(dx_real=r, dx_fake=f, dy_real=f, dy_fake=r)
    want_d = ls_d + 0.5 * (np.mean((f - 1) ** 2) + np.mean(r**2))
    assert float(d) == pytest.approx(want_d, rel=1e-5) and float(dm["d_x"]) == pytest.approx(ls_d)
    with pytest.raises(ValueError, match="both"):
        gan.cyclegan_generator_loss(
            dy_fake=f, dx_fake=r, x=x, y=y, x_cycled=xc, y_cycled=yc, x_identity=xi
        )


def test_conditional_inputs():
    z = RNG.normal(size=(3, 4)).astype(np.float32)
    labels = np.array([2, 0, 1])
    out = np.asarray(gan.conditional_input(z, labels, 3))
    np.testing.assert_array_equal(out, np.concatenate([z, np.eye(3, dtype=np.float32)[labels]], 1))
    img = RNG.normal(size=(3, 2, 2, 1)).astype(np.float32)
    out = np.asarray(gan.conditional_image_input(img, labels, 3))
    assert out.shape == (3, 2, 2, 4)
    np.testing.assert_array_equal(out[..., :1], img)
    np.testing.assert_array_equal(out[:, 1, 0, 1:], np.eye(3)[labels])


# A tiny 1-D GAN: G(z) = a z + b, D(x) = u x^2 + v x + c (logits).
def _d_logits(d, x):
    return d["u"] * x**2 + d["v"] * x + d["c"]


def _d_loss(d, g, real, z):
    return gan.discriminator_loss(_d_logits(d, real), _d_logits(d, g["a"] * z + g["b"]))


def _g_loss(g, d, z):
    return gan.generator_loss_nonsaturating(_d_logits(d, g["a"] * z + g["b"]))


def _unrolled(g, d, real, z, *, steps, tx):
    return gan.unrolled_generator_loss(
        g,
        d,
        tx.init(d),
        d_loss_fn=lambda dp, gp: _d_loss(dp, gp, real, z),
        g_loss_fn=lambda gp, dp: _g_loss(gp, dp, z),
        d_tx=tx,
        steps=steps,
    )


G0 = {"a": np.float32(0.7), "b": np.float32(-0.3)}
D0 = {"u": np.float32(0.4), "v": np.float32(-0.8), "c": np.float32(0.1)}
REAL_X = RNG.normal(1.0, 0.5, size=16).astype(np.float32)
Z = RNG.normal(size=16).astype(np.float32)


def test_unrolled_with_zero_steps_is_the_plain_loss():
    tx = optim.sgd(0.5)
    plain = jax.jit(jax.grad(_g_loss))(G0, D0, Z)
    zero = jax.jit(jax.grad(lambda g: _unrolled(g, D0, REAL_X, Z, steps=0, tx=tx)))(G0)
    for k in G0:
        assert float(zero[k]) == pytest.approx(float(plain[k]), rel=1e-5)


def test_unrolled_gradient_matches_finite_differences_and_differs_from_plain():
    tx = optim.adam(0.1, b1=0.5)  # the optimizer Metz et al. unroll; its moments are carried

    def f(g, d, real, z):
        return _unrolled(g, d, real, z, steps=2, tx=tx)

    assert_gradcheck(f, G0, D0, REAL_X, Z, tol=1e-6)

    @jax.jit
    def grads(g):
        d2, _ = gan.unroll_discriminator(
            D0, tx.init(D0), lambda dp: _d_loss(dp, g, REAL_X, Z), tx, 2
        )
        return (
            jax.grad(f)(g, D0, REAL_X, Z),
            jax.grad(_g_loss)(g, D0, Z),
            jax.grad(_g_loss)(g, jax.lax.stop_gradient(d2), Z),
        )

    unrolled, plain, frozen = grads(G0)
    diff = max(abs(float(unrolled[k]) - float(plain[k])) for k in G0)
    assert diff > 1e-2, "the unrolled gradient must differ from the plain one"
    # The difference is not only "a later D": the gradient *through* the unrolled steps (the
    # second-order term) differs from the plain gradient at the unrolled discriminator.
    assert max(abs(float(unrolled[k]) - float(frozen[k])) for k in G0) > 1e-3


def test_unroll_rejects_negative_steps():
    with pytest.raises(ValueError, match=">= 0"):
        gan.unroll_discriminator(D0, (), lambda d: 0.0, optim.sgd(1.0), -1)
