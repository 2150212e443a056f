"""Host-side batching: deterministic, resumable, fixed-shape batches of an in-memory split.

The contract the training loop relies on (`dl.train`): the batch at global step ``s`` is a pure
function of ``(seed, s)``. Epoch ``e = s // steps_per_epoch`` visits the examples in the order

    ``np.random.default_rng([seed, e]).permutation(n)``

(``arange(n)`` when ``shuffle=False``) and position ``s % steps_per_epoch`` takes the next
``batch_size`` of them. A run resumed at step ``s`` therefore sees exactly the batches an
uninterrupted run would have seen, with no iterator state to checkpoint.

Every batch has the same shapes, so a jitted step compiles once: the last, partial batch of an
epoch is padded up to ``batch_size`` by repeating its first example, and ``mask`` is 0 on the
padding (1 elsewhere). Losses weight examples by ``mask`` (see `dl.ops.losses`), so each example
counts exactly once per epoch. Padding repeats a real example rather than zeros so that anything
computed before the mask is applied (e.g. batch statistics) sees in-distribution inputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np


class ArrayData(NamedTuple):
    """One split held in host memory.

    Attributes:
      x: [n, ...] float32 inputs.
      y: [n] int32 class labels (float32 targets for regression; {-1, +1} for `separable`).
    """

    x: np.ndarray
    y: np.ndarray


Batch = dict[str, np.ndarray]


def _gather(data: ArrayData, idx: np.ndarray, batch_size: int) -> Batch:
    """Takes examples ``idx`` (1 <= len(idx) <= batch_size) and pads to ``batch_size``."""
    num_pad = batch_size - len(idx)
    mask = np.ones(batch_size, np.float32)
    if num_pad:
        idx = np.concatenate([idx, np.full(num_pad, idx[0], idx.dtype)])
        mask[batch_size - num_pad :] = 0.0
    return {"x": data.x[idx], "y": data.y[idx], "mask": mask}


class Loader:
    """Shuffled (or not) fixed-shape batches of ``data``; the batch depends only on (seed, step).

    Args:
      data: the split to batch; ``x`` and ``y`` share their leading dimension ``n >= 1``.
      batch_size: B, the leading dimension of every batch.
      seed: non-negative int; with the epoch it seeds the permutation (see the module docstring).
      shuffle: False visits the examples in storage order every epoch.

    Attributes:
      num_examples: n.
      steps_per_epoch: ceil(n / B).
    """

    def __init__(self, data: ArrayData, batch_size: int, *, seed: int, shuffle: bool = True):
        n = len(data.x)
        if len(data.y) != n:
            raise ValueError(f"x has {n} examples but y has {len(data.y)}")
        if n == 0:
            raise ValueError("cannot batch an empty split")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0 (numpy SeedSequence), got {seed}")
        self.data = data
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.num_examples = n
        self.steps_per_epoch = math.ceil(n / self.batch_size)
        # One permutation per epoch is reused by that epoch's steps_per_epoch batches; caching
        # the latest one keeps batch(step) O(B) in the usual sequential access pattern.
        self._cached: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        """[n] int64: the order in which epoch ``epoch`` visits the examples."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        if self.shuffle:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
        else:
            perm = np.arange(self.num_examples)
        self._cached = (epoch, perm)
        return perm

    def batch(self, step: int) -> Batch:
        """The batch at global step ``step`` >= 0.

        Returns:
          {'x': [B, ...], 'y': [B], 'mask': [B] float32}, dtypes as in ``data``.
        """
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        epoch, position = divmod(int(step), self.steps_per_epoch)
        start = position * self.batch_size
        idx = self.order(epoch)[start : start + self.batch_size]
        return _gather(self.data, idx, self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The ``steps_per_epoch`` batches of epoch ``epoch``, in order (``batch`` of each step)."""
        first = epoch * self.steps_per_epoch
        for step in range(first, first + self.steps_per_epoch):
            yield self.batch(step)


def eval_batches(data: ArrayData, batch_size: int) -> Iterator[Batch]:
    """Unshuffled fixed-shape batches covering ``data`` once, padded with ``mask`` 0 at the end."""
    return Loader(data, batch_size, seed=0, shuffle=False).epoch(0)
