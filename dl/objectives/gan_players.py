"""The two players' losses of image GANs in the shape `dl.train.adversarial` trains:

    d_loss_fn(d_params, d_extra, g_state, batch, rng) -> (loss, (metrics, new_d_extra))
    g_loss_fn(g_params, g_extra, d_state, batch, rng) -> (loss, (metrics, new_g_extra))

built from Flax models and the pure losses of `dl.objectives.gan`.

* `dcgan_losses`: a (conditional) DCGAN (Radford et al. 2016; Mirza & Osindero 2014). Both
  models run in training mode in both losses, as in the reference PyTorch DCGAN: batch norm
  normalizes with the current batch's statistics, and D sees the real and the fake batch in
  separate calls (so its statistics are never a mixture). A player's own running statistics are
  updated by its own loss only; the other player's are discarded (`dl.train.adversarial`).
  batch = {"x": [B, 28, 28, 1] real images on the generator's output scale, "y": [B] labels
  (used when conditional: real images are judged with their labels, fakes are generated and
  judged with the same labels, so fakes follow the data's label distribution), "mask"}. z ~
  N(0, I) [B, latent] is drawn from each step's rng.
* `cyclegan_losses`: CycleGAN (Zhu et al. 2017). The d side's params are {"dx", "dy"}, the g
  side's {"g", "f"} (G: X -> Y, F: Y -> X); batch = {"x": [B, ...] from X, "y": [B, ...] from
  Y}, drawn independently (unpaired). The paper's pool of 50 past fakes for D is left out: D
  sees the current fakes.

Metrics: D's mean probabilities D(real) and D(fake) ("real_prob", "fake_prob"; the engine
prefixes them "d_") and the loss terms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.objectives import gan


def apply_model(model: nn.Module, params, extra: dict, *args, train: bool):
    """model(*args, train=train) -> (out, extra); batch statistics update only when training."""
    variables = {"params": params, **extra}
    if train and "batch_stats" in extra:
        out, updates = model.apply(variables, *args, train=True, mutable=["batch_stats"])
        return out, {**extra, **updates}
    return model.apply(variables, *args, train=train), extra


def sample_latent(rng: jax.Array, batch: int, latent: int) -> jax.Array:
    """z ~ N(0, I): [batch, latent] float32."""
    return jax.random.normal(rng, (batch, latent), jnp.float32)


def dcgan_losses(
    generator: nn.Module,
    discriminator: nn.Module,
    *,
    latent: int,
    conditional: bool = False,
    generator_loss: str = "nonsaturating",
) -> tuple[Callable, Callable]:
    """(d_loss_fn, g_loss_fn) of a DCGAN (module docstring). `generator(z, y, train=...)` and
    `discriminator(x, y, train=...) -> logits [B]` (`dl.models.dcgan`); y is passed only when
    `conditional`. generator_loss: "nonsaturating" or "minimax" (`gan.generator_loss`)."""
    if generator_loss not in gan.GENERATOR_LOSSES:
        raise ValueError(f"generator_loss must be one of {list(gan.GENERATOR_LOSSES)}")

    def labels(batch):
        return (batch["y"],) if conditional else ()

    def fake_images(g_params, g_extra, batch, rng):
        z = sample_latent(rng, batch["x"].shape[0], latent)
        return apply_model(generator, g_params, g_extra, z, *labels(batch), train=True)

    def d_loss_fn(d_params, d_extra, g_state, batch, rng):
        fake, _ = fake_images(g_state.params, g_state.extra, batch, rng)
        y = labels(batch)
        real_logits, extra = apply_model(
            discriminator, d_params, d_extra, batch["x"], *y, train=True
        )
        fake_logits, extra = apply_model(discriminator, d_params, extra, fake, *y, train=True)
        loss = gan.discriminator_loss(real_logits, fake_logits)
        metrics = {
            "real_prob": jnp.mean(jax.nn.sigmoid(real_logits)),
            "fake_prob": jnp.mean(jax.nn.sigmoid(fake_logits)),
        }
        return loss, (metrics, extra)

    def g_loss_fn(g_params, g_extra, d_state, batch, rng):
        fake, g_extra = fake_images(g_params, g_extra, batch, rng)
        logits, _ = apply_model(
            discriminator, d_state.params, d_state.extra, fake, *labels(batch), train=True
        )
        loss = gan.generator_loss(logits, generator_loss)
        return loss, ({"fake_prob": jnp.mean(jax.nn.sigmoid(logits))}, g_extra)

    return d_loss_fn, g_loss_fn


def cyclegan_losses(
    g: nn.Module,
    f: nn.Module,
    dx: nn.Module,
    dy: nn.Module,
    *,
    cycle_weight: float = 10.0,
    identity_weight: float = 0.0,
    adversarial: str = "least_squares",
) -> tuple[Callable, Callable]:
    """(d_loss_fn, g_loss_fn) of CycleGAN (module docstring) for models without batch statistics
    (`dl.models.dcgan.CycleGenerator`, `PatchDiscriminator`). identity_weight is relative to
    cycle_weight (`gan.cyclegan_generator_loss`); 0 leaves the identity term out."""

    def run(model, params, x):
        return model.apply({"params": params}, x, train=True)

    def d_loss_fn(d_params, d_extra, g_state, batch, rng):
        del rng
        gp = g_state.params
        fake_y, fake_x = run(g, gp["g"], batch["x"]), run(f, gp["f"], batch["y"])
        outs = {
            "dx_real": run(dx, d_params["dx"], batch["x"]),
            "dx_fake": run(dx, d_params["dx"], fake_x),
            "dy_real": run(dy, d_params["dy"], batch["y"]),
            "dy_fake": run(dy, d_params["dy"], fake_y),
        }
        loss, metrics = gan.cyclegan_discriminator_loss(**outs, adversarial=adversarial)
        return loss, (metrics, d_extra)

    def g_loss_fn(g_params, g_extra, d_state, batch, rng):
        del rng
        x, y = batch["x"], batch["y"]
        fake_y, fake_x = run(g, g_params["g"], x), run(f, g_params["f"], y)
        identity: dict[str, Any] = {}
        if identity_weight:
            identity = {
                "x_identity": run(f, g_params["f"], x),
                "y_identity": run(g, g_params["g"], y),
            }
        dp = d_state.params
        loss, metrics = gan.cyclegan_generator_loss(
            dy_fake=run(dy, dp["dy"], fake_y),
            dx_fake=run(dx, dp["dx"], fake_x),
            x=x,
            y=y,
            x_cycled=run(f, g_params["f"], fake_y),
            y_cycled=run(g, g_params["g"], fake_x),
            cycle_weight=cycle_weight,
            identity_weight=identity_weight,
            adversarial=adversarial,
            **identity,
        )
        return loss, (metrics, g_extra)

    return d_loss_fn, g_loss_fn
