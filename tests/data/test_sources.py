"""Real sources: the digits split against scikit-learn's raw data; tfds reading against files we
write ourselves (ArrayRecord + PNG, no TensorFlow) and against tfds.testing.mock_data; the IDX
and tfds paths against each other on the same images."""

import inspect
import io
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from sklearn.datasets import load_digits
from tensorflow_datasets.proto import tf_example_pb2

from dl.data import DataError, idx, load, sources

TRAIN, VAL, TEST = 1077, 360, 360  # 1797 = 60 / 20 / 20 with sklearn's rounding (test ceil)


def _rows(data):
    """Sorted (x, y) rows: equal multisets <=> equal up to order, duplicates included."""
    table = np.concatenate([data.x.reshape(len(data.x), -1), data.y[:, None]], axis=1)
    return table[np.lexsort(table.T[::-1])]


def _class_counts(y):
    return np.bincount(y, minlength=10)


# ----------------------------------------------------------------------------------------------
# digits


@pytest.fixture(scope="module")
def digits_splits():
    return load("digits")


def test_digits_is_a_stratified_partition_of_sklearn_digits(digits_splits):
    raw = load_digits()
    assert {k: len(v.y) for k, v in digits_splits.items()} == {
        "train": TRAIN,
        "val": VAL,
        "test": TEST,
    }
    for split in digits_splits.values():
        assert split.x.shape[1:] == (64,) and split.x.dtype == np.float32
        assert split.y.dtype == np.int32
    # Every raw example lands in exactly one split, with x = pixels / 16 exactly.
    union = sources.ArrayData(
        np.concatenate([s.x for s in digits_splits.values()]),
        np.concatenate([s.y for s in digits_splits.values()]),
    )
    raw_data = sources.ArrayData((raw.data / 16.0).astype(np.float32), raw.target.astype(np.int32))
    np.testing.assert_array_equal(_rows(union), _rows(raw_data))
    # Stratified: each split's class counts are its share of each class, to within rounding.
    fractions = _class_counts(raw.target) / len(raw.target)
    for split in digits_splits.values():
        assert np.all(np.abs(_class_counts(split.y) - fractions * len(split.y)) <= 1.0)


def test_digits_split_is_fixed_and_unflatten_is_a_reshape(digits_splits):
    again = load("digits")
    images = load("digits", flatten=False)
    for key, split in digits_splits.items():
        np.testing.assert_array_equal(again[key].x, split.x)
        assert images[key].x.shape == (len(split.y), 8, 8, 1)
        np.testing.assert_array_equal(images[key].x.reshape(-1, 64), split.x)
        np.testing.assert_array_equal(images[key].y, split.y)


def test_digits_train_fraction_is_a_stratified_subset(digits_splits):
    small = load("digits", train_fraction=0.1)
    assert len(small["train"].y) == int(0.1 * TRAIN)
    for key in ("val", "test"):
        np.testing.assert_array_equal(small[key].x, digits_splits[key].x)
    # A subset of train: every row of the subset is found among train's rows.
    train_rows = {r.tobytes() for r in _rows(digits_splits["train"])}
    assert all(r.tobytes() in train_rows for r in _rows(small["train"]))
    fractions = _class_counts(digits_splits["train"].y) / TRAIN
    assert np.all(
        np.abs(_class_counts(small["train"].y) - fractions * len(small["train"].y)) <= 1.0
    )
    np.testing.assert_array_equal(load("digits", train_fraction=0.1)["train"].x, small["train"].x)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_digits_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match="train_fraction"):
        load("digits", train_fraction=fraction)


# ----------------------------------------------------------------------------------------------
# tfds on files we prepare ourselves: the real read path (ArrayRecord, proto parsing, PNG
# decoding with PIL), without TensorFlow.


def _write_prepared(root, name, splits, file_format="array_record"):
    """Writes {split: (images [n, 28, 28, 1] uint8, labels [n])} the way tfds prepares them."""
    builder = tfds.builder(name, data_dir=os.fspath(root), file_format=file_format)
    os.makedirs(builder.data_dir, exist_ok=True)
    infos = []
    for split, (images, labels) in splits.items():
        template = tfds.core.ShardedFileTemplate(
            data_dir=builder.data_dir,
            template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
            dataset_name=name,
            split=split,
            filetype_suffix=file_format,
        )
        if file_format == "array_record":
            from array_record.python.array_record_module import ArrayRecordWriter

            writer = ArrayRecordWriter(
                os.fspath(template.sharded_filepath(shard_index=0, num_shards=1)), "group_size:1"
            )
            for image, label in zip(images, labels):
                png = io.BytesIO()
                Image.fromarray(image[:, :, 0]).save(png, format="PNG")
                example = tf_example_pb2.Example()
                example.features.feature["image"].bytes_list.value.append(png.getvalue())
                example.features.feature["label"].int64_list.value.append(int(label))
                writer.write(example.SerializeToString())
            writer.close()
        infos.append(
            tfds.core.SplitInfo(
                name=split, shard_lengths=[len(labels)], num_bytes=0, filename_template=template
            )
        )
    builder.info.set_splits(tfds.core.SplitDict(infos))
    builder.info.write_to_directory(builder.data_dir)


def _fake_images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, n)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A data dir with fake 'mnist' and 'fashion_mnist' (30 train, 7 test examples each)."""
    root = tmp_path_factory.mktemp("tfds")
    raw = {}
    for k, name in enumerate(["mnist", "fashion_mnist"]):
        raw[name] = {"train": _fake_images(30, 2 * k), "test": _fake_images(7, 2 * k + 1)}
        _write_prepared(root, name, raw[name])
    return root, raw


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_tfds_split_pixels_and_labels_match_what_was_written(prepared, name):
    root, raw = prepared
    splits = load(name, data_dir=str(root), num_val=4, cache=False)
    (train_images, train_labels), (test_images, test_labels) = raw[name]["train"], raw[name]["test"]
    expected = {
        "train": (train_images[:26], train_labels[:26]),
        "val": (train_images[26:], train_labels[26:]),
        "test": (test_images, test_labels),
    }
    for key, (images, labels) in expected.items():
        got = splits[key]
        assert got.x.dtype == np.float32 and got.y.dtype == np.int32
        assert got.x.shape == (len(labels), 784)
        np.testing.assert_array_equal(got.x, images.reshape(len(labels), -1) / np.float32(255))
        np.testing.assert_array_equal(got.y, labels)
    images = load(name, data_dir=str(root), num_val=4, flatten=False, cache=False)
    assert images["train"].x.shape == (26, 28, 28, 1)
    np.testing.assert_array_equal(images["train"].x.reshape(26, -1), splits["train"].x)


def test_tfds_cache_round_trips_and_is_used(prepared, tmp_path, monkeypatch):
    _root, raw = prepared
    # The cache is written under the root it reads from, so use a root of its own.
    private = tmp_path / "root"
    _write_prepared(private, "mnist", raw["mnist"])
    first = load("mnist", data_dir=str(private), num_val=4)
    assert os.path.exists(sources.cache_path(str(private), "mnist/3.0.1", "test"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although a valid cache exists")

    monkeypatch.setattr(sources, "_decode", no_decoding)
    second = load("mnist", data_dir=str(private), num_val=4)
    for key in first:
        np.testing.assert_array_equal(second[key].x, first[key].x)
        np.testing.assert_array_equal(second[key].y, first[key].y)
    # A different split string is a different cache entry, so it must decode.
    with pytest.raises(AssertionError, match="decoded"):
        load("mnist", data_dir=str(private), num_val=5)


def test_tfds_stale_cache_is_ignored(prepared, tmp_path):
    _, raw = prepared
    _write_prepared(tmp_path, "mnist", raw["mnist"])
    path = sources.cache_path(str(tmp_path), "mnist/3.0.1", "test")
    os.makedirs(os.path.dirname(path))
    np.savez(path, images=np.zeros((3, 28, 28, 1), np.uint8), labels=np.zeros(3, np.int32))
    got = load("mnist", data_dir=str(tmp_path), num_val=4)["test"]
    np.testing.assert_array_equal(got.y, raw["mnist"]["test"][1])


def test_tfds_cache_off_writes_nothing(prepared, tmp_path):
    _, raw = prepared
    _write_prepared(tmp_path, "mnist", raw["mnist"])
    load("mnist", data_dir=str(tmp_path), num_val=4, cache=False)
    assert not os.path.exists(tmp_path / "dl_cache")


def test_missing_dataset_is_one_line_naming_the_path(tmp_path):
    with pytest.raises(DataError) as info:
        load("mnist", data_dir=str(tmp_path))
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path) in message and "mnist" in message
    assert "download_and_prepare" in message and "array_record" in message


def test_tfrecord_prepared_dataset_is_a_data_error(tmp_path):
    _write_prepared(
        tmp_path, "fashion_mnist", {"train": _fake_images(3, 0)}, file_format="tfrecord"
    )
    with pytest.raises(DataError, match="fashion_mnist not found: looked for"):
        load("fashion_mnist", data_dir=str(tmp_path))


def test_data_dir_defaults_to_the_environment(prepared, tmp_path, monkeypatch):
    root, raw = prepared
    monkeypatch.setenv("DL_DATA_DIR", str(root))
    got = load("mnist", num_val=4, cache=False)
    np.testing.assert_array_equal(got["test"].y, raw["mnist"]["test"][1])
    # An explicit data_dir wins over the environment.
    with pytest.raises(DataError, match=str(tmp_path)):
        load("mnist", data_dir=str(tmp_path))
    monkeypatch.setenv("DL_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=str(tmp_path)):
        load("mnist")


def test_num_val_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="num_val"):
        load("mnist", data_dir=str(tmp_path), num_val=0)


def test_num_val_must_leave_train_nonempty(prepared):
    root, _ = prepared
    with pytest.raises(ValueError, match="num_val must be < the 30 train examples"):
        load("mnist", data_dir=str(root), num_val=30, cache=False)


@pytest.mark.parametrize("builder", [sources.tfds_images, sources.mnist, sources.fashion_mnist])
def test_default_split_holds_out_the_last_10000(builder):
    assert inspect.signature(builder).parameters["num_val"].default == 10000


# ----------------------------------------------------------------------------------------------
# The IDX files and the tfds copy of the same images give the same arrays.


@pytest.mark.parametrize("flatten", [True, False])
def test_idx_and_tfds_paths_give_identical_arrays(prepared, tmp_path, flatten):
    root, raw = prepared
    idx.write_folder(tmp_path / "mnist", raw["mnist"])
    kwargs = {"num_val": 4, "flatten": flatten}
    from_idx = load("mnist", data_dir=str(tmp_path), source="idx", **kwargs)
    from_tfds = load("mnist", data_dir=str(root), source="tfds", cache=False, **kwargs)
    assert list(from_idx) == list(from_tfds) == ["train", "val", "test"]
    for key in from_idx:
        for a, b in zip(from_idx[key], from_tfds[key]):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_auto_prefers_the_idx_files_within_a_root(prepared, tmp_path, monkeypatch):
    _, raw = prepared
    _write_prepared(tmp_path, "mnist", raw["mnist"])
    assert load("mnist", data_dir=str(tmp_path), num_val=4, cache=False)["test"].y.size == 7
    # <root>/mnist/ now holds tfds' version folder and the IDX files side by side.
    idx.write_folder(tmp_path / "mnist", raw["mnist"])

    def no_tfds(*args, **kwargs):
        raise AssertionError("read tfds although the IDX files are there")

    monkeypatch.setattr(sources, "tfds_images", no_tfds)
    got = load("mnist", data_dir=str(tmp_path), num_val=4)
    np.testing.assert_array_equal(got["test"].y, raw["mnist"]["test"][1])
    with pytest.raises(AssertionError, match="read tfds"):
        load("mnist", data_dir=str(tmp_path), num_val=4, source="tfds")


# ----------------------------------------------------------------------------------------------
# tfds.testing.mock_data: the documented way to test tfds code offline.


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_load_under_mock_data(mock_tfds, name, tmp_path):
    n = 12
    with mock_tfds(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE):
        # The mock serves n examples for every split string, slices included.
        splits = load(name, data_dir=str(tmp_path), source="tfds", num_val=4)
        reference = tfds.data_source(name, split="test", data_dir=str(tmp_path), download=False)
        expected = np.stack([reference[i]["image"] for i in range(n)])
        expected_labels = np.array([reference[i]["label"] for i in range(n)])
    for split in splits.values():
        assert split.x.shape == (n, 784) and split.x.dtype == np.float32
        assert split.y.shape == (n,) and split.y.dtype == np.int32
        assert split.x.min() >= 0.0 and split.x.max() <= 1.0
    np.testing.assert_array_equal(splits["test"].x, expected.reshape(n, -1) / np.float32(255))
    np.testing.assert_array_equal(splits["test"].y, expected_labels)
