"""Supervised classification objectives in the engine's shape:

    loss_fn(params, extra, batch, rng) -> (loss, (metrics, new_extra))
    eval_fn(params, extra, batch) -> {"loss": sum, "accuracy": sum, "count": n}

`batch` = {"x": [B, ...], "y": [B] int32, "mask": [B] float32}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.eval.metrics import correct_sum
from dl.ops import losses, regularizers
from dl.ops.sparsemax import sparsemax_loss


def _apply(model: nn.Module, params, extra, x, *, train: bool, rng=None):
    """Runs the model; batch statistics (if the model has any) are updated only when training."""
    variables = {"params": params, **extra}
    rngs = {"dropout": rng} if rng is not None else {}
    if train and "batch_stats" in extra:
        out, updates = model.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
        return out, {**extra, **updates}
    return model.apply(variables, x, train=train, rngs=rngs), extra


# Losses of (logits [B, K], integer labels [B]) with the ops' mask/reduce convention.
LABEL_LOSSES: dict[str, Callable[..., jax.Array]] = {
    "cross_entropy": lambda logits, labels, **kw: losses.cross_entropy(
        logits=logits, targets=labels, **kw
    ),
    "multiclass_hinge": lambda logits, labels, **kw: losses.multiclass_hinge(
        logits=logits, labels=labels, **kw
    ),
    "perceptron": lambda logits, labels, **kw: losses.perceptron(
        logits=logits, labels=labels, **kw
    ),
    "sparsemax": lambda logits, labels, **kw: sparsemax_loss(logits=logits, targets=labels, **kw),
}


def get_label_loss(name: str) -> Callable[..., jax.Array]:
    if name not in LABEL_LOSSES:
        raise ValueError(f"unknown classification loss {name!r}; valid: {', '.join(LABEL_LOSSES)}")
    return LABEL_LOSSES[name]


def classifier_loss(
    model: nn.Module, *, loss: str = "cross_entropy", l2: float = 0.0, l1: float = 0.0
) -> Callable[..., Any]:
    """Mean masked `loss` (a name in `LABEL_LOSSES`) plus `l2 * 1/2 ||W||^2 + l1 * ||W||_1` over
    weights only (biases are not penalized)."""
    loss_fn = get_label_loss(loss)

    def fn(params, extra, batch, rng):
        logits, new_extra = _apply(model, params, extra, batch["x"], train=True, rng=rng)
        data_loss = loss_fn(logits, batch["y"], mask=batch["mask"])
        total = data_loss
        if l2:
            total = total + l2 * regularizers.l2_penalty(params)
        if l1:
            total = total + l1 * regularizers.l1_penalty(params)
        mask = batch["mask"]
        acc = correct_sum(logits=logits, labels=batch["y"], mask=mask) / jnp.maximum(
            jnp.sum(mask), 1.0
        )
        return total, ({"data_loss": data_loss, "accuracy": acc}, new_extra)

    return fn


def classifier_eval(model: nn.Module, *, loss: str = "cross_entropy") -> Callable[..., Any]:
    """Jitted masked sums of loss and correct predictions for exact dataset means."""
    loss_fn = get_label_loss(loss)

    @jax.jit
    def fn(params, extra, batch):
        logits, _ = _apply(model, params, extra, batch["x"], train=False)
        per_example = loss_fn(logits, batch["y"], mask=batch["mask"], reduce=False)
        return {
            "loss": jnp.sum(per_example * batch["mask"]),
            "accuracy": correct_sum(logits=logits, labels=batch["y"], mask=batch["mask"]),
            "count": jnp.sum(batch["mask"]),
        }

    return fn
