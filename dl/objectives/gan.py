"""GAN objectives as pure `jnp` functions of discriminator logits (and, for CycleGAN, of images).

Every loss here is *minimized*. `logits` are the discriminator's pre-sigmoid outputs, D(x) =
sigmoid(logits); all log-losses are written with `jax.nn.log_sigmoid`, which is finite with finite
gradients for logits of any size (log D = log_sigmoid(l), log(1 - D) = log_sigmoid(-l)), where the
naive log(sigmoid(l)) gives -inf (and NaN gradients) once sigmoid rounds to 0 or 1.

- Goodfellow et al. 2014, "Generative Adversarial Nets": the minimax game
  min_G max_D E_x[log D(x)] + E_z[log(1 - D(G(z)))].
  `discriminator_loss` is D's side (the negated value, a binary cross-entropy with real = 1,
  fake = 0); `generator_loss_minimax` is G's side, E[log(1 - D(G(z)))]; it saturates early in
  training (gradient -> 0 when D rejects the fakes), so the same paper proposes maximizing
  log D(G(z)) instead: `generator_loss_nonsaturating` = -E[log D(G(z))].
- Mirza & Osindero 2014, "Conditional Generative Adversarial Nets": the same losses with G and D
  both given the label y (G(z | y), D(x | y)). The conditioning lives in the models' inputs, so
  the losses are unchanged; `conditional_input` and `conditional_image_input` build those inputs
  (one-hot vectors concatenated to z or to a flat x, or one-hot feature maps concatenated as
  channels to an image).
- Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
  Networks" (CycleGAN): G: X -> Y and F: Y -> X, discriminators D_Y, D_X. The paper trains the
  adversarial terms with the least-squares loss of LSGAN (Mao et al. 2017), E[(D(y) - 1)^2] +
  E[D(G(x))^2] for D and E[(D(G(x)) - 1)^2] for G; the log-loss is the option
  `adversarial="log"`. Plus the cycle-consistency loss
  lambda * (E|F(G(x)) - x|_1 + E|G(F(y)) - y|_1) with lambda = 10, and the identity loss
  0.5 * lambda * (E|G(y) - y|_1 + E|F(x) - x|_1) (their Section 5.2, used for photo <-> painting).
  As in the authors' code, each discriminator's least-squares loss is halved ("slows down the
  rate at which D learns relative to G"). L1 means are over all elements.
- Metz et al. 2017, "Unrolled Generative Adversarial Networks": G minimizes
  f(theta_G, theta_D^K), where theta_D^K is D after K steps of its own optimizer on the current
  batch, and the gradient is taken *through* those K steps (their eq. 12, the second term is what
  lets G anticipate D's reaction). `unrolled_generator_loss` runs the K steps with the
  discriminator's optax transformation inside `lax.scan`; the real D update (done by the
  training engine, `dl.train.adversarial`) uses only the first step, and the unrolled parameters
  are discarded. As in the authors' code, every unrolled step reuses the same batch (real data and
  z) and the generator's samples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

log_sigmoid = jax.nn.log_sigmoid


# --- Goodfellow et al. 2014 (and the non-saturating variant) ------------------------------------


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """-E[log D(x)] - E[log(1 - D(G(z)))]: the binary cross-entropy with labels real = 1,
    fake = 0, each term a mean over its own batch. Scalar."""
    return -jnp.mean(log_sigmoid(real_logits)) - jnp.mean(log_sigmoid(-fake_logits))


def generator_loss_minimax(fake_logits: jax.Array) -> jax.Array:
    """E[log(1 - D(G(z)))], which G minimizes in the original minimax game. Scalar, <= 0."""
    return jnp.mean(log_sigmoid(-fake_logits))


def generator_loss_nonsaturating(fake_logits: jax.Array) -> jax.Array:
    """-E[log D(G(z))]: the non-saturating generator loss (same fixed point, strong gradients
    when D confidently rejects the fakes). Scalar, >= 0."""
    return -jnp.mean(log_sigmoid(fake_logits))


GENERATOR_LOSSES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "minimax": generator_loss_minimax,
    "nonsaturating": generator_loss_nonsaturating,
}


def generator_loss(fake_logits: jax.Array, kind: str = "nonsaturating") -> jax.Array:
    """The generator loss named `kind` ("minimax" or "nonsaturating")."""
    if kind not in GENERATOR_LOSSES:
        raise ValueError(f"unknown generator loss {kind!r}; valid: {', '.join(GENERATOR_LOSSES)}")
    return GENERATOR_LOSSES[kind](fake_logits)


# --- Least squares (LSGAN, as CycleGAN uses it) ---------------------------------------------------


def least_squares_discriminator_loss(real_out: jax.Array, fake_out: jax.Array) -> jax.Array:
    """0.5 * (E[(D(y) - 1)^2] + E[D(G(x))^2]) on D's raw outputs (no sigmoid); the 0.5 is the
    CycleGAN code's halving of D's loss."""
    return 0.5 * (jnp.mean(jnp.square(real_out - 1.0)) + jnp.mean(jnp.square(fake_out)))


def least_squares_generator_loss(fake_out: jax.Array) -> jax.Array:
    """E[(D(G(x)) - 1)^2]."""
    return jnp.mean(jnp.square(fake_out - 1.0))


# --- Mirza & Osindero 2014: conditional inputs ---------------------------------------------------


def conditional_input(x: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    """[B, D] features (a latent z or a flattened image) and [B] int labels -> [B, D + K]: the
    one-hot label concatenated on the last axis, as in Mirza & Osindero's MLPs."""
    onehot = jax.nn.one_hot(labels, num_classes, dtype=x.dtype)
    return jnp.concatenate([x, onehot], axis=-1)


def conditional_image_input(images: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    """[B, H, W, C] images and [B] int labels -> [B, H, W, C + K]: K constant feature maps, map k
    all ones where the label is k (the usual way to condition a convolutional D)."""
    b, h, w, _ = images.shape
    onehot = jax.nn.one_hot(labels, num_classes, dtype=images.dtype)
    maps = jnp.broadcast_to(onehot[:, None, None, :], (b, h, w, num_classes))
    return jnp.concatenate([images, maps], axis=-1)


# --- Zhu et al. 2017: CycleGAN ------------------------------------------------------------------

ADVERSARIAL = ("least_squares", "log")


def _check_adversarial(adversarial: str) -> None:
    if adversarial not in ADVERSARIAL:
        raise ValueError(f"unknown adversarial loss {adversarial!r}; valid: {ADVERSARIAL}")


def adversarial_discriminator_loss(real: jax.Array, fake: jax.Array, adversarial: str) -> jax.Array:
    """One discriminator's loss: least squares (halved) or the log-loss on logits."""
    _check_adversarial(adversarial)
    if adversarial == "least_squares":
        return least_squares_discriminator_loss(real, fake)
    return discriminator_loss(real, fake)


def adversarial_generator_loss(fake: jax.Array, adversarial: str) -> jax.Array:
    """One generator's adversarial loss: least squares or the non-saturating log-loss."""
    _check_adversarial(adversarial)
    if adversarial == "least_squares":
        return least_squares_generator_loss(fake)
    return generator_loss_nonsaturating(fake)


def l1(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean absolute difference over all elements."""
    return jnp.mean(jnp.abs(a - b))


def cycle_consistency_loss(
    x: jax.Array, x_cycled: jax.Array, y: jax.Array, y_cycled: jax.Array
) -> jax.Array:
    """E|F(G(x)) - x|_1 + E|G(F(y)) - y|_1 (unweighted); x_cycled = F(G(x)), y_cycled = G(F(y))."""
    return l1(x_cycled, x) + l1(y_cycled, y)


def identity_loss(
    x: jax.Array, x_identity: jax.Array, y: jax.Array, y_identity: jax.Array
) -> jax.Array:
    """E|G(y) - y|_1 + E|F(x) - x|_1 (unweighted); y_identity = G(y), x_identity = F(x)."""
    return l1(y_identity, y) + l1(x_identity, x)


def cyclegan_generator_loss(
    *,
    dy_fake: jax.Array,
    dx_fake: jax.Array,
    x: jax.Array,
    y: jax.Array,
    x_cycled: jax.Array,
    y_cycled: jax.Array,
    x_identity: jax.Array | None = None,
    y_identity: jax.Array | None = None,
    cycle_weight: float = 10.0,
    identity_weight: float = 0.5,
    adversarial: str = "least_squares",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The full objective of G and F together, returned as (loss, metrics).

    dy_fake = D_Y(G(x)), dx_fake = D_X(F(y)): discriminator outputs on the translations.
    loss = adv(dy_fake) + adv(dx_fake) + cycle_weight * cycle
           + identity_weight * cycle_weight * identity      (identity only when both given;
    identity_weight is relative to lambda = cycle_weight, the paper's 0.5 * lambda)."""
    adv_g = adversarial_generator_loss(dy_fake, adversarial)
    adv_f = adversarial_generator_loss(dx_fake, adversarial)
    cycle = cycle_consistency_loss(x, x_cycled, y, y_cycled)
    loss = adv_g + adv_f + cycle_weight * cycle
    metrics = {"adv_g": adv_g, "adv_f": adv_f, "cycle": cycle}
    if (x_identity is None) != (y_identity is None):
        raise ValueError("give both x_identity = F(x) and y_identity = G(y), or neither")
    if x_identity is not None:
        ident = identity_loss(x, x_identity, y, y_identity)
        loss = loss + identity_weight * cycle_weight * ident
        metrics["identity"] = ident
    return loss, metrics


def cyclegan_discriminator_loss(
    *,
    dx_real: jax.Array,
    dx_fake: jax.Array,
    dy_real: jax.Array,
    dy_fake: jax.Array,
    adversarial: str = "least_squares",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """D_X's and D_Y's losses summed (their parameters are disjoint, so one gradient step on the
    sum is one step of each): dx_real = D_X(x), dx_fake = D_X(F(y)), dy_real = D_Y(y),
    dy_fake = D_Y(G(x)). Fakes should be passed through `jax.lax.stop_gradient` (or computed from
    fixed generator parameters, as the engine does). Returns (loss, {"d_x", "d_y"})."""
    d_x = adversarial_discriminator_loss(dx_real, dx_fake, adversarial)
    d_y = adversarial_discriminator_loss(dy_real, dy_fake, adversarial)
    return d_x + d_y, {"d_x": d_x, "d_y": d_y}


# --- Metz et al. 2017: unrolled GAN -------------------------------------------------------------


def unroll_discriminator(
    d_params: Any,
    d_opt_state: Any,
    d_loss: Callable[[Any], jax.Array],
    d_tx: optax.GradientTransformation,
    steps: int,
) -> tuple[Any, Any]:
    """`steps` updates of `d_params` by `d_tx` on the scalar `d_loss(d_params)`, in `lax.scan`,
    differentiable with respect to anything `d_loss` closes over (the generator's parameters).
    Returns (d_params after `steps` updates, the optimizer state then). steps = 0 is the identity."""
    if steps < 0:
        raise ValueError(f"unrolling steps must be >= 0, got {steps}")
    if steps == 0:
        return d_params, d_opt_state

    def body(carry, _):
        params, opt_state = carry
        grads = jax.grad(d_loss)(params)
        updates, opt_state = d_tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    (params, opt_state), _ = jax.lax.scan(body, (d_params, d_opt_state), None, length=steps)
    return params, opt_state


def unrolled_generator_loss(
    g_params: Any,
    d_params: Any,
    d_opt_state: Any,
    *,
    d_loss_fn: Callable[[Any, Any], jax.Array],
    g_loss_fn: Callable[[Any, Any], jax.Array],
    d_tx: optax.GradientTransformation,
    steps: int,
) -> jax.Array:
    """Metz et al.'s surrogate loss f_K(theta_G, theta_D) = g_loss_fn(theta_G, theta_D^K).

    d_loss_fn(d_params, g_params) -> scalar: the discriminator's loss on the batch (its fakes
      computed from g_params, *without* stop_gradient, so that theta_D^K depends on theta_G).
    g_loss_fn(g_params, d_params) -> scalar: the generator's loss against a discriminator.
    d_tx, d_opt_state: the discriminator's own optimizer and its current state (e.g. Adam's
      moments), so the unrolled steps are the steps D would really take.
    Differentiate with respect to g_params: with steps = 0 this is the plain generator loss; with
    steps >= 1 the gradient includes the term through d(theta_D^K)/d(theta_G)."""
    d_k, _ = unroll_discriminator(
        d_params, d_opt_state, lambda p: d_loss_fn(p, g_params), d_tx, steps
    )
    return g_loss_fn(g_params, d_k)
