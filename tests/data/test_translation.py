"""dl.data.translation: pairs, length filter, source reversal, shifted decoder batches."""

import os

import numpy as np
import pytest

from dl.data import roots
from dl.data.subword import Subword
from dl.data.translation import encode_pairs, load_translation, pair_loader, seq2seq_batch

SRC = ["a b c", "a b c a b c a b c", "c b", "b"]
TGT = ["x y", "x", "y y y y y y y y", "x y x"]


@pytest.fixture(scope="module")
def vocabs():
    # Whole-word pieces only: a tiny vocabulary over single letters.
    return Subword.train(SRC * 5, 8), Subword.train(TGT * 5, 8)


def test_encode_pairs_filters_reverses_and_marks(vocabs):
    sv, tv = vocabs
    full = encode_pairs(sv, tv, SRC, TGT)
    assert len(full) == 4 and full.index.tolist() == [0, 1, 2, 3]
    lens = [(len(sv.encode(s)), len(tv.encode(t))) for s, t in zip(SRC, TGT)]
    short = encode_pairs(sv, tv, SRC, TGT, max_len=4)
    assert short.index.tolist() == [i for i, (a, b) in enumerate(lens) if max(a, b) <= 4]
    assert short.ref_text == [TGT[i] for i in short.index]
    for i, (src, tgt) in enumerate(zip(full.src, full.tgt)):
        assert src[-1] == sv.eos_id and list(src[:-1]) == list(sv.encode(SRC[i]))
        assert tgt[0] == tv.bos_id and tgt[-1] == tv.eos_id and tv.decode(tgt) == TGT[i]
    rev = encode_pairs(sv, tv, SRC, TGT, reverse_source=True)
    for a, b in zip(full.src, rev.src):
        assert list(b) == list(a[:-1][::-1]) + [sv.eos_id]
    assert all(np.array_equal(a, b) for a, b in zip(full.tgt, rev.tgt))


def test_seq2seq_batch_shifts_and_masks(vocabs):
    split = encode_pairs(*vocabs, SRC, TGT)
    loader = pair_loader(split, 3, seed=0, boundaries=[20], shuffle=False)
    seen = 0
    for step in range(loader.steps_per_epoch):
        raw = loader.batch(step)
        b = seq2seq_batch(raw)
        assert np.array_equal(b["tgt_in"][:, 1:], b["tgt_out"][:, :-1])
        for row, i in enumerate(raw["index"]):
            n = len(split.tgt[i]) - 1  # predicted tokens: the pieces and <eos>
            want = np.arange(b["tgt_mask"].shape[1]) < n
            assert np.array_equal(b["tgt_mask"][row] > 0, want & (raw["mask"][row] > 0))
            if raw["mask"][row]:
                assert np.array_equal(b["tgt_out"][row, :n], split.tgt[i][1:])
                assert np.array_equal(b["src"][row, : b["src_lengths"][row]], split.src[i])
        seen += int(raw["mask"].sum())
    assert seen == len(split)


def test_load_translation_on_synthetic(tmp_path, synthetic_multi30k):
    data = load_translation(
        "en",
        "de",
        workdir=str(tmp_path),
        vocab_size=100,
        max_len=12,
        train_sentences=3000,
        eval_sentences=50,
        data_dir=synthetic_multi30k,
    )
    for lang in ("en", "de"):
        assert os.path.getsize(tmp_path / f"subword.{lang}.model") > 0
    assert Subword.load(tmp_path / "subword.de.model") == data.tgt_vocab
    assert 0 < len(data.splits["train"]) <= 3000 and len(data.splits["val"]) == 50
    assert all(len(s) <= 13 for s in data.splits["train"].src)
    val = data.splits["val"]
    assert [data.tgt_vocab.decode(t) for t in val.tgt] == val.ref_text


SHARED = os.path.normpath(os.path.join(roots.REPO_ROOT, "..", "shared", "data"))


@pytest.mark.skipif(
    not os.path.isfile(os.path.join(SHARED, "multi30k", "train.en.gz")),
    reason=f"Multi30K task-1 raw files not found under {SHARED}/multi30k",
)
def test_real_multi30k_pairs(tmp_path):
    data = load_translation(
        "en",
        "de",
        workdir=str(tmp_path),
        vocab_size=1000,
        max_len=15,
        eval_max_len=15,
        train_sentences=5000,
        data_dir=SHARED,
    )
    assert len(data.src_vocab) == len(data.tgt_vocab) == 1000
    n = {k: len(v) for k, v in data.splits.items()}
    assert 0.2 * 5000 < n["train"] < 0.6 * 5000 and 0.2 * 1014 < n["val"] < 0.6 * 1014, n
    val = data.splits["val"]
    ok = sum(data.tgt_vocab.decode(t) == " ".join(r.split()) for t, r in zip(val.tgt, val.ref_text))
    assert ok >= 0.97 * len(val)  # a few val characters never occur in train


def test_reversed_source_matches_encode_time_reversal(vocabs):
    from dl.data.translation import reversed_source

    full = encode_pairs(*vocabs, SRC, TGT)
    rev = encode_pairs(*vocabs, SRC, TGT, reverse_source=True)
    again = reversed_source(full)
    assert all(np.array_equal(a, b) for a, b in zip(again.src, rev.src))
    assert again.tgt is full.tgt and again.ref_text == full.ref_text
