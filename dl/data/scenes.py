"""Multi-digit scenes for semantic segmentation: MNIST digits pasted into larger canvases.

Each scene is a ``height x width`` (64 x 84 by default) gray canvas holding 2 or 3 whole 28 x 28
MNIST digits (the count uniform over ``num_digits``) at random positions whose 28 x 28 boxes do
not overlap, so a pixel is covered by at most one digit and pasting is a plain copy. Positions are
drawn uniformly over the canvas by rejection: a box that overlaps an earlier one is redrawn (up
to ``_MAX_TRIES`` times), and a scene whose boxes no longer fit is redrawn from scratch.

Per-pixel labels (``NUM_CLASSES`` = 11): ``BACKGROUND`` = 0, and ``d + 1`` for digit ``d`` where
the pasted digit's intensity is above ``threshold`` (0.5); fainter pixels of a digit (its
anti-aliased rim) are background, as are pixels no digit covers.

Splits draw their digits from the matching MNIST split (train scenes from train digits, test
scenes from test digits), so no digit image appears in two scene splits. Deterministic given
``seed`` (numpy SeedSequence entropy); each split gets its own stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dl.data.pipeline import ArrayData

BACKGROUND = 0
NUM_CLASSES = 11  # background + 10 digits
CLASS_NAMES = ("bg",) + tuple(str(d) for d in range(10))
DIGIT = 28  # MNIST's side
_MAX_TRIES = 50  # box redraws before a scene is started over; far more than typical needs


def _place(rng: np.random.Generator, k: int, height: int, width: int) -> list[tuple[int, int]]:
    """Top-left corners of `k` non-overlapping DIGIT x DIGIT boxes inside the canvas."""
    while True:
        corners: list[tuple[int, int]] = []
        for _ in range(k):
            for _ in range(_MAX_TRIES):
                r = int(rng.integers(0, height - DIGIT + 1))
                c = int(rng.integers(0, width - DIGIT + 1))
                if all(abs(r - r0) >= DIGIT or abs(c - c0) >= DIGIT for r0, c0 in corners):
                    corners.append((r, c))
                    break
            else:
                break  # no room left: start the scene over
        if len(corners) == k:
            return corners


def make_scenes(
    images: np.ndarray,
    labels: np.ndarray,
    num_scenes: int,
    *,
    seed: int | Sequence[int],
    height: int = 64,
    width: int = 84,
    num_digits: Sequence[int] = (2, 3),
    threshold: float = 0.5,
) -> tuple[ArrayData, np.ndarray, np.ndarray]:
    """Renders `num_scenes` scenes from a pool of digits.

    Args:
      images: [n, 28, 28] or [n, 28, 28, 1] digit intensities in [0, 1].
      labels: [n] digit classes 0-9.
      num_digits: the possible digit counts per scene, drawn uniformly.
    Returns:
      scenes: ArrayData with x [num_scenes, height, width, 1] float32 and y [num_scenes, height,
        width] int32 (0 = background, d + 1 = digit d);
      sources: [num_scenes, max(num_digits)] int indices into `images` (-1 = no digit);
      corners: [num_scenes, max(num_digits), 2] top-left (row, col) of each box (-1 = none).
    """
    images = np.asarray(images, np.float32).reshape(-1, DIGIT, DIGIT)
    labels = np.asarray(labels)
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many digit labels as images (> 0): {len(images)}, {len(labels)}")
    if height < DIGIT or width < DIGIT:
        raise ValueError(f"canvas {height}x{width} is smaller than a {DIGIT}x{DIGIT} digit")
    most = max(num_digits)
    if (height // DIGIT) * (width // DIGIT) < most:
        raise ValueError(f"{most} non-overlapping digits may not fit in {height}x{width}")
    rng = np.random.default_rng(seed)
    x = np.zeros((num_scenes, height, width), np.float32)
    y = np.zeros((num_scenes, height, width), np.int32)
    sources = np.full((num_scenes, most), -1, np.int64)
    corners = np.full((num_scenes, most, 2), -1, np.int64)
    for s in range(num_scenes):
        k = int(rng.choice(num_digits))
        picks = rng.choice(len(images), size=k, replace=False)
        for j, ((r, c), i) in enumerate(zip(_place(rng, k, height, width), picks)):
            digit = images[i]
            x[s, r : r + DIGIT, c : c + DIGIT] = digit
            y[s, r : r + DIGIT, c : c + DIGIT] = np.where(digit > threshold, labels[i] + 1, 0)
            sources[s, j], corners[s, j] = i, (r, c)
    return ArrayData(x[..., None], y), sources, corners


def load_scenes(
    digits: Mapping[str, ArrayData],
    sizes: Mapping[str, int],
    *,
    seed: int,
    **kwargs,
) -> dict[str, ArrayData]:
    """Scene splits from digit splits of the same names (e.g. `dl.data.load("mnist",
    flatten=False)`'s train/val/test): `sizes[name]` scenes from `digits[name]`, each split
    seeded by (seed, its position in `sizes`). `kwargs` go to `make_scenes`."""
    out = {}
    for k, (name, n) in enumerate(sizes.items()):
        split = digits[name]
        out[name] = make_scenes(split.x, split.y, n, seed=(seed, k), **kwargs)[0]
    return out
