"""Semantic segmentation metrics from a confusion matrix of pixel counts.

    confusion[t, p] = number of pixels of true class t predicted as class p

Pixel accuracy = trace / total. Intersection over union of class k (Jaccard index) = C[k, k] /
(row_k + col_k - C[k, k]); mean IoU averages it over the classes present in the truth or the
predictions (a class absent from both has no IoU), which is scikit-learn's
`jaccard_score(average="macro")` over the pooled pixels and the mIoU of the FCN and SegNet papers
(Long et al. 2015 sec. 5, "mean IU"; Badrinarayanan et al. 2017 sec. 4.1: over the whole test set,
not per image).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def confusion_matrix(
    *, predictions: jax.Array, labels: jax.Array, num_classes: int, mask: jax.Array | None = None
) -> jax.Array:
    """[K, K] int32 counts; predictions, labels: integer arrays of the same shape (any); mask:
    broadcastable to them, pixels with mask 0 are not counted. Jittable (one bincount)."""
    flat = labels.astype(jnp.int32) * num_classes + predictions.astype(jnp.int32)
    weights = None if mask is None else jnp.broadcast_to(mask, flat.shape).astype(jnp.int32)
    counts = jnp.bincount(
        flat.ravel(),
        weights=None if weights is None else weights.ravel(),
        length=num_classes * num_classes,
    )
    return counts.astype(jnp.int32).reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """[K] float64 IoU per class; NaN for a class absent from both truth and predictions."""
    c = np.asarray(confusion, np.float64)
    inter = np.diag(c)
    union = c.sum(0) + c.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean of `iou_per_class` over the classes present (NaN if none is)."""
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")


def pixel_accuracy(confusion: np.ndarray) -> float:
    """Fraction of counted pixels predicted correctly."""
    c = np.asarray(confusion, np.float64)
    return float(np.trace(c) / c.sum())
