"""Translated MNIST (Mnih, Heess, Graves & Kavukcuoglu 2014, sec. 4.1): each 28x28 digit pasted
at a uniformly random integer position in a larger all-zero canvas (60x60 in the paper).

The placement of example i depends only on (seed, i): the offsets of all n examples are drawn
as ``np.random.default_rng(seed).integers(0, canvas - 27, size=(n, 2))`` (row, column of the
digit's top-left pixel), and numpy draws them in order, so the first k examples of a split have
the same offsets whatever n is. Pasting copies the digit's pixels unchanged, so the canvas holds
exactly the digit's mass and nothing else.
"""

from __future__ import annotations

import numpy as np

from dl.data.pipeline import ArrayData


def translate_offsets(n: int, *, canvas: int, digit: int = 28, seed: int) -> np.ndarray:
    """[n, 2] int64 top-left (row, column) offsets, uniform on {0, ..., canvas - digit}."""
    if canvas < digit:
        raise ValueError(f"canvas ({canvas}) must be at least the digit size ({digit})")
    return np.random.default_rng(seed).integers(0, canvas - digit + 1, size=(n, 2))


def paste(images: np.ndarray, offsets: np.ndarray, *, canvas: int) -> np.ndarray:
    """images [n, h, w] or [n, h, w, 1] pasted at offsets [n, 2] into zeros [n, canvas, canvas, 1]
    (float32)."""
    x = images.reshape(images.shape[0], images.shape[1], images.shape[2])
    n, h, w = x.shape
    out = np.zeros((n, canvas, canvas, 1), np.float32)
    rows = offsets[:, 0, None] + np.arange(h)[None, :]  # [n, h]
    cols = offsets[:, 1, None] + np.arange(w)[None, :]  # [n, w]
    out[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :], 0] = x
    return out


def translate(data: ArrayData, *, canvas: int = 60, seed: int, limit: int = 0) -> ArrayData:
    """The split `data` (x [n, 28, 28, 1] or [n, 784]) as translated digits x [m, canvas, canvas,
    1], m = min(n, limit) (limit 0 = all), labels unchanged."""
    n = data.x.shape[0] if not limit else min(limit, data.x.shape[0])
    images = data.x[:n].reshape(n, 28, 28)
    offsets = translate_offsets(n, canvas=canvas, seed=seed)
    return ArrayData(paste(images, offsets, canvas=canvas), data.y[:n])


def translated_splits(
    splits: dict[str, ArrayData],
    *,
    canvas: int = 60,
    seed: int,
    limits: dict[str, int] | None = None,
) -> dict[str, ArrayData]:
    """Every split translated, with a different placement stream per split (seed, split index in
    'train', 'val', 'test' order) so train and test positions are independent draws."""
    limits = limits or {}
    order = ("train", "val", "test")
    return {
        name: translate(
            data,
            canvas=canvas,
            seed=seed * len(order) + order.index(name),
            limit=limits.get(name, 0),
        )
        for name, data in splits.items()
    }
