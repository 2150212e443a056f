"""Loader: the documented order, one visit per example per epoch, fixed shapes, exact resume."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dl.data import ArrayData, Loader, eval_batches

PROPERTY = settings(max_examples=40, deadline=None)


def _ids(n, feature_shape=()):
    """x[i] is filled with i (so a batch names its examples); y[i] = 10 * i."""
    x = np.broadcast_to(
        np.arange(n, dtype=np.float32).reshape(n, *([1] * len(feature_shape))), (n, *feature_shape)
    ).copy()
    return ArrayData(x, (10 * np.arange(n)).astype(np.int32))


def _real_ids(batch):
    """The example ids of the unmasked rows of a batch built from `_ids` data."""
    keep = batch["mask"] == 1
    return batch["x"].reshape(len(keep), -1)[keep, 0].astype(np.int64)


@PROPERTY
@given(
    n=st.integers(1, 150),
    batch_size=st.integers(1, 40),
    seed=st.integers(0, 2**31),
    epoch=st.integers(0, 5),
    shuffle=st.booleans(),
)
def test_each_example_once_per_epoch_in_the_documented_order(n, batch_size, seed, epoch, shuffle):
    loader = Loader(_ids(n), batch_size, seed=seed, shuffle=shuffle)
    assert loader.steps_per_epoch == -(-n // batch_size)
    batches = list(loader.epoch(epoch))
    assert len(batches) == loader.steps_per_epoch
    seen = np.concatenate([_real_ids(b) for b in batches])
    # The scheme promised in the module docstring, rebuilt here from numpy directly.
    expected = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    np.testing.assert_array_equal(seen, expected)
    for b in batches:
        assert b["x"].shape == (batch_size,) and b["y"].shape == (batch_size,)
        assert b["mask"].shape == (batch_size,) and b["mask"].dtype == np.float32
        assert b["x"].dtype == np.float32 and b["y"].dtype == np.int32
        np.testing.assert_array_equal(b["y"], 10 * b["x"].astype(np.int32))  # rows stay paired


@PROPERTY
@given(n=st.integers(1, 100), batch_size=st.integers(1, 32), seed=st.integers(0, 1000))
def test_padding_masks_only_the_tail_of_the_last_batch(n, batch_size, seed):
    loader = Loader(_ids(n), batch_size, seed=seed)
    batches = list(loader.epoch(0))
    for b in batches[:-1]:
        np.testing.assert_array_equal(b["mask"], np.ones(batch_size, np.float32))
    last = batches[-1]
    num_real = n - (loader.steps_per_epoch - 1) * batch_size
    np.testing.assert_array_equal(last["mask"][:num_real], 1.0)
    np.testing.assert_array_equal(last["mask"][num_real:], 0.0)
    # Pads repeat the batch's first (real) example.
    np.testing.assert_array_equal(last["x"][num_real:], last["x"][0])
    np.testing.assert_array_equal(last["y"][num_real:], last["y"][0])
    assert last["mask"].sum() == num_real


@PROPERTY
@given(
    n=st.integers(1, 60),
    batch_size=st.integers(1, 16),
    seed=st.integers(0, 1000),
    resume_at=st.integers(0, 40),
)
def test_batch_at_step_equals_iterating_epochs_and_a_resumed_loader(n, batch_size, seed, resume_at):
    loader = Loader(_ids(n, (2, 3)), batch_size, seed=seed)
    iterated = list(itertools.chain.from_iterable(loader.epoch(e) for e in range(4)))
    # A fresh Loader stands in for a restarted process that only knows (seed, step).
    resumed = Loader(_ids(n, (2, 3)), batch_size, seed=seed)
    for step in range(resume_at, len(iterated)):
        for key in ("x", "y", "mask"):
            np.testing.assert_array_equal(resumed.batch(step)[key], iterated[step][key])


def test_random_access_out_of_order_matches_sequential():
    loader = Loader(_ids(23), 5, seed=3)
    sequential = [loader.batch(s) for s in range(20)]
    other = Loader(_ids(23), 5, seed=3)
    for step in [19, 0, 7, 7, 12, 3, 18]:  # jumps across epochs defeat the one-epoch cache
        np.testing.assert_array_equal(other.batch(step)["x"], sequential[step]["x"])


def test_epochs_and_seeds_change_the_order():
    n = 100
    orders = {
        (seed, epoch): np.concatenate(
            [_real_ids(b) for b in Loader(_ids(n), 16, seed=seed).epoch(epoch)]
        )
        for seed in (0, 1)
        for epoch in (0, 1, 2)
    }
    keys = list(orders)
    for a, b in itertools.combinations(keys, 2):
        assert not np.array_equal(orders[a], orders[b]), (a, b)
    for order in orders.values():
        np.testing.assert_array_equal(np.sort(order), np.arange(n))


def test_batches_are_copies():
    data = _ids(10)
    batch = Loader(data, 4, seed=0).batch(0)
    batch["x"][:] = -1.0
    np.testing.assert_array_equal(data.x, np.arange(10, dtype=np.float32))


def test_eval_batches_cover_the_split_in_storage_order():
    data = _ids(10, (3,))
    batches = list(eval_batches(data, 4))
    assert [b["x"].shape for b in batches] == [(4, 3)] * 3
    np.testing.assert_array_equal(np.concatenate([_real_ids(b) for b in batches]), np.arange(10))
    np.testing.assert_array_equal(batches[-1]["mask"], [1, 1, 0, 0])
    # Unshuffled means independent of any seed: a second pass is identical.
    again = list(eval_batches(data, 4))
    for a, b in zip(batches, again):
        np.testing.assert_array_equal(a["x"], b["x"])


def test_batch_larger_than_the_split_is_one_padded_batch():
    loader = Loader(_ids(3), 8, seed=0)
    assert loader.steps_per_epoch == 1
    batch = loader.batch(5)  # epoch 5
    assert batch["x"].shape == (8,)
    np.testing.assert_array_equal(np.sort(_real_ids(batch)), [0, 1, 2])
    assert batch["mask"].sum() == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {
                "data": ArrayData(np.zeros((0, 2), np.float32), np.zeros(0, np.int32)),
                "batch_size": 2,
            },
            "empty",
        ),
        (
            {
                "data": ArrayData(np.zeros((3, 2), np.float32), np.zeros(2, np.int32)),
                "batch_size": 2,
            },
            "y has 2",
        ),
        (
            {
                "data": ArrayData(np.zeros((3, 2), np.float32), np.zeros(3, np.int32)),
                "batch_size": 0,
            },
            "batch_size",
        ),
    ],
)
def test_invalid_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Loader(kwargs["data"], kwargs["batch_size"], seed=0)


def test_negative_step_and_seed_are_rejected():
    with pytest.raises(ValueError, match="step"):
        Loader(_ids(3), 2, seed=0).batch(-1)
    with pytest.raises(ValueError, match="seed"):
        Loader(_ids(3), 2, seed=-1)
