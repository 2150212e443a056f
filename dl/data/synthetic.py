"""Synthetic benchmarks that papers define by a formula; deterministic given ``seed``.

Each generator draws from ``np.random.default_rng(seed)`` only, so equal arguments give equal
arrays (for a given numpy version). ``seed`` may be an int or a sequence of ints (numpy's
SeedSequence entropy); the registered splits below use ``[seed, 0]``, ``[seed, 1]`` and
``[seed, 2]`` for train/val/test, so the three splits are independent draws.

Targets given by a closed form (`tent`, `sawtooth`) are jnp functions instead, so they trace
inside jitted code and keep the input's dtype (float64 under ``jax.enable_x64``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dl.data.pipeline import ArrayData

Seed = int | Sequence[int]


def separable(
    n: int, *, dim: int = 2, margin: float = 0.1, radius: float = 1.0, seed: Seed = 0
) -> tuple[ArrayData, np.ndarray]:
    """Linearly separable data through the origin with a known margin (perceptron theorem).

    Novikoff (1962): if ``||x|| <= R`` and some unit ``w*`` has ``y <w*, x> >= gamma`` for every
    example, the perceptron makes at most ``(R / gamma)^2`` mistakes. This draws such data:

    * ``w*``: a uniformly random unit vector in R^dim.
    * ``y``: n/2 of each of {-1, +1} (odd n: one more +1), in random order.
    * ``x = y * t * w* + v`` with ``t ~ U[margin, radius]`` and ``v`` uniform in the
      (dim-1)-ball of radius ``sqrt(radius^2 - t^2)`` orthogonal to ``w*``; so
      ``||x|| <= radius`` and ``y <w*, x> = t >= margin``. The smallest ``t`` is set to exactly
      ``margin``, so ``margin`` is the margin of ``w*`` on the sample (not the sample's largest
      margin, which another separator may beat). Not uniform on the ball: a rejection sampler
      would starve when ``margin`` is a large fraction of ``radius / sqrt(dim)``.

    All of the above hold in float64 before the cast to float32 (rounding ~1e-7 relative).

    Args:
      n: number of examples, >= 1.
      dim: input dimension, >= 1.
      margin: gamma, with 0 < margin <= radius.
      radius: R.
      seed: see the module docstring.

    Returns:
      (ArrayData(x=[n, dim] float32, y=[n] int32 in {-1, +1}), w_star=[dim] float32, unit norm).
    """
    if n < 1 or dim < 1:
        raise ValueError(f"need n >= 1 and dim >= 1, got n={n}, dim={dim}")
    if not 0.0 < margin <= radius:
        raise ValueError(f"need 0 < margin <= radius, got margin={margin}, radius={radius}")
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(dim)
    w /= np.linalg.norm(w)
    y = rng.permutation(np.where(np.arange(n) < (n + 1) // 2, 1, -1))
    t = rng.uniform(margin, radius, n)
    t[np.argmin(t)] = margin
    v = np.zeros((n, dim))
    if dim > 1:
        # Uniform in the (dim-1)-ball orthogonal to w*: a Gaussian projected onto w*'s
        # complement gives a uniform direction; the radius is r_max * U^(1 / (dim - 1)).
        g = rng.standard_normal((n, dim))
        g -= np.outer(g @ w, w)
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        r_max = np.sqrt(radius**2 - t**2)
        v = g * (r_max * rng.uniform(size=n) ** (1.0 / (dim - 1)))[:, None]
    x = (y * t)[:, None] * w + v
    return ArrayData(x.astype(np.float32), y.astype(np.int32)), w.astype(np.float32)


def xor(n: int, *, noise: float = 0.1, seed: Seed = 0) -> ArrayData:
    """The XOR problem (Minsky & Papert 1969; Rumelhart, Hinton & Williams 1986) with noise.

    Four Gaussian clusters with standard deviation ``noise`` centred at (+-1, +-1), n/4 points
    each (remainder to the first clusters), in random order. The label is the XOR of the
    centre's signs: 1 at (+1, -1) and (-1, +1), 0 at (+1, +1) and (-1, -1). With noise below
    about 0.3 almost every point lies in its centre's quadrant.

    Returns:
      ArrayData(x=[n, 2] float32, y=[n] int32 in {0, 1}).
    """
    if n < 1:
        raise ValueError(f"need n >= 1, got {n}")
    rng = np.random.default_rng(seed)
    corners = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    cluster = rng.permutation(np.arange(n) % 4)
    centre = corners[cluster]
    x = centre + noise * rng.standard_normal((n, 2))
    y = (centre[:, 0] != centre[:, 1]).astype(np.int32)
    return ArrayData(x.astype(np.float32), y)


def two_spirals(
    n: int = 194, *, noise: float = 0.0, turns: float = 3.0, seed: Seed = 0
) -> ArrayData:
    """Two interlocking spirals (Lang & Witbrock 1988, "Learning to tell two spirals apart").

    Spiral 0 has ``m = ceil(n / 2)`` points ``i = 0..m-1`` at angle ``phi = 2 pi turns s`` and
    radius ``r = 6.5 (104 - 96 s) / 104`` with ``s = i / (m - 1)``, i.e. ``(r sin phi, r cos phi)``;
    spiral 1 (``n - m`` points on the same grid) is spiral 0 rotated by pi, ``(-x, -y)``. The
    defaults reproduce the original 194-point benchmark exactly (``phi = i pi / 16``,
    ``r = 6.5 (104 - i) / 104``, radius 6.5 down to 0.5). ``noise`` adds isotropic Gaussian
    noise; with ``noise=0`` the result does not depend on ``seed``.

    Returns:
      ArrayData(x=[n, 2] float32, spiral 0 first, y=[n] int32 in {0, 1}).
    """
    if n < 2:
        raise ValueError(f"need n >= 2, got {n}")
    m = (n + 1) // 2
    s = np.arange(m) / max(m - 1, 1)
    phi = 2.0 * np.pi * turns * s
    # The 1988 radius 6.5 (104 - i) / 104 over i = 0..96, rescaled to s in [0, 1].
    r = 6.5 * (104.0 - 96.0 * s) / 104.0
    arm = np.stack([r * np.sin(phi), r * np.cos(phi)], axis=1)
    x = np.concatenate([arm, -arm[: n - m]])
    y = np.concatenate([np.zeros(m, np.int32), np.ones(n - m, np.int32)])
    if noise:
        x = x + noise * np.random.default_rng(seed).standard_normal(x.shape)
    return ArrayData(x.astype(np.float32), y)


def tent(x: jax.Array) -> jax.Array:
    """Telgarsky's tent (mirror) map t(x) = 2 min(x, 1 - x), mapping [0, 1] onto [0, 1]."""
    return 2.0 * jnp.minimum(x, 1.0 - x)


def sawtooth(x: jax.Array, k: int) -> jax.Array:
    """t^k(x), the tent map composed k times: 2^k linear pieces of slope +-2^k on [0, 1].

    Telgarsky (2016, "Benefits of depth in neural networks"): a depth-O(k) ReLU net computes it
    exactly, while a one-hidden-layer net needs about 2^k units. x: any shape, elementwise.
    """
    for _ in range(k):
        x = tent(x)
    return x


def _splits(make, sizes: tuple[int, int, int], seed: int, **kwargs) -> dict[str, ArrayData]:
    """train/val/test from ``make(size, seed=[seed, k], **kwargs)``, k = 0, 1, 2."""
    return {
        name: make(size, seed=[seed, k], **kwargs)
        for k, (name, size) in enumerate(zip(("train", "val", "test"), sizes))
    }


def xor_splits(
    *,
    data_dir: str | None = None,
    n_train: int = 1000,
    n_val: int = 500,
    n_test: int = 500,
    noise: float = 0.1,
    seed: int = 0,
) -> dict[str, ArrayData]:
    """Registered ``xor``: independent draws of `xor` per split (``data_dir`` is unused)."""
    del data_dir
    return _splits(xor, (n_train, n_val, n_test), seed, noise=noise)


def two_spirals_splits(
    *,
    data_dir: str | None = None,
    n_train: int = 194,
    n_val: int = 194,
    n_test: int = 194,
    noise: float = 0.0,
    turns: float = 3.0,
    seed: int = 0,
) -> dict[str, ArrayData]:
    """Registered ``two_spirals``: `two_spirals` per split with independent noise.

    With the default ``noise=0`` (the 1988 benchmark, where the task is to fit the 194 points)
    the three splits are the same points; pass ``noise > 0`` for a generalization test.
    """
    del data_dir
    return _splits(two_spirals, (n_train, n_val, n_test), seed, noise=noise, turns=turns)
