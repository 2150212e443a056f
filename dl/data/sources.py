"""Real datasets: scikit-learn's bundled digits; MNIST and Fashion-MNIST from their IDX files or
from tensorflow-datasets.

Nothing here downloads. ``mnist`` and ``fashion_mnist`` are read from the first data root (see
`dl.data.roots`: ``data_dir``, else ``$DL_DATA_DIR``, else ``<repo>/data`` then
``<repo>/../shared/data``) that holds either

* ``<root>/<name>/`` with the four official IDX files (`dl.data.idx`), or
* a tfds dataset prepared as ArrayRecord, read with ``tfds.data_source`` (random access; no
  TensorFlow at run time; preparing one needs TensorFlow once, as the ``dl[prepare]`` extra).

Within one root the IDX files win; ``source='idx'`` or ``source='tfds'`` forces one. When
neither is found, a one-line `DataError` names every root looked in and how to get the data,
before tfds is imported (so no tfds log line precedes it).

Splits (fixed, so every experiment and every paper comparison uses the same examples):

* ``digits``: 1797 8x8 images, stratified by class with ``random_state=0``: 20% test, then 25%
  of the rest as val; that is 1077 train / 360 val / 360 test.
* ``mnist``, ``fashion_mnist``: the first 50000 train images -> train, the last 10000 -> val
  (tfds ``'train[:-10000]'`` / ``'train[-10000:]'``), the 10000 test images -> test;
  ``num_val`` changes the 10000. Both sources give bit-identical arrays for the same files.

Decoded tfds splits are cached as uint8 .npz under ``<root>/dl_cache/`` (``cache=False`` opts
out): the first MNIST load decodes 70000 PNGs (~15 s on 2 cores), later ones take a second.
The IDX files need no cache (all of MNIST reads in under a second).
"""

from __future__ import annotations

import contextlib
import glob
import os
import urllib.parse
import zipfile

import numpy as np

from dl.data import idx
from dl.data.pipeline import ArrayData
from dl.data.roots import DataError, data_roots, describe

# Seed of both train_test_split calls that fix the digits split. Changing it changes every
# digits result in the repository.
_DIGITS_SPLIT_SEED = 0
# Records fetched per __getitems__ call: large enough to amortize the per-call overhead of the
# ArrayRecord reader, small enough that the decoded Python dicts of one chunk stay a few MB.
_READ_CHUNK = 4096


def digits(
    *, data_dir: str | None = None, flatten: bool = True, train_fraction: float = 1.0
) -> dict[str, ArrayData]:
    """scikit-learn's 8x8 handwritten digits (UCI optdigits test set), split as in the module doc.

    Args:
      data_dir: unused (the data ships with scikit-learn).
      flatten: True gives x [n, 64]; False gives x [n, 8, 8, 1] (NHWC).
      train_fraction: in (0, 1]; keeps a stratified, deterministic ``floor(fraction * 1077)``
        subset of train (val and test are unchanged), for small-data experiments.

    Returns:
      {'train', 'val', 'test'}: ArrayData(x float32 in [0, 1] (pixel / 16), y [n] int32 0..9).
    """
    del data_dir
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    if not flatten:
        x = x.reshape(-1, 8, 8, 1)
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=0.2, stratify=y, random_state=_DIGITS_SPLIT_SEED)
    train, val = train_test_split(
        rest, test_size=0.25, stratify=y[rest], random_state=_DIGITS_SPLIT_SEED
    )
    if train_fraction < 1.0:
        train, _ = train_test_split(
            train, train_size=train_fraction, stratify=y[train], random_state=_DIGITS_SPLIT_SEED
        )
    return {
        name: ArrayData(x[i], y[i]) for name, i in (("train", train), ("val", val), ("test", test))
    }


# Where the official files of each IDX dataset come from (same four file names for both).
_IDX_HOME = {
    "mnist": "Yann LeCun's MNIST page http://yann.lecun.com/exdb/mnist/",
    "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist (data/fashion/)",
}
SOURCES = ("auto", "idx", "tfds")


def _prepare_command(name: str, root: str) -> str:
    return (
        f"pip install 'dl[prepare]' && python -c \"import tensorflow_datasets as tfds; "
        f"tfds.builder('{name}', data_dir='{root}', file_format='array_record')"
        f'.download_and_prepare()"'
    )


def _not_found(name: str, roots: list[tuple[str, str]], source: str = "auto") -> DataError:
    """The one-line error for a dataset found under none of ``roots``."""
    target = roots[0][0]
    idx_fix = (
        f"put the official {', '.join(f for pair in idx.FILES.values() for f in pair)} "
        f"from {_IDX_HOME[name]} into {os.path.join(target, name)}/"
    )
    tfds_fix = f"prepare it for tfds once: {_prepare_command(name, target)}"
    looked_for = {
        "auto": "IDX files or a tfds ArrayRecord copy",
        "idx": "IDX files",
        "tfds": "a tfds ArrayRecord copy (TFRecord has no random access)",
    }[source]
    fixes = {"auto": f"{idx_fix}; or {tfds_fix}", "idx": idx_fix, "tfds": tfds_fix}[source]
    return DataError(
        f"{name} not found: looked for {looked_for} under {describe(roots)}. To fix: {fixes}; "
        f"or point --data-dir / $DL_DATA_DIR at a folder that has it."
    )


def _tfds_prepared(root: str, name: str) -> bool:
    """A tfds copy of ``name`` under ``root``: ``<root>/<name>[/<config>]/<version>/
    dataset_info.json``. Checked on files, so a missing dataset never imports tfds."""
    base = os.path.join(glob.escape(root), name)
    return bool(
        glob.glob(f"{base}/*/dataset_info.json") or glob.glob(f"{base}/*/*/dataset_info.json")
    )


@contextlib.contextmanager
def _quiet_absl():
    """tfds logs absl WARNINGs (e.g. "Variant folder ... has no dataset_info.json") on the way
    to errors we turn into one-line DataErrors; keep stderr to that line."""
    from absl import logging as absl_logging

    previous = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(previous)


def _decode(source, name: str, split: str, root: str) -> tuple[np.ndarray, np.ndarray]:
    """Decodes a tfds data source of {'image': [H, W, C] uint8, 'label': int}.

    Returns:
      (images [n, H, W, C] uint8, labels [n] int32).
    """
    n = len(source)
    if n == 0:
        raise DataError(f"{name} split {split!r} under {root} is empty; re-prepare the dataset")
    images = labels = None
    for start in range(0, n, _READ_CHUNK):
        # __getitems__ reads a whole chunk per call (ArrayRecord's batched lookup) instead of
        # one file read per example.
        records = source.__getitems__(list(range(start, min(start + _READ_CHUNK, n))))
        if images is None:
            images = np.empty((n, *records[0]["image"].shape), np.uint8)
            labels = np.empty(n, np.int32)
        for offset, record in enumerate(records):
            images[start + offset] = record["image"]
            labels[start + offset] = record["label"]
    return images, labels


def cache_path(root: str, full_name: str, split: str) -> str:
    """Where the decoded arrays of ``split`` of tfds dataset ``full_name`` (name/version) live."""
    return os.path.join(root, "dl_cache", full_name, urllib.parse.quote(split, safe="") + ".npz")


def _read_split(
    source, name: str, split: str, root: str, cache: bool
) -> tuple[np.ndarray, np.ndarray]:
    """`_decode`, through an .npz cache of the decoded uint8 arrays under ``root``.

    Decoding runs tfds' per-example PNG decoder in Python (~0.2 ms per image on a 2-core CPU,
    ~15 s for MNIST); the cache turns later loads into one file read. The cache is keyed by
    dataset version and split string and checked against the example count; it is written
    atomically, and skipped when ``root`` is read-only.
    """
    path = cache_path(root, source.dataset_info.full_name, split)
    if cache and os.path.exists(path):
        try:
            with np.load(path) as f:
                images, labels = f["images"], f["labels"]
            if len(labels) == len(source) == len(images):
                return images, labels
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # unreadable cache: decode again and overwrite it
    images, labels = _decode(source, name, split, root)
    if cache:
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "wb") as f:
                np.savez(f, images=images, labels=labels)
            os.replace(tmp, path)
        except OSError:
            pass  # read-only data dir: correct, just slower next time
    return images, labels


def tfds_images(
    name: str,
    *,
    data_dir: str | None = None,
    flatten: bool = True,
    num_val: int = idx.DEFAULT_NUM_VAL,
    cache: bool = True,
) -> dict[str, ArrayData]:
    """A prepared tfds image-classification dataset with 'train' and 'test' splits.

    Args:
      name: a tfds name whose examples are {'image': [H, W, C] uint8, 'label': int}.
      data_dir: the data root to read; None searches `dl.data.roots.data_roots` for the first
        root holding a prepared copy.
      flatten: True gives x [n, H*W*C]; False gives x [n, H, W, C].
      num_val: the last ``num_val`` examples of tfds' train split become val; 1 <= num_val <
        the train split's size.
      cache: keep the decoded arrays in `cache_path` under the root (see `_read_split`).

    Returns:
      {'train', 'val', 'test'}: ArrayData(x float32 in [0, 1] (pixel / 255), y [n] int32).

    Raises:
      DataError: the dataset is not prepared (as ArrayRecord) under the root.
    """
    if num_val < 1:
        raise ValueError(f"num_val must be >= 1, got {num_val}")
    roots = data_roots(data_dir)
    root, origin = next(((r, o) for r, o in roots if _tfds_prepared(r, name)), roots[0])
    import tensorflow_datasets as tfds

    splits = {"train": f"train[:-{num_val}]", "val": f"train[-{num_val}:]", "test": "test"}
    try:
        with _quiet_absl():
            # The whole train split first: its size bounds num_val, and tfds' own error for an
            # empty slice ("Paths sequence can not be of 0 length") says nothing useful.
            num_train = len(tfds.data_source(name, split="train", data_dir=root, download=False))
            if num_val >= num_train:
                raise ValueError(f"num_val must be < the {num_train} train examples, got {num_val}")
            sources = tfds.data_source(
                name, split=list(splits.values()), data_dir=root, download=False
            )
    # With no files under root, tfds builds the info from code with the TFRecord default and
    # refuses random access (NotImplementedError); a builder that defaults to ArrayRecord gets
    # to the empty split table instead (KeyError). Files prepared as TFRecord also give the
    # NotImplementedError.
    except (NotImplementedError, KeyError) as e:
        raise _not_found(name, [(root, origin)], "tfds") from e
    images, labels = {}, {}
    for (key, split), source in zip(splits.items(), sources):
        images[key], labels[key] = _read_split(source, name, split, root, cache)
    return idx.to_splits(images, labels, flatten=flatten)


def mnist_format(
    name: str,
    *,
    data_dir: str | None = None,
    flatten: bool = True,
    num_val: int = idx.DEFAULT_NUM_VAL,
    cache: bool = True,
    source: str = "auto",
) -> dict[str, ArrayData]:
    """MNIST or Fashion-MNIST from the first data root that holds it (module docstring).

    Args:
      name: ``'mnist'`` or ``'fashion_mnist'``; the IDX folder is ``<root>/<name>/``.
      data_dir: an explicit data root (the only one searched); None uses `data_roots`.
      flatten: True gives x [n, 784]; False gives x [n, 28, 28, 1].
      num_val: the last ``num_val`` of the 60000 train images become val; 1 <= num_val < 60000.
      cache: tfds source only: keep decoded arrays under the root (see `_read_split`).
      source: ``'auto'`` (per root in lookup order: the IDX files if the folder has any, else
        a prepared tfds copy), ``'idx'`` or ``'tfds'`` (only that source; ``'tfds'`` asks tfds
        even where no prepared copy is seen, which is what ``tfds.testing.mock_data`` needs).

    Returns:
      {'train', 'val', 'test'}: ArrayData(x float32 in [0, 1] (pixel / 255), y [n] int32).

    Raises:
      DataError: not found under any root (one line naming each), or a corrupt file.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if num_val < 1:
        raise ValueError(f"num_val must be >= 1, got {num_val}")
    kwargs = {"flatten": flatten, "num_val": num_val}
    if source == "tfds":
        return tfds_images(name, data_dir=data_dir, cache=cache, **kwargs)
    roots = data_roots(data_dir)
    for root, _ in roots:
        folder = os.path.join(root, name)
        if idx.has_idx_files(folder):
            return idx.load_idx(folder, **kwargs)
        if source == "auto" and _tfds_prepared(root, name):
            return tfds_images(name, data_dir=root, cache=cache, **kwargs)
    raise _not_found(name, roots, source)


def mnist(
    *,
    data_dir: str | None = None,
    flatten: bool = True,
    num_val: int = idx.DEFAULT_NUM_VAL,
    cache: bool = True,
    source: str = "auto",
) -> dict[str, ArrayData]:
    """MNIST (LeCun et al. 1998): 28x28x1 digits; 50000 / 10000 / 10000. See `mnist_format`."""
    return mnist_format(
        "mnist", data_dir=data_dir, flatten=flatten, num_val=num_val, cache=cache, source=source
    )


def fashion_mnist(
    *,
    data_dir: str | None = None,
    flatten: bool = True,
    num_val: int = idx.DEFAULT_NUM_VAL,
    cache: bool = True,
    source: str = "auto",
) -> dict[str, ArrayData]:
    """Fashion-MNIST (Xiao et al. 2017): 28x28x1, 10 classes; 50000 / 10000 / 10000. See
    `mnist_format`."""
    return mnist_format(
        "fashion_mnist",
        data_dir=data_dir,
        flatten=flatten,
        num_val=num_val,
        cache=cache,
        source=source,
    )
