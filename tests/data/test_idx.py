"""The IDX reader: against headers packed by hand (struct), round trips, every kind of corrupt
file, the fixed split, and the real MNIST files in ../shared/data when they are there."""

import gzip
import hashlib
import os
import struct

import numpy as np
import pytest

from dl.data import DataError, idx, load, roots

SHARED_MNIST = os.path.normpath(os.path.join(roots.REPO_ROOT, "..", "shared", "data", "mnist"))
needs_real_mnist = pytest.mark.skipif(
    not os.path.isdir(SHARED_MNIST), reason=f"real MNIST IDX files not found at {SHARED_MNIST}"
)


def _images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


@pytest.fixture
def folder(tmp_path):
    """A small valid MNIST-format folder: 30 train, 7 test."""
    path = tmp_path / "mnist"
    idx.write_folder(path, {"train": _images(30, 0), "test": _images(7, 1)})
    return path


# ----------------------------------------------------------------------------------------------
# The format


def test_parse_matches_a_header_packed_by_hand():
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = struct.pack(">HBB3i", 0, 0x08, 3, 2, 3, 4) + pixels.tobytes()
    assert raw[:4] == b"\x00\x00\x08\x03"  # MNIST's image magic number 2051
    got = idx.parse_idx(raw)
    assert got.dtype == np.uint8 and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, pixels)
    # A multi-byte type is big-endian on disk and native in memory.
    values = np.array([1, -2, 70000], np.int32)
    raw = struct.pack(">HBBi", 0, 0x0C, 1, 3) + struct.pack(">3i", *values)
    got = idx.parse_idx(raw)
    assert got.dtype == np.int32 and got.dtype.isnative
    np.testing.assert_array_equal(got, values)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.gz", "a"])
def test_write_then_read_round_trips(tmp_path, dtype, name):
    array = (np.arange(60).reshape(3, 4, 5) - 7).astype(dtype)
    idx.write_idx(tmp_path / name, array)
    got = idx.read_idx(tmp_path / name)
    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, array)


def test_folder_round_trips_and_splits_train_at_the_end(folder):
    (train_images, train_labels), (test_images, test_labels) = _images(30, 0), _images(7, 1)
    splits = idx.load_idx(folder, num_val=4)
    expected = {
        "train": (train_images[:26], train_labels[:26]),
        "val": (train_images[26:], train_labels[26:]),
        "test": (test_images, test_labels),
    }
    assert list(splits) == ["train", "val", "test"]
    for key, (images, labels) in expected.items():
        got = splits[key]
        assert got.x.dtype == np.float32 and got.y.dtype == np.int32
        np.testing.assert_array_equal(got.x, images.reshape(len(labels), -1) / np.float32(255))
        np.testing.assert_array_equal(got.y, labels)
    unflat = idx.load_idx(folder, num_val=4, flatten=False)
    assert unflat["val"].x.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(unflat["train"].x.reshape(26, -1), splits["train"].x)


@pytest.mark.parametrize("num_val", [0, -1, 30, 31])
def test_num_val_must_leave_train_and_val_nonempty(folder, num_val):
    with pytest.raises(ValueError, match=r"num_val must be in \[1, 30\)"):
        idx.load_idx(folder, num_val=num_val)


# ----------------------------------------------------------------------------------------------
# Corrupt files: a one-line DataError that names the file.

TRAIN_IMAGES, TRAIN_LABELS = idx.FILES["train"]


def _gz(path, raw):
    with gzip.open(path, "wb") as f:
        f.write(raw)


def _header(code, *dims):
    return struct.pack(f">HBB{len(dims)}i", 0, code, len(dims), *dims)


def _truncate_gzip(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncate_body(path):
    raw = gzip.decompress(path.read_bytes())
    _gz(path, raw[:-100])


def _trailing_bytes(path):
    _gz(path, gzip.decompress(path.read_bytes()) + b"\x00")


def _not_gzip(path):
    path.write_bytes(b"this is not a gzip file at all")


def _bad_magic(path):
    raw = gzip.decompress(path.read_bytes())
    _gz(path, b"\x08\x03\x00\x00" + raw[4:])


def _labels_as_images(path):  # the image file replaced by a valid 1-dim IDX file
    _gz(path, _header(0x08, 30) + bytes(30))


def _wrong_image_size(path):
    _gz(path, _header(0x08, 30, 27, 28) + bytes(30 * 27 * 28))


def _empty(path):
    _gz(path, b"")


CORRUPTIONS = {
    "truncated gzip": (TRAIN_IMAGES, _truncate_gzip, "unreadable gzip"),
    "truncated body": (TRAIN_IMAGES, _truncate_body, "truncated"),
    "trailing bytes": (TRAIN_LABELS, _trailing_bytes, "trailing bytes"),
    "not gzip": (TRAIN_IMAGES, _not_gzip, "unreadable gzip"),
    "bad magic": (TRAIN_IMAGES, _bad_magic, "bad magic number 0x08030000"),
    "wrong dims": (TRAIN_IMAGES, _labels_as_images, "expected 3-dim uint8"),
    "wrong image size": (TRAIN_IMAGES, _wrong_image_size, r"\(27, 28\), expected \(28, 28\)"),
    "empty": (TRAIN_LABELS, _empty, "shorter than the 4-byte magic number"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_file_is_one_line_naming_it(folder, case):
    name, corrupt, problem = CORRUPTIONS[case]
    corrupt(folder / name)
    with pytest.raises(DataError, match=problem) as info:
        idx.load_idx(folder, num_val=4)
    message = str(info.value)
    assert "\n" not in message and str(folder / name) in message


def test_count_mismatch_names_both_files(folder):
    idx.write_idx(folder / TRAIN_LABELS, np.zeros(29, np.uint8))
    with pytest.raises(DataError, match="29 labels for the 30 images") as info:
        idx.load_idx(folder, num_val=4)
    message = str(info.value)
    assert "\n" not in message
    assert str(folder / TRAIN_LABELS) in message and str(folder / TRAIN_IMAGES) in message


def test_label_out_of_range_is_corrupt(folder):
    idx.write_idx(folder / TRAIN_LABELS, np.full(30, 10, np.uint8))
    with pytest.raises(DataError, match="label 10 outside 0..9"):
        idx.load_idx(folder, num_val=4)


def test_missing_one_of_the_four_files_names_it(folder):
    os.remove(folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="missing IDX file .*t10k-labels-idx1-ubyte.gz"):
        load("mnist", data_dir=str(folder.parent), num_val=4)


# ----------------------------------------------------------------------------------------------
# The real files (../shared/data/mnist beside the repository).


@pytest.fixture(scope="module")
def real():
    return load("mnist", data_dir=os.path.dirname(SHARED_MNIST))


@needs_real_mnist
def test_real_mnist_counts_dtypes_and_range(real):
    assert {k: v.x.shape for k, v in real.items()} == {
        "train": (50000, 784),
        "val": (10000, 784),
        "test": (10000, 784),
    }
    for split in real.values():
        assert split.x.dtype == np.float32 and split.y.dtype == np.int32
        assert split.x.min() == 0.0 and split.x.max() == 1.0
        assert set(np.unique(split.y)) == set(range(10))


@needs_real_mnist
def test_real_mnist_labels_and_pixels_are_the_known_ones(real):
    # The official t10k label file (README: MD5 ec29112d...), and its published class counts.
    with open(os.path.join(SHARED_MNIST, "t10k-labels-idx1-ubyte.gz"), "rb") as f:
        assert hashlib.md5(f.read()).hexdigest() == "ec29112dd5afa0611ce80d1b7f02629c"
    np.testing.assert_array_equal(
        np.bincount(real["test"].y), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )
    # The official train label histogram (all 60000: train then val, in file order).
    train_labels = np.concatenate([real["train"].y, real["val"].y])
    np.testing.assert_array_equal(
        np.bincount(train_labels), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    )
    assert real["train"].y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the famous first row
    # The widely quoted MNIST train pixel mean, over all 60000 train images.
    train_pixels = np.concatenate([real["train"].x, real["val"].x])
    assert abs(float(train_pixels.mean(dtype=np.float64)) - 0.1307) < 5e-4


@needs_real_mnist
def test_real_mnist_unflattened_and_found_without_data_dir(real, monkeypatch):
    monkeypatch.delenv(roots.ENV_VAR, raising=False)
    found = load("mnist", flatten=False)  # <repo>/data, else the shared copy
    assert found["train"].x.shape == (50000, 28, 28, 1)
    np.testing.assert_array_equal(found["test"].x.reshape(10000, -1), real["test"].x)
    np.testing.assert_array_equal(found["test"].y, real["test"].y)
