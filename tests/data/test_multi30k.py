"""dl.data.multi30k: the real files in ../shared/data when they are there (line counts, en/de
alignment, train-only vocabulary, bucketing), and one-line DataErrors on fake broken files."""

import gzip
import os

import numpy as np
import pytest

from dl.data import DataError, roots, text
from dl.data.multi30k import SPLITS, load_multi30k

SHARED = os.path.normpath(os.path.join(roots.REPO_ROOT, "..", "shared", "data"))
needs_real = pytest.mark.skipif(
    not os.path.isfile(os.path.join(SHARED, "multi30k", "train.en.gz")),
    reason=f"Multi30K task-1 raw files not found under {SHARED}/multi30k",
)


def _write(root, name, lines):
    os.makedirs(root / "multi30k", exist_ok=True)
    with gzip.open(root / "multi30k" / name, "wt", encoding="utf-8", newline="") as f:
        f.write("".join(line + "\n" for line in lines))


def _val(n):
    return [f"sentence {i}" for i in range(n)]


# ----------------------------------------------------------------------------------------------
# The real files


@needs_real
@pytest.mark.parametrize("split,expected", [("train", 29000), ("val", 1014), ("test", 1000)])
def test_real_splits_have_the_published_sizes_and_align(split, expected):
    en, de = load_multi30k(("en", "de"), split, data_dir=SHARED)
    assert len(en) == len(de) == expected
    assert load_multi30k("de", split, data_dir=SHARED) == de
    assert all(s.strip() for s in en + de)  # no blank line that would shift the pairs


@needs_real
def test_real_train_starts_with_the_published_first_pair():
    en, de = load_multi30k(("en", "de"), "train", data_dir=SHARED)
    assert en[0] == "Two young, White males are outside near many bushes."
    assert de[0] == "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche."
    # The reversed pair is the same data with the sides swapped.
    assert load_multi30k(("de", "en"), "val", data_dir=SHARED) == tuple(
        reversed(load_multi30k(("en", "de"), "val", data_dir=SHARED))
    )


@pytest.fixture(scope="module")
def real_train_tokens():
    return text.tokenize_all(load_multi30k("en", "train", data_dir=SHARED), lang="en")


@needs_real
def test_real_train_vocab_makes_val_only_words_unknown(real_train_tokens):
    vocab = text.Vocab.build(real_train_tokens, min_freq=2)
    val = text.tokenize_all(load_multi30k("en", "val", data_dir=SHARED), lang="en")
    train_words = {t for s in real_train_tokens for t in s}
    unseen = sorted({t for s in val for t in s} - train_words)
    assert unseen and all(vocab.encode([w])[0] == vocab.unk_id for w in unseen)
    assert 0.0 < vocab.oov_rate(val) < 0.05
    assert vocab.oov_rate(real_train_tokens) < 0.05  # only the singletons cut by min_freq


@needs_real
def test_real_bucketing_pads_far_less_than_padding_to_the_longest(real_train_tokens):
    vocab = text.Vocab.build(real_train_tokens, min_freq=2)
    ids = [vocab.encode(s, bos=True, eos=True) for s in real_train_tokens]
    fractions = text.BucketLoader(ids, 64, seed=0, num_buckets=8).padding_fraction()
    assert fractions["bucketed"] < 0.2 and fractions["unbucketed"] > 0.5


# ----------------------------------------------------------------------------------------------
# Broken files


def test_a_missing_file_is_a_one_line_error_naming_it_and_the_fix(tmp_path):
    _write(tmp_path, "val.en.gz", _val(1014))
    with pytest.raises(DataError) as err:
        load_multi30k(("en", "de"), "val", data_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "val.de.gz" in message and str(tmp_path / "multi30k") in message
    assert "To fix" in message and "--data-dir" in message


def test_differing_line_counts_name_both_files(tmp_path):
    _write(tmp_path, "val.en.gz", _val(1014))
    _write(tmp_path, "val.de.gz", _val(1013))
    with pytest.raises(DataError, match="misaligned") as err:
        load_multi30k(("en", "de"), "val", data_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message and "val.en.gz" in message and "val.de.gz" in message
    assert "1014" in message and "1013" in message


def test_a_truncated_or_corrupt_file_is_a_one_line_error(tmp_path):
    _write(tmp_path, "test_2016_flickr.en.gz", _val(999))
    with pytest.raises(DataError, match="has 999 lines, expected 1000") as short:
        load_multi30k("en", "test", data_dir=tmp_path)
    path = tmp_path / "multi30k" / "val.en.gz"
    _write(tmp_path, "val.en.gz", _val(1014))
    path.write_bytes(path.read_bytes()[:-20])  # cut off the gzip trailer and some data
    with pytest.raises(DataError, match="not readable gzip") as corrupt:
        load_multi30k("en", "val", data_dir=tmp_path)
    for err in (short, corrupt):
        assert "\n" not in str(err.value) and "download it again" in str(err.value)


def test_lines_split_on_newline_only_so_unicode_separators_stay_inside(tmp_path):
    lines = _val(1014)
    lines[5] = "a line with a\u2028separator and a\x85next-line mark\r"
    _write(tmp_path, "val.en.gz", lines)
    got = load_multi30k("en", "val", data_dir=tmp_path)
    assert len(got) == 1014 and got[5] == lines[5][:-1] and got[6] == "sentence 6"


def test_explicit_data_dir_is_the_only_root_and_bad_arguments_are_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv(roots.ENV_VAR, SHARED)
    with pytest.raises(DataError, match="not found"):
        load_multi30k("en", "train", data_dir=tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_multi30k("en", "dev", data_dir=tmp_path)
    with pytest.raises(ValueError, match="lang"):
        load_multi30k(("en", "en"), "val", data_dir=tmp_path)
    assert set(SPLITS) == {"train", "val", "test"}
    assert np.sum([n for _, n in SPLITS.values()]) == 31014
