"""dl.data.text: the vocabulary against counts done by hand, Moses tokens against token lists
written out by hand, padding fractions computed by hand and recounted from the emitted batches,
and the BPTT layout against the contiguous rows it must reproduce."""

import json

import numpy as np
import pytest

from dl.data import DataError, text

# 'the' x4, 'cat' x2, 'sat' x2, 'a' x1, 'mat' x1, 'on' x1.
TRAIN = [["the", "cat", "sat"], ["the", "cat", "sat", "on", "the", "mat"], ["the", "a"]]


# ----------------------------------------------------------------------------------------------
# Vocab


def test_vocab_orders_by_count_then_token_after_the_specials():
    vocab = text.Vocab.build(TRAIN)
    assert vocab.itos == ["<pad>", "<unk>", "<bos>", "<eos>", "the", "cat", "sat", "a", "mat", "on"]
    assert (vocab.pad_id, vocab.unk_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2, 3)
    # The order does not depend on the order the corpus is read in.
    assert text.Vocab.build(TRAIN[::-1]).itos == vocab.itos


def test_min_freq_and_max_size_cut_the_rare_tokens():
    assert text.Vocab.build(TRAIN, min_freq=2).itos[4:] == ["the", "cat", "sat"]
    assert text.Vocab.build(TRAIN, min_freq=5).itos == list(text.SPECIALS)
    # max_size counts the specials: 6 ids = 4 specials + the 2 most frequent tokens.
    assert text.Vocab.build(TRAIN, max_size=6).itos[4:] == ["the", "cat"]
    with pytest.raises(ValueError, match="max_size"):
        text.Vocab.build(TRAIN, max_size=3)


def test_encode_maps_unknown_to_unk_and_decode_inverts_it():
    vocab = text.Vocab.build(TRAIN, min_freq=2)
    ids = vocab.encode(["the", "dog", "sat"], bos=True, eos=True)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, [2, 4, 1, 6, 3])
    assert vocab.decode(ids) == ["the", "<unk>", "sat"]
    assert vocab.decode(ids, raw=True) == ["<bos>", "the", "<unk>", "sat", "<eos>"]
    # decode stops at <eos> and drops padding, as after a decoder's padded output.
    assert vocab.decode([4, 5, 3, 6, 0, 0]) == ["the", "cat"]
    full = text.Vocab.build(TRAIN)
    for sentence in TRAIN:
        assert full.decode(full.encode(sentence, bos=True, eos=True)) == sentence


def test_a_word_seen_only_in_val_is_unknown_and_counts_as_oov():
    train = [["a", "dog", "runs"], ["a", "dog", "sits"]]
    val = [["a", "zebra", "runs"], ["zebra"]]
    vocab = text.Vocab.build(train)
    assert "zebra" not in vocab.stoi
    np.testing.assert_array_equal(vocab.encode(val[0]), [vocab.stoi["a"], 1, vocab.stoi["runs"]])
    assert vocab.oov_rate(val) == pytest.approx(2 / 4)
    assert vocab.oov_rate(train) == 0.0


def test_save_and_load_round_trip_through_json(tmp_path):
    vocab = text.Vocab.build(
        [["über", "straße", "über"], ["<", "&"]], meta={"level": "word", "lang": "de"}
    )
    path = tmp_path / "vocab.json"
    vocab.save(path)
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert on_disk["tokens"] == ["über", "&", "<", "straße"]
    assert on_disk["meta"] == {"min_freq": 1, "max_size": None, "level": "word", "lang": "de"}
    loaded = text.Vocab.load(path)
    assert loaded == vocab and loaded.stoi == vocab.stoi


def test_load_of_a_missing_or_malformed_file_is_a_one_line_data_error(tmp_path):
    with pytest.raises(DataError, match="not found") as missing:
        text.Vocab.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"tokens": ["a"]}')
    with pytest.raises(DataError, match="malformed") as malformed:
        text.Vocab.load(tmp_path / "bad.json")
    for err in (missing, malformed):
        assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------------------------
# Tokenization

SENTENCES = {
    "en": [
        (
            "A man in an orange hat starring at something.",
            ["A", "man", "in", "an", "orange", "hat", "starring", "at", "something", "."],
        ),
        ("Two dogs don't play, they're asleep.", None),
        ('A boy says "hello" to a 3.5-year-old girl.', None),
    ],
    "de": [
        (
            "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt.",
            ["Ein", "Mann", "mit", "einem", "orangefarbenen", "Hut", ",", "der", "etwas"]
            + ["anstarrt", "."],
        ),
        ("Zwei Hunde spielen z.B. im Schnee, über die Straße.", None),
    ],
}


@pytest.mark.parametrize("lang", ["en", "de"])
def test_word_tokens_detokenize_back_to_the_raw_sentence(lang):
    for sentence, expected in SENTENCES[lang]:
        tokens = text.tokenize(sentence, lang=lang)
        if expected is not None:
            assert tokens == expected
        assert text.detokenize(tokens, lang=lang) == sentence


def test_moses_splits_punctuation_but_keeps_abbreviations():
    assert text.tokenize("Two dogs don't play.", lang="en") == [
        "Two",
        "dogs",
        "don",
        "'t",
        "play",
        ".",
    ]
    # 'z.B.' is a German nonbreaking prefix; escape=False leaves '&' and quotes unescaped.
    assert "z.B." in text.tokenize("Hunde spielen z.B. im Schnee.", lang="de")
    assert text.tokenize('Tom & "Jerry"', lang="en") == ["Tom", "&", '"', "Jerry", '"']
    assert text.tokenize("A Big DOG.", lower=True) == ["a", "big", "dog", "."]


def test_char_level_is_the_characters_spaces_included():
    assert text.tokenize("Ein Hund.", level="char") == ["E", "i", "n", " ", "H", "u", "n", "d", "."]
    assert text.detokenize(text.tokenize("Ein Hund.", level="char"), level="char") == "Ein Hund."
    with pytest.raises(ValueError, match="level"):
        text.tokenize("x", level="byte")


# ----------------------------------------------------------------------------------------------
# Length buckets


def _sequences(lengths):
    # Distinct, non-pad ids so a row identifies its sequence.
    return [np.arange(1, n + 1, dtype=np.int32) + 100 * i for i, n in enumerate(lengths)]


def test_padding_fraction_matches_a_hand_count_and_the_emitted_batches():
    lengths = [1, 2, 3, 5, 8]
    # Buckets [3, 8]: padded lengths 3, 3, 3, 8, 8 -> (2 + 1 + 0 + 3 + 0) / 25.
    assert text.padding_fraction(lengths, [3, 8]) == pytest.approx(6 / 25)
    # No buckets: everything padded to 8 -> (40 - 19) / 40.
    assert text.padding_fraction(lengths) == pytest.approx(21 / 40)
    loader = text.BucketLoader(_sequences(lengths), 2, seed=0, boundaries=[3, 8])
    assert loader.padding_fraction() == pytest.approx({"bucketed": 6 / 25, "unbucketed": 21 / 40})
    pads = total = 0
    for batch in loader.epoch(0):
        real = batch["inputs"][batch["mask"] == 1]
        pads, total = pads + (real == 0).sum(), total + real.size
    assert pads / total == pytest.approx(6 / 25)


def test_every_sequence_is_in_exactly_one_batch_per_epoch_padded_to_its_bucket():
    rng = np.random.default_rng(0)
    seqs = _sequences(rng.integers(1, 30, 103))
    loader = text.BucketLoader(seqs, 8, seed=3, boundaries=[5, 10, 20, 29])
    for epoch in range(2):
        seen = []
        for batch in loader.epoch(epoch):
            time = batch["inputs"].shape[1]
            assert batch["inputs"].shape == (8, time) and time in loader.boundaries
            assert batch["inputs"].dtype == batch["lengths"].dtype == np.int32
            for row, i, length, m in zip(
                batch["inputs"], batch["index"], batch["lengths"], batch["mask"]
            ):
                assert length == len(seqs[i]) <= time
                np.testing.assert_array_equal(row[:length], seqs[i])
                assert (row[length:] == 0).all()
                if m:
                    seen.append(int(i))
            # The bucket is the smallest boundary that fits the longest row.
            assert loader.boundaries.index(time) == np.searchsorted(
                loader.boundaries, batch["lengths"].max()
            )
        assert sorted(seen) == list(range(len(seqs)))


def test_batches_are_a_function_of_seed_and_step():
    seqs = _sequences(np.random.default_rng(1).integers(1, 20, 50))
    a, b = (text.BucketLoader(seqs, 4, seed=7, num_buckets=3) for _ in range(2))
    orders = [[tuple(x["index"]) for x in a.epoch(e)] for e in range(2)]
    assert orders[0] != orders[1]  # reshuffled each epoch
    # Resuming at any step (a fresh loader, random access) gives the same batch.
    for step in [a.steps_per_epoch + 3, 5, 0]:
        np.testing.assert_array_equal(b.batch(step)["inputs"], a.batch(step)["inputs"])
    other = text.BucketLoader(seqs, 4, seed=8, num_buckets=3)
    assert [tuple(x["index"]) for x in other.epoch(0)] != orders[0]


def test_auto_boundaries_are_quantiles_ending_at_the_longest():
    lengths = np.arange(1, 101)
    assert text.bucket_boundaries(lengths, 4) == [25, 50, 75, 100]
    assert text.bucket_boundaries([3, 3, 3, 9], 3) == [3, 9]  # tied quantiles merge
    with pytest.raises(ValueError, match="exceeds"):
        text.BucketLoader(_sequences([3, 12]), 2, seed=0, boundaries=[5, 10])


def test_bucketing_pads_less_than_padding_to_the_longest_on_caption_like_lengths():
    # Caption-like lengths: most near 13 tokens, a long tail (Multi30K's max is about 40).
    rng = np.random.default_rng(0)
    lengths = np.clip(np.round(rng.lognormal(np.log(13), 0.35, 2000)), 3, None).astype(int)
    loader = text.BucketLoader(_sequences(lengths), 32, seed=0, num_buckets=8)
    fractions = loader.padding_fraction()
    assert fractions["bucketed"] < 0.2 and fractions["unbucketed"] > 0.5


def test_pairs_share_a_bucket_and_stay_aligned():
    rng = np.random.default_rng(2)
    src = _sequences(rng.integers(1, 15, 40))
    tgt = [np.concatenate([s, s[:3]]) * -1 for s in src]  # target i is a function of source i
    loader = text.BucketLoader(src, 6, seed=0, targets=tgt, boundaries=[6, 12, 18])
    seen = []
    for batch in loader.epoch(0):
        assert batch["targets"].shape == batch["inputs"].shape
        for i, length, row, m in zip(
            batch["index"], batch["target_lengths"], batch["targets"], batch["mask"]
        ):
            np.testing.assert_array_equal(row[:length], tgt[i])
            seen += [int(i)] * int(m)
    assert sorted(seen) == list(range(40))
    assert set(loader.padding_fraction()) == {
        "bucketed",
        "unbucketed",
        "targets_bucketed",
        "targets_unbucketed",
    }


# ----------------------------------------------------------------------------------------------
# Contiguous streams


def test_stream_ends_every_sentence_with_eos():
    got = text.stream([[5, 6], [7], []], eos_id=3)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, [5, 6, 3, 7, 3, 3])


@pytest.mark.parametrize("batch_size,bptt", [(1, 1), (3, 4), (4, 7), (5, 35)])
def test_bptt_chunks_rebuild_each_row_and_targets_are_the_next_tokens(batch_size, bptt):
    tokens = np.arange(1000, dtype=np.int32) * 7 % 1009  # distinct, so any slip shows
    batches = text.StreamBatches(tokens, batch_size, bptt)
    n = len(tokens) // batch_size
    assert len(batches) == (n - 1) // bptt
    chunks = list(batches)
    inputs = np.concatenate([c["inputs"] for c in chunks], axis=1)
    targets = np.concatenate([c["targets"] for c in chunks], axis=1)
    width = len(chunks) * bptt
    for r in range(batch_size):
        row = tokens[r * n : (r + 1) * n]  # row r is one contiguous stretch of the stream
        np.testing.assert_array_equal(inputs[r], row[:width])
        np.testing.assert_array_equal(targets[r], row[1 : width + 1])
    assert all(c["inputs"].shape == c["targets"].shape == (batch_size, bptt) for c in chunks)


def test_bptt_rejects_a_stream_too_short_for_one_chunk():
    with pytest.raises(ValueError, match="too short"):
        text.StreamBatches(np.arange(10), 4, 3)
    with pytest.raises(IndexError):
        text.StreamBatches(np.arange(10), 2, 3).chunk(1)
