"""dl.data.subword: sentencepiece round trip, deterministic training, fixed special ids, save/load."""

import pytest

from dl.data import DataError
from dl.data.subword import Subword, normalize

CORPUS = [
    f"{a} {b} is {c} in the {d}."
    for a in ("A", "The", "Two")
    for b in ("man", "woman", "dog", "child")
    for c in ("running", "sitting", "playing")
    for d in ("park", "street", "water", "field", "snow")
]


@pytest.fixture(scope="module")
def sub():
    return Subword.train(CORPUS, 60)


def test_round_trip_of_normalized_text(sub):
    for s in CORPUS + ["The dog is in the snow.", "A child is playing in the water."]:
        assert sub.decode(sub.encode(s)) == s
    messy = "  The dog   is in the  park. "
    assert normalize(messy) == "The dog is in the park."
    assert sub.decode(sub.encode(messy)) == normalize(messy)


def test_pieces_are_subwords_and_specials_fixed(sub):
    assert (sub.pad_id, sub.unk_id, sub.bos_id, sub.eos_id) == (0, 1, 2, 3)
    assert [sub.sp.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    ids = sub.encode("The dog is running.", bos=True, eos=True)
    assert ids[0] == sub.bos_id and ids[-1] == sub.eos_id and ids.dtype.name == "int32"
    assert "".join(sub.pieces("The dog is running.")).replace("\u2581", " ").strip() == (
        "The dog is running."
    )
    # decode stops at <eos> and drops <pad>/<bos>
    body = sub.encode("A dog.")
    assert sub.decode([sub.bos_id, *body, sub.eos_id, *sub.encode("cat"), 0, 0]) == "A dog."
    assert sub.unk_id in sub.encode("Q")  # 'Q' never appears in the corpus


def test_training_is_deterministic_and_saves(sub, tmp_path):
    again = Subword.train(CORPUS, 60)
    assert again == sub and again.model_proto == sub.model_proto
    assert Subword.train(CORPUS, 50) != sub
    path = tmp_path / "subword.en.model"
    sub.save(path)
    loaded = Subword.load(path)
    assert loaded == sub and list(loaded.encode(CORPUS[7])) == list(sub.encode(CORPUS[7]))


def test_bad_inputs_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="model_type"):
        Subword.train(CORPUS, 60, model_type="wordpiece")
    with pytest.raises(DataError, match="not found"):
        Subword.load(tmp_path / "missing.model")
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(DataError, match="malformed"):
        Subword.load(tmp_path / "bad.model")


def test_synthetic_multi30k_round_trip(synthetic_multi30k):
    from dl.data.multi30k import load_multi30k

    train = load_multi30k("de", "train", data_dir=synthetic_multi30k)
    sub = Subword.train(train[:2000], 100)
    val = load_multi30k("de", "val", data_dir=synthetic_multi30k)
    assert all(sub.decode(sub.encode(s)) == s for s in val[:200])
