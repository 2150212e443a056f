"""The hybrid loss of the recurrent attention model (Mnih et al. 2014, sec. 3.2) in the engine's
shape `loss_fn(params, extra, batch, rng) -> (loss, (metrics, extra))`.

For a batch of N images, T glimpses, reward R_n = 1 if the class read after the last glimpse is
right (else 0), log-probabilities log pi(l_nt | h_n,t-1) and baselines b_nt (`dl.models.ram`):

    loss = CE(logits, y)                                     backprop: classifier, core, glimpses
         + 1/N sum_n sum_t -(R_n - sg(b_nt)) log pi(l_nt)     REINFORCE: the location network
         + w_b/N sum_n sum_t (R_n - b_nt)^2                   regression: the baseline

sg = stop_gradient. The reward is a 0/1 count, not a function of the parameters, and the model
stops gradients into the core from both the policy and the baseline, so each part of the net is
trained by exactly one term, as in the paper: its gradient of the middle term is the REINFORCE
estimate sum_t (R - b_t) grad log pi(l_t) (Williams 1992), unbiased for grad E[R] because b_t
is computed before l_t is drawn. Models without "log_probs" in their output (soft attention,
random glimpses with `reinforce=False`) train on the cross-entropy alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.eval.metrics import correct_sum
from dl.ops import losses


def reinforce_surrogate(
    log_probs: jax.Array, rewards: jax.Array, baselines: jax.Array, mask: jax.Array
) -> jax.Array:
    """Mean over valid rows of -sum_t sg(R - b_t) log pi_t; log_probs, baselines [N, T], rewards
    and mask [N]. Its gradient is minus the REINFORCE estimate of grad E[R]."""
    adv = jax.lax.stop_gradient(rewards[:, None] - baselines)
    per_row = -jnp.sum(adv * log_probs, axis=1)
    return jnp.sum(per_row * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def baseline_loss(rewards: jax.Array, baselines: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over valid rows of sum_t (R - b_t)^2; the reward carries no gradient."""
    err = jax.lax.stop_gradient(rewards)[:, None] - baselines
    return jnp.sum(jnp.sum(err**2, axis=1) * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def attention_loss(
    model: nn.Module, *, reinforce: bool = True, baseline_weight: float = 1.0
) -> Callable[..., Any]:
    """The hybrid loss (module docstring); `reinforce=False` keeps only the cross-entropy."""

    def fn(params, extra, batch, rng):
        out = model.apply({"params": params}, batch["x"], train=True, rngs={"glimpse": rng})
        logits, y, mask = out["logits"], batch["y"], batch["mask"]
        ce = losses.cross_entropy(logits=logits, targets=y, mask=mask)
        correct = (jnp.argmax(logits, -1) == y).astype(logits.dtype)
        metrics = {"data_loss": ce, "accuracy": jnp.sum(correct * mask) / jnp.sum(mask)}
        total = ce
        if reinforce and "log_probs" in out:
            pg = reinforce_surrogate(out["log_probs"], correct, out["baselines"], mask)
            bl = baseline_loss(correct, out["baselines"], mask)
            total = total + pg + baseline_weight * bl
            metrics.update(reinforce=pg, baseline_mse=bl / out["baselines"].shape[1])
        return total, (metrics, extra)

    return fn


def attention_eval(model: nn.Module) -> Callable[..., Any]:
    """Jitted masked sums of cross-entropy and correct predictions (eval mode: the learned policy
    looks at its mean locations; random glimpses come from fixed keys)."""

    @jax.jit
    def fn(params, extra, batch):
        logits = model.apply({"params": params}, batch["x"])["logits"]
        per_example = losses.cross_entropy(
            logits=logits, targets=batch["y"], mask=batch["mask"], reduce=False
        )
        return {
            "loss": jnp.sum(per_example * batch["mask"]),
            "accuracy": correct_sum(logits=logits, labels=batch["y"], mask=batch["mask"]),
            "count": jnp.sum(batch["mask"]),
        }

    return fn
