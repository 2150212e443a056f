"""Real datasets: scikit-learn's bundled digits and tensorflow-datasets image classification.

Nothing here downloads. ``tfds`` datasets are read with ``tfds.data_source`` (random access over
ArrayRecord files; no TensorFlow at run time). Preparing one needs TensorFlow once, as the
optional ``dl[prepare]`` extra; a dataset that is not prepared raises a one-line `DataError`
saying where we looked and how to prepare it.

Splits (fixed, so every experiment and every paper comparison uses the same examples):

* ``digits``: 1797 8x8 images, stratified by class with ``random_state=0``: 20% test, then 25%
  of the rest as val; that is 1077 train / 360 val / 360 test.
* ``mnist``, ``fashion_mnist``: tfds ``'train[:-5000]'`` (55000) -> train, ``'train[-5000:]'``
  (5000) -> val, ``'test'`` (10000) -> test; ``num_val`` changes the 5000.

Decoded tfds splits are cached as uint8 .npz under ``<root>/dl_cache/`` (``cache=False`` opts
out): the first MNIST load decodes 70000 PNGs (~15 s on 2 cores), later ones take a second.
"""

from __future__ import annotations

import os
import urllib.parse
import zipfile

import numpy as np

from dl.data.pipeline import ArrayData

# Seed of both train_test_split calls that fix the digits split. Changing it changes every
# digits result in the repository.
_DIGITS_SPLIT_SEED = 0
# Records fetched per __getitems__ call: large enough to amortize the per-call overhead of the
# ArrayRecord reader, small enough that the decoded Python dicts of one chunk stay a few MB.
_READ_CHUNK = 4096


class DataError(Exception):
    """A dataset is missing, corrupt or unknown; the message says where we looked and the fix."""


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


def tfds_root(data_dir: str | None) -> str:
    """Where tfds datasets are read from: ``data_dir``, else $DL_DATA_DIR, else tfds' default
    ($TFDS_DATA_DIR or ~/tensorflow_datasets)."""
    if data_dir:
        return os.fspath(data_dir)
    if os.environ.get("DL_DATA_DIR"):
        return os.environ["DL_DATA_DIR"]
    import tensorflow_datasets as tfds

    return tfds.core.constants.get_default_data_dir()


def _not_prepared(name: str, root: str) -> DataError:
    return DataError(
        f"{name} not found under {root} (or prepared as TFRecord, which has no random access). "
        f"Prepare it once: pip install 'dl[prepare]' && python -c \"import tensorflow_datasets "
        f"as tfds; tfds.builder('{name}', data_dir='{root}', file_format='array_record')"
        f'.download_and_prepare()"; or point --data-dir / $DL_DATA_DIR at a prepared copy.'
    )


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
    num_val: int = 5000,
    cache: bool = True,
) -> dict[str, ArrayData]:
    """A prepared tfds image-classification dataset with 'train' and 'test' splits.

    Args:
      name: a tfds name whose examples are {'image': [H, W, C] uint8, 'label': int}.
      data_dir: see `tfds_root`.
      flatten: True gives x [n, H*W*C]; False gives x [n, H, W, C].
      num_val: the last ``num_val`` examples of tfds' train split become val, >= 1.
      cache: keep the decoded arrays in `cache_path` under the root (see `_read_split`).

    Returns:
      {'train', 'val', 'test'}: ArrayData(x float32 in [0, 1] (pixel / 255), y [n] int32).

    Raises:
      DataError: the dataset is not prepared (as ArrayRecord) under the root.
    """
    import tensorflow_datasets as tfds

    if num_val < 1:
        raise ValueError(f"num_val must be >= 1, got {num_val}")
    root = tfds_root(data_dir)
    splits = {"train": f"train[:-{num_val}]", "val": f"train[-{num_val}:]", "test": "test"}
    try:
        sources = tfds.data_source(name, split=list(splits.values()), data_dir=root, download=False)
    # With no files under root, tfds builds the info from code with the TFRecord default and
    # refuses random access (NotImplementedError); a builder that defaults to ArrayRecord gets
    # to the empty split table instead (KeyError). Files prepared as TFRecord also give the
    # NotImplementedError.
    except (NotImplementedError, KeyError) as e:
        raise _not_prepared(name, root) from e
    out = {}
    for (key, split), source in zip(splits.items(), sources):
        images, labels = _read_split(source, name, split, root, cache)
        x = images.astype(np.float32) / np.float32(255.0)
        out[key] = ArrayData(x.reshape(len(x), -1) if flatten else x, labels)
    return out


def mnist(
    *, data_dir: str | None = None, flatten: bool = True, num_val: int = 5000, cache: bool = True
) -> dict[str, ArrayData]:
    """MNIST (LeCun et al. 1998): 28x28x1 digits; 55000 / 5000 / 10000. See `tfds_images`."""
    return tfds_images("mnist", data_dir=data_dir, flatten=flatten, num_val=num_val, cache=cache)


def fashion_mnist(
    *, data_dir: str | None = None, flatten: bool = True, num_val: int = 5000, cache: bool = True
) -> dict[str, ArrayData]:
    """Fashion-MNIST (Xiao et al. 2017): 28x28x1, 10 classes; 55000 / 5000 / 10000."""
    return tfds_images(
        "fashion_mnist", data_dir=data_dir, flatten=flatten, num_val=num_val, cache=cache
    )
