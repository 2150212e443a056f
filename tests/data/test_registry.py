"""The dataset registry: names, the error for unknown ones, and the shape of what load returns."""

import inspect

import numpy as np
import pytest

from dl.data import DATASETS, ArrayData, DataError, load


def test_registry_holds_the_documented_datasets():
    assert {"digits", "mnist", "fashion_mnist", "xor", "two_spirals"} <= set(DATASETS)


@pytest.mark.parametrize("name", ["mnits", "", "MNIST", "digits "])
def test_unknown_name_lists_every_valid_name(name):
    with pytest.raises(DataError) as info:
        load(name)
    message = str(info.value)
    assert repr(name) in message and "\n" not in message
    for valid in DATASETS:
        assert valid in message


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_builder_takes_data_dir_and_keyword_only_options(name):
    # load() passes data_dir to every builder; positional options would let a stray argument
    # silently land in the wrong parameter.
    params = inspect.signature(DATASETS[name]).parameters
    assert "data_dir" in params
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())


@pytest.mark.parametrize(
    "name, kwargs", [("digits", {}), ("xor", {"n_train": 10}), ("two_spirals", {})]
)
def test_offline_datasets_load_as_three_array_splits(name, kwargs, tmp_path):
    # data_dir is accepted and ignored by datasets that need no files.
    splits = load(name, data_dir=str(tmp_path), **kwargs)
    assert list(splits) == ["train", "val", "test"]
    for split in splits.values():
        assert isinstance(split, ArrayData)
        assert split.x.dtype == np.float32 and split.y.dtype == np.int32
        assert len(split.x) == len(split.y) > 0


def test_unknown_builder_option_is_a_type_error():
    with pytest.raises(TypeError):
        load("digits", flaten=False)
