"""Subword tokenization with sentencepiece (Kudo & Richardson, 2018): BPE (Sennrich et al.,
2016) or unigram-LM pieces learned from the train split only, saved beside a checkpoint.

Settings chosen for translation scored by sacreBLEU on raw references:

* ``normalization_rule_name="identity"``: no NFKC rewriting, so decoded text keeps the train
  corpus' own characters (sentencepiece's default would rewrite e.g. full-width forms).
  sentencepiece still collapses runs of spaces and strips the ends, so the round trip
  ``decode(encode(s)) == s`` holds for `normalize`-d text whose characters were seen in train
  (``character_coverage=1.0`` keeps every train character); an unseen character becomes
  ``<unk>``.
* The special ids are fixed to `dl.data.text`'s: ``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2, ``<eos>``
  3, so `dl.data.text.BucketLoader` (padding id 0) batches the ids as they are.
* ``num_threads=1`` and the whole corpus (no sentence sampling): training is deterministic,
  byte-identical model files for the same corpus and settings.

The model file is sentencepiece's own serialized protobuf (``.model``): data, not code, so
loading it runs nothing.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence

import numpy as np

from dl.data.roots import DataError
from dl.data.text import BOS, EOS, PAD, UNK

MODEL_TYPES = ("bpe", "unigram")


def normalize(sentence: str) -> str:
    """Whitespace as sentencepiece leaves it: runs of spaces collapsed, ends stripped."""
    return " ".join(p for p in sentence.split(" ") if p)


class Subword:
    """A trained sentencepiece model: text <-> int32 ids with `dl.data.text`'s special ids.

    Args:
      model_proto: the serialized model (what `train` produces and `save` writes).
    """

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = 0, 1, 2, 3
        ids = (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id())
        if ids != (0, 1, 2, 3):
            raise DataError(f"sentencepiece model has special ids {ids}, expected (0, 1, 2, 3)")

    @classmethod
    def train(
        cls, sentences: Iterable[str], vocab_size: int, *, model_type: str = "bpe"
    ) -> Subword:
        """Learns ``vocab_size`` pieces (specials included) from ``sentences`` (train only).

        ``vocab_size`` is a soft limit (``hard_vocab_limit=False``): a corpus too small for it
        (such as a synthetic grammar) gets as many pieces as it has.
        """
        import sentencepiece as spm

        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
        if vocab_size < 8:
            raise ValueError(f"vocab_size must be >= 8, got {vocab_size}")
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(list(sentences)),
            model_writer=buf,
            vocab_size=vocab_size,
            model_type=model_type,
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            pad_piece=PAD,
            unk_piece=UNK,
            bos_piece=BOS,
            eos_piece=EOS,
            character_coverage=1.0,
            normalization_rule_name="identity",
            hard_vocab_limit=False,
            input_sentence_size=0,
            num_threads=1,
            minloglevel=2,
        )
        return cls(buf.getvalue())

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def __eq__(self, other) -> bool:
        return isinstance(other, Subword) and self.model_proto == other.model_proto

    def pieces(self, sentence: str) -> list[str]:
        """The piece strings of one sentence (``'▁'`` marks a preceding space)."""
        return self.sp.encode(sentence, out_type=str)

    def encode(self, sentence: str, *, bos: bool = False, eos: bool = False) -> np.ndarray:
        """One raw sentence -> [n (+1 per bos/eos)] int32 ids."""
        ids = self.sp.encode(sentence)
        return np.array([self.bos_id] * bos + ids + [self.eos_id] * eos, np.int32)

    def encode_all(self, sentences: Sequence[str], **kwargs) -> list[np.ndarray]:
        """`encode` over a corpus (same keyword arguments)."""
        return [self.encode(s, **kwargs) for s in sentences]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> detokenized text. Stops at the first ``<eos>``; drops ``<pad>`` and ``<bos>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                out.append(i)
        return self.sp.decode(out)

    def decode_all(self, rows: Iterable[Iterable[int]]) -> list[str]:
        """`decode` over rows (e.g. a [B, T] array of generated ids)."""
        return [self.decode(r) for r in rows]

    def save(self, path: str | os.PathLike) -> None:
        """Writes the serialized model (sentencepiece's ``.model`` protobuf)."""
        with open(path, "wb") as f:
            f.write(self.model_proto)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Subword:
        """Reads a file written by `save`; a missing or malformed one is a one-line DataError."""
        try:
            with open(path, "rb") as f:
                proto = f.read()
        except FileNotFoundError:
            raise DataError(f"subword model {path} not found; save it with Subword.save") from None
        try:
            return cls(proto)
        except (RuntimeError, OSError) as e:
            raise DataError(f"subword model {path} is malformed ({e}); retrain it") from None
