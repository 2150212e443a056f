"""Data directory lookup: data_dir, else $DL_DATA_DIR, else <repo>/data then <repo>/../shared/data;
and the one-line error that lists every place looked."""

import os

import numpy as np
import pytest

from dl.data import DataError, data_roots, idx, load, roots


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A fake checkout <tmp>/clone with shared/ beside it, and no $DL_DATA_DIR."""
    clone = tmp_path / "clone"
    clone.mkdir()
    monkeypatch.setattr(roots, "REPO_ROOT", str(clone))
    monkeypatch.delenv(roots.ENV_VAR, raising=False)
    return clone


def _mnist(root, seed):
    """Writes a tiny MNIST folder under ``root`` whose test labels identify it."""
    rng = np.random.default_rng(seed)
    splits = {
        split: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n))
        for split, n in (("train", 12), ("test", 5))
    }
    idx.write_folder(os.path.join(root, "mnist"), splits)
    return splits["test"][1]


def test_order_explicit_then_environment_then_repo_data_then_shared(repo, tmp_path, monkeypatch):
    data, shared = str(repo / "data"), str(tmp_path / "shared" / "data")
    assert [p for p, _ in data_roots()] == [data, shared]
    monkeypatch.setenv(roots.ENV_VAR, "/from/env")
    assert data_roots() == [("/from/env", "$DL_DATA_DIR")]
    assert data_roots("/explicit") == [("/explicit", "--data-dir")]
    assert data_roots(tmp_path) == [(str(tmp_path), "--data-dir")]  # PathLike is fine
    monkeypatch.setenv(roots.ENV_VAR, "")  # set but empty counts as unset
    assert [p for p, _ in data_roots("")] == [data, shared]


def test_repo_data_wins_over_shared_and_shared_is_the_fallback(repo, tmp_path):
    shared_labels = _mnist(tmp_path / "shared" / "data", seed=1)
    np.testing.assert_array_equal(load("mnist", num_val=2)["test"].y, shared_labels)
    repo_labels = _mnist(repo / "data", seed=2)
    np.testing.assert_array_equal(load("mnist", num_val=2)["test"].y, repo_labels)


def test_explicit_and_environment_dirs_are_the_only_place_looked(repo, tmp_path, monkeypatch):
    _mnist(repo / "data", seed=1)
    env_labels = _mnist(tmp_path / "env", seed=3)
    monkeypatch.setenv(roots.ENV_VAR, str(tmp_path / "env"))
    np.testing.assert_array_equal(load("mnist", num_val=2)["test"].y, env_labels)
    empty = tmp_path / "empty"
    empty.mkdir()
    # A named directory without the data is reported, not silently replaced by another copy.
    with pytest.raises(DataError) as info:
        load("mnist", data_dir=str(empty), num_val=2)
    message = str(info.value)
    assert f"{empty} (--data-dir)" in message
    assert str(repo / "data") not in message and str(tmp_path / "env") not in message


def test_not_found_is_one_line_listing_every_place_and_the_fix(repo, tmp_path):
    with pytest.raises(DataError) as info:
        load("mnist")
    message = str(info.value)
    assert "\n" not in message
    assert f"{repo / 'data'} (the repository's data/)" in message
    assert f"{tmp_path / 'shared' / 'data'} (the repository's sibling ../shared/data)" in message
    for pair in idx.FILES.values():
        for name in pair:
            assert name in message
    assert "yann.lecun.com/exdb/mnist" in message and f"{repo / 'data' / 'mnist'}/" in message
    assert "download_and_prepare" in message and "array_record" in message


def test_fashion_mnist_uses_its_own_folder_and_says_where_to_get_it(repo, tmp_path):
    _mnist(tmp_path / "shared" / "data", seed=1)  # mnist only
    with pytest.raises(DataError, match="fashion_mnist not found.*zalandoresearch/fashion-mnist"):
        load("fashion_mnist")


def test_forced_idx_does_not_fall_back_to_tfds(repo, tmp_path):
    with pytest.raises(DataError, match="looked for IDX files under") as info:
        load("mnist", source="idx")
    assert "download_and_prepare" not in str(info.value)


def test_unknown_source_is_rejected():
    with pytest.raises(ValueError, match="source must be one of auto, idx, tfds"):
        load("mnist", source="png")
