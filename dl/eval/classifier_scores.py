"""Scoring generated images with a trained classifier: the label accuracy of conditional samples
(Mirza & Osindero 2014's cGAN digits, scored as in Odena et al. 2017, sec. 4.1, "AC-GAN": the
fraction of samples that a separately trained classifier assigns to the class they were
generated for) and the label agreement of translated images (CycleGAN digits).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dl.eval.frechet import batched_features


def label_accuracy(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    classes: int,
    batch: int = 1000,
) -> dict[str, object]:
    """How often the classifier's class for images [n, ...] equals the intended labels [n].

    Args:
      predict_fn: images [k, ...] -> predicted classes [k] (ints) for any k.
      classes: the number of classes (the per-class list's length).
    Returns:
      {"accuracy": the fraction over all n, "per_class": [classes] fractions (NaN for a class
      with no image), "confusion": [classes, classes] counts, rows intended, columns predicted}.
    """
    labels = np.asarray(labels).astype(np.int64)
    if len(images) != len(labels) or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(
            f"need images [n, ...] and labels [n], n >= 1; got {len(images)}, {labels.shape}"
        )
    pred = batched_features(predict_fn, images, batch).astype(np.int64)
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.diag(confusion) / totals
    return {
        "accuracy": float(np.mean(pred == labels)),
        "per_class": [float(v) for v in per_class],
        "confusion": confusion,
    }
