"""The explicit registry of dataset names and `load`, the one entry point experiments call."""

from __future__ import annotations

from collections.abc import Callable

from dl.data import sources, synthetic
from dl.data.pipeline import ArrayData
from dl.data.roots import DataError

# name -> builder(*, data_dir, **kwargs) -> {'train', 'val', 'test'}: ArrayData. Each builder's
# docstring states its split and the keyword arguments it accepts.
DATASETS: dict[str, Callable[..., dict[str, ArrayData]]] = {
    "digits": sources.digits,
    "mnist": sources.mnist,
    "fashion_mnist": sources.fashion_mnist,
    "xor": synthetic.xor_splits,
    "two_spirals": synthetic.two_spirals_splits,
}


def load(name: str, *, data_dir: str | None = None, **kwargs) -> dict[str, ArrayData]:
    """Loads dataset ``name`` as {'train', 'val', 'test'} ArrayData.

    Args:
      name: a key of `DATASETS`.
      data_dir: the data root of file-backed datasets, the only one searched when given
        (default: $DL_DATA_DIR, else ``<repo>/data`` then ``<repo>/../shared/data``; see
        `dl.data.roots`); ignored by bundled and synthetic ones.
      **kwargs: passed to the builder (e.g. ``flatten=False``, ``train_fraction=0.1``, ``seed``,
        ``source='idx'``).

    Raises:
      DataError: ``name`` is unknown (the message lists the valid names) or its files are missing.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](data_dir=data_dir, **kwargs)
