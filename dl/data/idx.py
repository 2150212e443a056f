"""MNIST and Fashion-MNIST from the original IDX files (LeCun, Bottou, Bengio & Haffner 1998).

An IDX file (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS") is a big-endian header, then
the array in C order:

    bytes 0-1: 0 0;  byte 2: dtype code (0x08 = uint8);  byte 3: number of dims d;
    d big-endian int32 sizes;  then prod(sizes) items of that dtype.

MNIST's magic numbers are therefore 2051 (0x00000803: uint8, 3 dims) for images [n, 28, 28] and
2049 (0x00000801: uint8, 1 dim) for labels [n]. Fashion-MNIST (Xiao et al. 2017) uses the same
format and file names. A folder holds the four gzip files `FILES`.

Split (fixed, the conventional protocol; the same as the tfds path in `dl.data.sources`): the
first 50,000 of the 60,000 train images are train, the last 10,000 are val, and the 10,000
t10k images are test. ``num_val`` moves the boundary: train = the first ``60000 - num_val``.

Every problem with a file (missing, not gzip, truncated, wrong magic number, wrong image size,
image and label counts that differ, labels outside 0..9) raises a one-line `DataError` naming
the file. Reading all of MNIST (47 MB of gzip) takes well under a second; nothing is cached.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from dl.data.pipeline import ArrayData
from dl.data.roots import DataError

# split -> (images file, labels file): the official names, also used by Fashion-MNIST.
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
DEFAULT_NUM_VAL = 10_000
# The IDX type codes (the format's third magic byte), all stored big-endian.
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}


def _error(path: str, problem: str) -> DataError:
    return DataError(
        f"corrupt IDX file {path}: {problem}; replace it with a fresh copy of the official file"
    )


def parse_idx(raw: bytes, path: str = "<bytes>") -> np.ndarray:
    """Decodes the (decompressed) bytes of an IDX file; ``path`` only names it in errors.

    Returns:
      the array, of the shape and dtype the header gives (native byte order, read-only when
      the dtype is one byte: a view of ``raw``).

    Raises:
      DataError: a bad magic number, a header or body shorter than the header says, or bytes
        left over after the body.
    """
    if len(raw) < 4:
        raise _error(path, f"{len(raw)} bytes, shorter than the 4-byte magic number")
    zero, code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or code not in _DTYPES or ndim == 0:
        raise _error(path, f"bad magic number 0x{int.from_bytes(raw[:4], 'big'):08x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _error(path, f"truncated header ({len(raw)} of {header} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "trailing bytes"
        raise _error(path, f"{what}: {len(raw)} bytes, the header {shape} implies {expected}")
    array = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file, gzip-compressed when its name ends in ``.gz``. See `parse_idx`.

    Raises:
      DataError: the file is missing, not valid gzip, truncated, or its header is wrong.
    """
    path = os.fspath(path)
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except FileNotFoundError:
        raise DataError(f"missing IDX file {path}") from None
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise _error(path, f"unreadable gzip ({e})".replace("\n", " ")) from None
    return parse_idx(raw, path)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``); the
    inverse of `read_idx`, for tests and for converting other copies of MNIST."""
    array = np.asarray(array)
    if array.dtype not in _CODES or array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX cannot hold a {array.ndim}-dim {array.dtype} array")
    header = bytes([0, 0, _CODES[array.dtype], array.ndim])
    body = header + np.asarray(array.shape, ">i4").tobytes()
    body += np.ascontiguousarray(array, array.dtype.newbyteorder(">")).tobytes()
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(body)


def write_folder(
    folder: str | os.PathLike, splits: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    """Writes {'train' and/or 'test': (images [n, 28, 28(, 1)] uint8, labels [n])} as the
    `FILES` of an MNIST-format folder (created if needed): what `load_idx` reads."""
    os.makedirs(folder, exist_ok=True)
    for split, (images, labels) in splits.items():
        image_file, label_file = FILES[split]
        images = np.asarray(images, np.uint8)
        write_idx(os.path.join(folder, image_file), images.reshape(images.shape[:3]))
        write_idx(os.path.join(folder, label_file), np.asarray(labels, np.uint8))


def has_idx_files(folder: str | os.PathLike) -> bool:
    """True iff ``folder`` holds any of the four `FILES` (the others are then required)."""
    return any(os.path.exists(os.path.join(folder, f)) for pair in FILES.values() for f in pair)


def read_split(folder: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``'train'`` or ``'test'`` files of an MNIST-format folder, checked.

    Returns:
      (images [n, 28, 28] uint8, labels [n] uint8 in 0..9).

    Raises:
      DataError: either file is missing or corrupt, has the wrong magic number or image size,
        or the two counts differ.
    """
    image_path, label_path = (os.path.join(folder, f) for f in FILES[split])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise _error(
            image_path,
            f"wrong magic number: {images.ndim}-dim {images.dtype}, expected 3-dim uint8 (2051)",
        )
    if images.shape[1:] != IMAGE_SHAPE:
        raise _error(image_path, f"images are {images.shape[1:]}, expected {IMAGE_SHAPE}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise _error(
            label_path,
            f"wrong magic number: {labels.ndim}-dim {labels.dtype}, expected 1-dim uint8 (2049)",
        )
    if len(labels) != len(images):
        raise _error(
            label_path, f"{len(labels)} labels for the {len(images)} images in {image_path}"
        )
    if len(labels) and labels.max() >= NUM_CLASSES:
        raise _error(label_path, f"label {int(labels.max())} outside 0..{NUM_CLASSES - 1}")
    return images, labels


def to_splits(
    images: dict[str, np.ndarray], labels: dict[str, np.ndarray], *, flatten: bool
) -> dict[str, ArrayData]:
    """uint8 images [n, H, W(, C)] and labels per split -> ArrayData(x = pixel / 255 float32,
    [n, H*W*C] when ``flatten`` else [n, H, W, C]; y int32). Shared with the tfds path, so that
    both give bit-identical arrays."""
    out = {}
    for key, image in images.items():
        # One pass, no uint8 -> float32 temporary; the same bits as astype(float32) / 255.
        x = np.divide(image.reshape(*image.shape[:3], -1), np.float32(255.0), dtype=np.float32)
        out[key] = ArrayData(x.reshape(len(x), -1) if flatten else x, labels[key].astype(np.int32))
    return out


def load_idx(
    folder: str | os.PathLike, *, num_val: int = DEFAULT_NUM_VAL, flatten: bool = True
) -> dict[str, ArrayData]:
    """An MNIST-format folder as {'train', 'val', 'test'}, split as in the module docstring.

    Args:
      folder: holds the four `FILES`.
      num_val: the last ``num_val`` train images become val; 1 <= num_val < 60000 (the train
        count of the files).
      flatten: True gives x [n, 784]; False gives x [n, 28, 28, 1] (NHWC, as tfds).

    Returns:
      {'train', 'val', 'test'}: ArrayData(x float32 in [0, 1] (pixel / 255), y [n] int32).
    """
    train_images, train_labels = read_split(folder, "train")
    if not 1 <= num_val < len(train_labels):
        raise ValueError(
            f"num_val must be in [1, {len(train_labels)}) (the train images in {folder}), "
            f"got {num_val}"
        )
    test_images, test_labels = read_split(folder, "test")
    cut = len(train_labels) - num_val
    return to_splits(
        {"train": train_images[:cut], "val": train_images[cut:], "test": test_images},
        {"train": train_labels[:cut], "val": train_labels[cut:], "test": test_labels},
        flatten=flatten,
    )
