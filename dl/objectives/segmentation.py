"""Per-pixel classification objectives in the engine's shape (see `dl.objectives.classification`):

    loss_fn(params, extra, batch, rng) -> (loss, (metrics, new_extra))
    eval_fn(params, extra, batch) -> {"loss": sum, "pixel_accuracy": sum, "count": n}

`batch` = {"x": [B, H, W, C], "y": [B, H, W] int32, "mask": [B] float32}; the model maps x to
logits [B, H, W, K].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dl.objectives.classification import _apply
from dl.ops import losses


def median_frequency_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """SegNet's class balancing (Badrinarayanan et al. 2017 sec. 3.1, after Eigen & Fergus 2015):
    w_k = median(freq) / freq_k with freq_k the fraction of pixels of class k among the images
    where k appears. labels: [n, H, W] integers. Returns [K] float32 (1 for absent classes)."""
    labels = np.asarray(labels).reshape(len(labels), -1)
    counts = np.stack([np.bincount(row, minlength=num_classes) for row in labels])  # [n, K]
    present = counts > 0
    pixels = (present * labels.shape[1]).sum(0)
    freq = np.where(pixels > 0, counts.sum(0) / np.maximum(pixels, 1), np.nan)
    return np.where(np.isnan(freq), 1.0, np.nanmedian(freq) / freq).astype(np.float32)


def pixel_cross_entropy(
    *, logits: jax.Array, labels: jax.Array, mask: jax.Array, class_weights: jax.Array | None = None
) -> jax.Array:
    """Per image, the mean over its pixels of w[y] * -log softmax(logits)[y]; then the mean over
    images with mask 1. logits: [B, H, W, K]; labels: [B, H, W]; mask: [B]; class_weights: [K]
    (None = all 1, plain per-pixel cross entropy)."""
    nll = losses.cross_entropy(logits=logits, targets=labels, reduce=False)  # [B, H, W]
    if class_weights is not None:
        nll = nll * jnp.asarray(class_weights)[labels]
    per_image = jnp.mean(nll.reshape(nll.shape[0], -1), axis=1)
    return jnp.sum(per_image * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _pixel_correct(logits, labels):  # [B] fraction of each image's pixels that are right
    right = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return jnp.mean(right.reshape(right.shape[0], -1), axis=1)


def segmentation_loss(
    model: nn.Module, *, class_weights: Sequence[float] | None = None
) -> Callable[..., Any]:
    """`pixel_cross_entropy` of the model's logits (batch statistics updated when the model has
    them); metrics: the (unweighted-mean) pixel accuracy of the batch."""
    weights = None if class_weights is None else jnp.asarray(class_weights, jnp.float32)

    def fn(params, extra, batch, rng):
        logits, new_extra = _apply(model, params, extra, batch["x"], train=True, rng=rng)
        mask = batch["mask"]
        loss = pixel_cross_entropy(
            logits=logits, labels=batch["y"], mask=mask, class_weights=weights
        )
        acc = jnp.sum(_pixel_correct(logits, batch["y"]) * mask) / jnp.maximum(jnp.sum(mask), 1.0)
        return loss, ({"pixel_accuracy": acc}, new_extra)

    return fn


def segmentation_eval(model: nn.Module) -> Callable[..., Any]:
    """Jitted masked sums over images of the (unweighted) per-image loss and pixel accuracy."""

    @jax.jit
    def fn(params, extra, batch):
        logits, _ = _apply(model, params, extra, batch["x"], train=False)
        mask = batch["mask"]
        nll = losses.cross_entropy(logits=logits, targets=batch["y"], reduce=False)
        per_image = jnp.mean(nll.reshape(nll.shape[0], -1), axis=1)
        return {
            "loss": jnp.sum(per_image * mask),
            "pixel_accuracy": jnp.sum(_pixel_correct(logits, batch["y"]) * mask),
            "count": jnp.sum(mask),
        }

    return fn


def predict_fn(model: nn.Module) -> Callable[..., jax.Array]:
    """Jitted `(params, extra, x [B, H, W, C]) -> [B, H, W] int32` argmax classes (eval mode)."""

    @jax.jit
    def fn(params, extra, x):
        logits, _ = _apply(model, params, extra, x, train=False)
        return jnp.argmax(logits, -1).astype(jnp.int32)

    return fn
