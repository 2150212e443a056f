"""Multi30K parallel data for sequence-to-sequence translation: subword ids, length filtering,
optional source reversal, bucketed padded batches.

One sentencepiece model per language (`dl.data.subword.Subword`), trained on the train split
only and saved in the workdir as ``subword.<lang>.model`` (beside the checkpoints). Per pair:

* source ids: the pieces, then ``<eos>`` (Sutskever et al. 2014 end the source with it too);
  with ``reverse_source`` the pieces are reversed and ``<eos>`` stays last, so the first source
  word is read just before the first target word (their sec. 3.3);
* target ids: ``<bos>``, the pieces, ``<eos>``; the decoder reads ``tgt[:-1]`` and predicts
  ``tgt[1:]`` (`seq2seq_batch`).

Length filtering counts pieces (without specials) on both sides: a pair is kept when both have
at most ``max_len``. Train and the evaluation splits are filtered separately (``max_len``,
``eval_max_len``; 0 keeps everything), and each split keeps its raw source and reference
sentences for sacreBLEU. Splits: 'train' (29000), 'val' (1014), 'test' (test_2016_flickr, 1000)
-- the files `dl.data.multi30k` reads.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from dl.data.multi30k import load_multi30k
from dl.data.subword import Subword
from dl.data.text import BucketLoader

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class Split:
    """One split's kept pairs, aligned by position."""

    src: list[np.ndarray]  # source ids, pieces (reversed if asked) then <eos>
    tgt: list[np.ndarray]  # <bos>, target pieces, <eos>
    src_text: list[str]  # raw source sentences
    ref_text: list[str]  # raw target sentences (the BLEU references)
    index: np.ndarray  # the pairs' line numbers in the split's files

    def __len__(self) -> int:
        return len(self.src)


@dataclasses.dataclass
class Translation:
    src_lang: str
    tgt_lang: str
    src_vocab: Subword
    tgt_vocab: Subword
    splits: dict[str, Split]
    reverse_source: bool


def encode_pairs(
    src_vocab: Subword,
    tgt_vocab: Subword,
    src_text: Sequence[str],
    ref_text: Sequence[str],
    *,
    max_len: int = 0,
    reverse_source: bool = False,
) -> Split:
    """Encodes aligned sentences and keeps the pairs with at most ``max_len`` pieces a side."""
    src, tgt, keep = [], [], []
    for i, (s, t) in enumerate(zip(src_text, ref_text, strict=True)):
        a, b = src_vocab.encode(s), tgt_vocab.encode(t)
        if max_len and (len(a) > max_len or len(b) > max_len):
            continue
        if reverse_source:
            a = a[::-1]
        src.append(np.append(a, np.int32(src_vocab.eos_id)).astype(np.int32))
        tgt.append(np.concatenate([[tgt_vocab.bos_id], b, [tgt_vocab.eos_id]]).astype(np.int32))
        keep.append(i)
    keep = np.array(keep, np.int64)
    return Split(src, tgt, [src_text[i] for i in keep], [ref_text[i] for i in keep], keep)


def reversed_source(split: Split) -> Split:
    """The split with every source's pieces reversed (``<eos>`` stays last); the rest shared."""
    src = [np.append(s[:-1][::-1], s[-1]).astype(np.int32) for s in split.src]
    return dataclasses.replace(split, src=src)


def load_translation(
    src_lang: str,
    tgt_lang: str,
    *,
    workdir: str,
    vocab_size: int,
    max_len: int = 0,
    eval_max_len: int = 0,
    reverse_source: bool = False,
    train_sentences: int = 0,
    eval_sentences: int = 0,
    model_type: str = "bpe",
    data_dir: str | os.PathLike | None = None,
) -> Translation:
    """Multi30K ``src_lang`` -> ``tgt_lang`` with subword models trained on (the first
    ``train_sentences`` of) train and saved to ``workdir/subword.<lang>.model``.

    Args:
      vocab_size: pieces per language (specials included; a soft limit, see `Subword.train`).
      max_len, eval_max_len: the length filter of train and of val/test (0: none).
      train_sentences, eval_sentences: use only the first N lines (0: all); for smoke tests.
    """
    raw = {}
    for split in SPLITS:
        src, tgt = load_multi30k((src_lang, tgt_lang), split, data_dir=data_dir)
        limit = train_sentences if split == "train" else eval_sentences
        raw[split] = (src[:limit], tgt[:limit]) if limit else (src, tgt)
    vocabs = []
    for lang, side in ((src_lang, 0), (tgt_lang, 1)):
        vocab = Subword.train(raw["train"][side], vocab_size, model_type=model_type)
        vocab.save(os.path.join(workdir, f"subword.{lang}.model"))
        vocabs.append(vocab)
    splits = {
        split: encode_pairs(
            *vocabs,
            *raw[split],
            max_len=max_len if split == "train" else eval_max_len,
            reverse_source=reverse_source,
        )
        for split in SPLITS
    }
    return Translation(src_lang, tgt_lang, *vocabs, splits, reverse_source)


def pair_loader(
    split: Split,
    batch_size: int,
    *,
    seed: int,
    boundaries: Sequence[int] | None = None,
    num_buckets: int = 2,
    shuffle: bool = True,
) -> BucketLoader:
    """Length-bucketed (source, target) batches; see `dl.data.text.BucketLoader`."""
    return BucketLoader(
        split.src,
        batch_size,
        seed=seed,
        targets=split.tgt,
        boundaries=boundaries,
        num_buckets=num_buckets,
        shuffle=shuffle,
    )


def source_loader(
    split: Split, batch_size: int, *, boundaries=None, num_buckets: int = 2
) -> BucketLoader:
    """Unshuffled source-only batches for decoding; ``batch['index']`` puts rows back in
    order, and rows with ``mask`` 0 are filler."""
    return BucketLoader(
        split.src,
        batch_size,
        seed=0,
        boundaries=boundaries,
        num_buckets=num_buckets,
        shuffle=False,
    )


def seq2seq_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A `pair_loader` batch -> the model's: ``src`` [B, S], ``src_lengths`` [B], ``tgt_in``
    [B, T-1] (``<bos>`` y), ``tgt_out`` [B, T-1] (y ``<eos>``), ``tgt_mask`` [B, T-1] float (1
    on real target tokens of real rows), and ``mask`` [B] (real rows)."""
    tgt = batch["targets"]
    steps = np.arange(tgt.shape[1] - 1)[None, :]
    tgt_mask = (steps < (batch["target_lengths"] - 1)[:, None]) * batch["mask"][:, None]
    return {
        "src": batch["inputs"],
        "src_lengths": batch["lengths"],
        "tgt_in": tgt[:, :-1],
        "tgt_out": tgt[:, 1:],
        "tgt_mask": tgt_mask.astype(np.float32),
        "mask": batch["mask"],
    }
