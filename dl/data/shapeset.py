"""Shapeset-3x2-like images (Glorot & Bengio 2010, Sec. 2.1), rendered with numpy.

Each ``size x size`` gray image shows one or two shapes from three categories (triangle,
parallelogram, ellipse) with random shape parameters (relative side lengths and angles), scale,
rotation, position and gray levels. The label is the unordered set of categories present, which
gives nine classes: three single shapes and the six unordered pairs with repetition
(``CLASSES``). Two-shape images keep the paper's constraint that the second shape (painted over
the first) covers at most half of the first one's area; we also require it of the second's own
area, so neither shape is mostly hidden.

This is "-like": the paper's generator is not published, so the parameter ranges below are ours.

* Background gray ``bg ~ U[0, 1]``; each shape's gray is uniform on ``[0, 1]`` minus the band
  ``(bg - contrast, bg + contrast)``, so every shape differs from the background by at least
  ``contrast`` and its pixels can be counted exactly.
* A shape of circumradius ``r ~ U[r_min, r_max] * size`` (every vertex, or the ellipse's major
  semi-axis, lies within ``r`` of the centre) is centred uniformly where it fits in the image.
* Triangle: vertices at polar angles ``theta + 2 pi k / 3 + U[-pi/5, pi/5]`` and distances
  ``r * U[0.6, 1]`` from the centre (convex, counter-clockwise).
* Parallelogram: sides of lengths ratio ``U[0.4, 1]`` at an angle ``U[pi/4, pi/2]``, rotated by
  ``theta`` and scaled so that its longer half-diagonal is ``r``.
* Ellipse: semi-axes ``r`` and ``r * U[0.4, 1]``, rotated by ``theta``.

A pixel (row i, column j) belongs to a shape when its centre ``(x, y) = (j + 0.5, i + 0.5)`` is
inside; all point-in-shape tests are vectorized over images and pixels.

Deterministic given ``seed`` (an int or a sequence of ints, numpy SeedSequence entropy).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from dl.data.pipeline import ArrayData

Seed = int | Sequence[int]

SHAPES = ("triangle", "parallelogram", "ellipse")
# Class k <-> the sorted tuple of shape indices present: singles first, then unordered pairs.
CLASS_SHAPES: tuple[tuple[int, ...], ...] = tuple((k,) for k in range(3)) + tuple(
    itertools.combinations_with_replacement(range(3), 2)
)
CLASSES = tuple("+".join(SHAPES[k] for k in c) for c in CLASS_SHAPES)

_MAX_REDRAWS = 200  # rounds of redrawing second shapes that overlap too much; a few suffice
_CHUNK = 512  # images per vectorized point-in-shape test: keeps temporaries ~10 MB


def pixel_centres(size: int) -> np.ndarray:
    """[size * size, 2] (x, y) centres of the pixels in row-major order."""
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return np.stack([j.ravel() + 0.5, i.ravel() + 0.5], axis=1)


def convex_polygon_mask(vertices: np.ndarray, size: int) -> np.ndarray:
    """Pixels inside convex polygons.

    A point is inside a convex polygon iff it lies on the same side of every edge line: the
    cross products ``edge_k x (p - v_k)`` are all >= 0 (counter-clockwise vertices) or all <= 0
    (clockwise). Points exactly on an edge count as inside.

    Args:
      vertices: [n, V, 2] (x, y) vertices of n convex polygons, in order around each polygon.
      size: the image is ``size x size``.

    Returns:
      [n, size, size] bool.
    """
    vertices = np.asarray(vertices, np.float32)
    if len(vertices) > _CHUNK:
        return np.concatenate(
            [
                convex_polygon_mask(vertices[i : i + _CHUNK], size)
                for i in range(0, len(vertices), _CHUNK)
            ]
        )
    px, py = pixel_centres(size).T.astype(np.float32)  # [P] each
    ex, ey = np.moveaxis(np.roll(vertices, -1, axis=1) - vertices, -1, 0)  # [n, V] each
    vx, vy = np.moveaxis(vertices, -1, 0)
    # edge x (p - v) = ex * py - ey * px - (ex * vy - ey * vx): no [n, V, P, 2] temporary.
    cross = (ex[..., None] * py - ey[..., None] * px) - (ex * vy - ey * vx)[..., None]
    inside = np.all(cross >= 0, axis=1) | np.all(cross <= 0, axis=1)
    return inside.reshape(len(vertices), size, size)


def ellipse_mask(
    centre: np.ndarray, semi_axes: np.ndarray, angle: np.ndarray, size: int
) -> np.ndarray:
    """Pixels inside rotated ellipses ``(u / a)^2 + (v / b)^2 <= 1``, where (u, v) is the pixel
    centre relative to ``centre`` rotated by ``-angle``.

    Args:
      centre: [n, 2] (x, y); semi_axes: [n, 2] (a, b) along the rotated (u, v) axes;
      angle: [n] radians, counter-clockwise in (x, y).

    Returns:
      [n, size, size] bool.
    """
    if len(centre) > _CHUNK:
        return np.concatenate(
            [
                ellipse_mask(
                    centre[i : i + _CHUNK], semi_axes[i : i + _CHUNK], angle[i : i + _CHUNK], size
                )
                for i in range(0, len(centre), _CHUNK)
            ]
        )
    d = pixel_centres(size)[None] - np.asarray(centre, np.float64)[:, None]  # [n, P, 2]
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    u = c * d[..., 0] + s * d[..., 1]
    v = -s * d[..., 0] + c * d[..., 1]
    a, b = semi_axes[:, 0:1], semi_axes[:, 1:2]
    return ((u / a) ** 2 + (v / b) ** 2 <= 1.0).reshape(len(centre), size, size)


def polygon_area(vertices: np.ndarray) -> np.ndarray:
    """[n, V, 2] -> [n] areas by the shoelace formula (any orientation)."""
    x, y = vertices[..., 0], vertices[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1))


def _draw(
    rng: np.random.Generator, kinds: np.ndarray, size: int, r_min: float, r_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """One random shape of kind ``kinds[m]`` (index into SHAPES) per row: ([m, size, size] bool
    masks, [m] exact areas of the continuous shapes)."""
    m = len(kinds)
    r = rng.uniform(r_min, r_max, m) * size
    centre = rng.uniform(r[:, None], size - r[:, None], (m, 2))
    theta = rng.uniform(0.0, 2.0 * np.pi, m)
    # Every kind's parameters are drawn for every row so that each row's draws do not depend on
    # the kinds of the other rows.
    tri_angle = (
        theta[:, None]
        + 2.0 * np.pi * np.arange(3) / 3.0
        + rng.uniform(-np.pi / 5.0, np.pi / 5.0, (m, 3))
    )
    tri_radius = r[:, None] * rng.uniform(0.6, 1.0, (m, 3))
    par_ratio = rng.uniform(0.4, 1.0, m)
    par_angle = rng.uniform(np.pi / 4.0, np.pi / 2.0, m)
    ell_ratio = rng.uniform(0.4, 1.0, m)

    masks = np.zeros((m, size, size), bool)
    areas = np.zeros(m)
    tri = kinds == 0
    if tri.any():
        v = centre[tri, None] + tri_radius[tri, :, None] * np.stack(
            [np.cos(tri_angle[tri]), np.sin(tri_angle[tri])], axis=-1
        )
        masks[tri] = convex_polygon_mask(v, size)
        areas[tri] = polygon_area(v)
    par = kinds == 1
    if par.any():
        t, alpha = theta[par], par_angle[par]
        a = np.stack([np.cos(t), np.sin(t)], -1)
        b = par_ratio[par, None] * np.stack([np.cos(t + alpha), np.sin(t + alpha)], -1)
        half_diag = 0.5 * np.maximum(np.linalg.norm(a + b, axis=-1), np.linalg.norm(a - b, axis=-1))
        scale = (r[par] / half_diag)[:, None]
        a, b = a * scale, b * scale
        c = centre[par]
        v = np.stack([c - (a + b) / 2, c + (a - b) / 2, c + (a + b) / 2, c - (a - b) / 2], axis=1)
        masks[par] = convex_polygon_mask(v, size)
        areas[par] = np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])
    ell = kinds == 2
    if ell.any():
        axes = np.stack([r[ell], r[ell] * ell_ratio[ell]], axis=1)
        masks[ell] = ellipse_mask(centre[ell], axes, theta[ell], size)
        areas[ell] = np.pi * axes[:, 0] * axes[:, 1]
    return masks, areas


def _gray(rng: np.random.Generator, bg: np.ndarray, contrast: float) -> np.ndarray:
    """Uniform on [0, 1] minus (bg - contrast, bg + contrast), one per entry of ``bg``."""
    below = np.maximum(bg - contrast, 0.0)
    above = np.maximum(1.0 - bg - contrast, 0.0)
    t = rng.uniform(0.0, 1.0, bg.shape) * (below + above)
    return np.where(t < below, t, bg + contrast + (t - below))


def sample(
    n: int,
    *,
    size: int = 32,
    r_min: float = 0.18,
    r_max: float = 0.36,
    contrast: float = 0.3,
    seed: Seed = 0,
) -> dict[str, np.ndarray]:
    """Draws n images with exactly balanced classes (counts differ by at most one), shuffled.

    Returns a dict with
      images: [n, size, size] float32 in [0, 1];
      labels: [n] int32 class indices into ``CLASSES``;
      kinds: [n, 2] int32 shape index per painted shape in painting order, -1 for none;
      areas: [n, 2] float64 exact areas of the continuous shapes (0 for none);
      masks: [n, 2, size, size] bool pixels of each shape (before any overpainting);
      background: [n] and gray: [n, 2] float64 gray levels.
    """
    if n < 1 or size < 8:
        raise ValueError(f"need n >= 1 and size >= 8, got n={n}, size={size}")
    if not 0.0 < r_min <= r_max <= 0.5:
        raise ValueError(f"need 0 < r_min <= r_max <= 0.5, got {r_min}, {r_max}")
    if not 0.0 <= contrast < 0.5:
        raise ValueError(f"need 0 <= contrast < 0.5, got {contrast}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int32)
    kinds = np.full((n, 2), -1, np.int32)
    for k, shapes in enumerate(CLASS_SHAPES):
        kinds[labels == k, : len(shapes)] = shapes
    # Pairs are painted in random order: which shape lies on top carries no label information.
    swap = (kinds[:, 1] >= 0) & (rng.uniform(size=n) < 0.5)
    kinds[swap] = kinds[swap][:, ::-1]

    masks = np.zeros((n, 2, size, size), bool)
    areas = np.zeros((n, 2))
    masks[:, 0], areas[:, 0] = _draw(rng, kinds[:, 0], size, r_min, r_max)
    pending = np.flatnonzero(kinds[:, 1] >= 0)
    for _ in range(_MAX_REDRAWS):
        if not len(pending):
            break
        m2, a2 = _draw(rng, kinds[pending, 1], size, r_min, r_max)
        overlap = np.sum(m2 & masks[pending, 0], axis=(1, 2))
        ok = (overlap <= 0.5 * masks[pending, 0].sum(axis=(1, 2))) & (
            overlap <= 0.5 * m2.sum(axis=(1, 2))
        )
        masks[pending[ok], 1], areas[pending[ok], 1] = m2[ok], a2[ok]
        pending = pending[~ok]
    if len(pending):
        raise RuntimeError(f"{len(pending)} second shapes still overlap after {_MAX_REDRAWS} draws")

    background = rng.uniform(0.0, 1.0, n)
    gray = np.stack([_gray(rng, background, contrast), _gray(rng, background, contrast)], axis=1)
    images = np.broadcast_to(background[:, None, None], (n, size, size)).copy()
    for s in range(2):  # painter's order: the second shape covers the first
        images = np.where(masks[:, s], gray[:, s, None, None], images)
    return {
        "images": images.astype(np.float32),
        "labels": labels,
        "kinds": kinds,
        "areas": areas,
        "masks": masks,
        "background": background,
        "gray": gray,
    }


def shapeset(n: int, *, size: int = 32, seed: Seed = 0, **kwargs) -> ArrayData:
    """n flattened images: ArrayData(x=[n, size * size] float32 in [0, 1], y=[n] int32 in
    [0, 9)). ``kwargs`` go to `sample`."""
    s = sample(n, size=size, seed=seed, **kwargs)
    return ArrayData(s["images"].reshape(n, size * size), s["labels"])


def shapeset_splits(
    *,
    data_dir: str | None = None,
    n_train: int = 10_000,
    n_val: int = 2_000,
    n_test: int = 2_000,
    size: int = 32,
    seed: int = 0,
) -> dict[str, ArrayData]:
    """train/val/test as independent draws with seeds [seed, 0], [seed, 1], [seed, 2]
    (``data_dir`` is unused: the data is synthetic)."""
    del data_dir
    return {
        name: shapeset(k_n, size=size, seed=[seed, k])
        for k, (name, k_n) in enumerate(zip(("train", "val", "test"), (n_train, n_val, n_test)))
    }
