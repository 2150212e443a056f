"""Supervised classification objectives in the engine's shape:

    loss_fn(params, extra, batch, rng) -> (loss, (metrics, new_extra))
    eval_fn(params, extra, batch) -> {"loss": sum, "accuracy": sum, "count": n}

`batch` = {"x": [B, ...], "y": [B] int32, "mask": [B] float32}.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.eval.metrics import correct_sum
from dl.ops import losses, regularizers


def _apply(model: nn.Module, params, extra, x, *, train: bool, rng=None):
  """Runs the model; batch statistics (if the model has any) are updated only when training."""
  variables = {"params": params, **extra}
  rngs = {"dropout": rng} if rng is not None else {}
  if train and "batch_stats" in extra:
    out, updates = model.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
    return out, {**extra, **updates}
  return model.apply(variables, x, train=train, rngs=rngs), extra


def classifier_loss(model: nn.Module, *, loss: str = "cross_entropy", l2: float = 0.0,
                    l1: float = 0.0) -> Callable[..., Any]:
  """Mean masked `loss` (a name in `dl.ops.losses.LOSSES` taking logits and integer labels) plus
  `l2 * 1/2 ||W||^2 + l1 * ||W||_1` over weights only (biases are not penalized)."""
  loss_fn = losses.get_loss(loss)

  def fn(params, extra, batch, rng):
    logits, new_extra = _apply(model, params, extra, batch["x"], train=True, rng=rng)
    data_loss = _call_loss(loss_fn, logits, batch["y"], batch["mask"])
    total = data_loss
    if l2:
      total = total + l2 * regularizers.l2_penalty(params)
    if l1:
      total = total + l1 * regularizers.l1_penalty(params)
    mask = batch["mask"]
    acc = correct_sum(logits=logits, labels=batch["y"], mask=mask) / jnp.maximum(jnp.sum(mask), 1.0)
    return total, ({"data_loss": data_loss, "accuracy": acc}, new_extra)

  return fn


def _call_loss(loss_fn, logits, labels, mask):
  # Losses differ in the name of their target argument (targets= or labels=).
  try:
    return loss_fn(logits=logits, targets=labels, mask=mask)
  except TypeError:
    return loss_fn(logits=logits, labels=labels, mask=mask)


def classifier_eval(model: nn.Module, *, loss: str = "cross_entropy") -> Callable[..., Any]:
  """Jitted masked sums of loss and correct predictions for exact dataset means."""
  loss_fn = losses.get_loss(loss)

  @jax.jit
  def fn(params, extra, batch):
    logits, _ = _apply(model, params, extra, batch["x"], train=False)
    per_example = _call_loss_per_example(loss_fn, logits, batch["y"], batch["mask"])
    return {"loss": jnp.sum(per_example * batch["mask"]),
            "accuracy": correct_sum(logits=logits, labels=batch["y"], mask=batch["mask"]),
            "count": jnp.sum(batch["mask"])}

  return fn


def _call_loss_per_example(loss_fn, logits, labels, mask):
  try:
    return loss_fn(logits=logits, targets=labels, mask=mask, reduce=False)
  except TypeError:
    return loss_fn(logits=logits, labels=labels, mask=mask, reduce=False)
