"""Grids of small images as one PNG (filters, optimized inputs, saliency maps); matplotlib Agg."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def image_grid(
    images: np.ndarray,
    path: str,
    *,
    cols: int = 10,
    titles: Sequence[str] | None = None,
    cmap: str = "gray",
    normalize: str = "each",
    title: str = "",
) -> str:
    """Draws images [n, H, W] (or [n, H, W, 1]) in rows of `cols`.

    Args:
      normalize: "each" scales every image to its own [min, max] (filters, saliency), "none"
        shows values as they are on [0, 1] (inputs), "shared" uses one range for all.
      titles: one short caption per image.
    Returns:
      path.
    """
    if len(images) == 0:  # e.g. no misclassified digit: say so rather than fail
        fig, ax = plt.subplots(figsize=(2, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "none", ha="center", va="center")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
    images = np.asarray(images, np.float32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        raise ValueError(f"image_grid expects [n, H, W] or [n, H, W, 1], got {images.shape}")
    if normalize not in ("each", "none", "shared"):
        raise ValueError(f"normalize must be 'each', 'none' or 'shared', got {normalize!r}")
    n = len(images)
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.3 * rows + 0.4), squeeze=False)
    lo, hi = float(images.min()), float(images.max())
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i]
        if normalize == "each":
            vmin, vmax = float(img.min()), float(img.max())
        elif normalize == "shared":
            vmin, vmax = lo, hi
        else:
            vmin, vmax = 0.0, 1.0
        ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1e-6)
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
