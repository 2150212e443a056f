"""Text as integer arrays: tokenization, a train-only vocabulary, length-bucketed batches for
sentence models (and seq2seq pairs), and contiguous-stream BPTT batches for language models.

* Tokens: word level with the Moses tokenizer (Koehn et al., 2007, via the maintained
  `sacremoses` port; ``escape=False`` keeps ``&``, ``<`` and quotes as they are, so
  `detokenize` gives back the raw text of ordinary sentences), or character level (the
  sentence's characters, spaces included).
* `Vocab`: built from the train split only, so a word seen only in val/test is ``<unk>`` there,
  as it would be for a deployed model. Saved as JSON beside a checkpoint.
* `BucketLoader`: sentences grouped by length so each batch pads to its bucket's length rather
  than to the longest sentence in the corpus; one compiled shape per bucket.
* `StreamBatches`: the Zaremba et al. (2014) / PTB layout, where the hidden state is carried
  from chunk ``i`` to chunk ``i + 1`` and so row ``r`` of every chunk continues one stream.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from dl.data.roots import DataError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
# Fixed ids 0..3 in every Vocab: padding is id 0 so a zero-filled array is all padding.
SPECIALS = (PAD, UNK, BOS, EOS)
LEVELS = ("word", "char")
_FORMAT = "dl.text.Vocab"


# ----------------------------------------------------------------------------------------------
# Tokenization


@functools.cache
def _moses(lang: str):
    # Building a MosesTokenizer reads its nonbreaking-prefix files; build one per language.
    from sacremoses import MosesDetokenizer, MosesTokenizer

    return MosesTokenizer(lang=lang), MosesDetokenizer(lang=lang)


def tokenize(sentence: str, *, level: str = "word", lang: str = "en", lower: bool = False):
    """One raw sentence -> list of token strings.

    Args:
      sentence: raw, untokenized text.
      level: 'word' (Moses tokenizer for ``lang``) or 'char' (``list(sentence)``).
      lang: Moses language code ('en', 'de', ...); word level only.
      lower: lowercase the tokens. Applied after tokenizing because Moses' nonbreaking prefixes
        ("Mr.", "Dr.", "z.B.") are case-sensitive.
    """
    if level == "char":
        return list(sentence.lower() if lower else sentence)
    if level != "word":
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    tokens = _moses(lang)[0].tokenize(sentence, escape=False)
    return [t.lower() for t in tokens] if lower else tokens


def tokenize_all(sentences: Iterable[str], **kwargs) -> list[list[str]]:
    """`tokenize` over a corpus (same keyword arguments)."""
    return [tokenize(s, **kwargs) for s in sentences]


def detokenize(tokens: Sequence[str], *, level: str = "word", lang: str = "en") -> str:
    """The inverse of `tokenize` (up to lowercasing): Moses detokenizer, or ``''.join``."""
    if level == "char":
        return "".join(tokens)
    if level != "word":
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return _moses(lang)[1].detokenize(list(tokens))


# ----------------------------------------------------------------------------------------------
# Vocabulary


class Vocab:
    """A token <-> id map: the four `SPECIALS` at ids 0..3, then the corpus tokens.

    Args:
      tokens: the corpus tokens in id order (ids 4, 5, ...); must not repeat or hold a special.
      meta: JSON-able facts to keep with it (e.g. level, lang, lower, min_freq).
    """

    def __init__(self, tokens: Sequence[str], meta: dict | None = None):
        self.itos = list(SPECIALS) + list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary tokens repeat or include a special token")
        self.meta = dict(meta or {})
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = range(len(SPECIALS))

    @classmethod
    def build(
        cls,
        sentences: Iterable[Sequence[str]],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        meta: dict | None = None,
    ) -> Vocab:
        """Counts tokens of ``sentences`` (the train split only) and keeps the frequent ones.

        Order, and so every id, is deterministic: count descending, then the token string.

        Args:
          sentences: tokenized sentences.
          min_freq: keep tokens seen at least this often.
          max_size: at most this many ids in all, specials included (the embedding's rows).
        """
        if max_size is not None and max_size < len(SPECIALS):
            raise ValueError(f"max_size must be >= {len(SPECIALS)} (the specials), got {max_size}")
        counts = Counter(t for s in sentences for t in s)
        kept = sorted(
            (t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
            key=lambda t: (-counts[t], t),
        )
        if max_size is not None:
            kept = kept[: max_size - len(SPECIALS)]
        return cls(kept, {"min_freq": min_freq, "max_size": max_size, **(meta or {})})

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and (self.itos, self.meta) == (other.itos, other.meta)

    def encode(self, tokens: Sequence[str], *, bos: bool = False, eos: bool = False) -> np.ndarray:
        """Tokens -> [len(tokens) (+1 per bos/eos)] int32 ids; unknown tokens -> ``unk_id``."""
        ids = [self.stoi.get(t, self.unk_id) for t in tokens]
        return np.array([self.bos_id] * bos + ids + [self.eos_id] * eos, np.int32)

    def decode(self, ids: Iterable[int], *, raw: bool = False) -> list[str]:
        """Ids -> tokens. Stops at the first ``<eos>`` and drops ``<pad>``/``<bos>`` unless
        ``raw`` (then every id maps to its token)."""
        out = []
        for i in ids:
            i = int(i)
            if not raw and i == self.eos_id:
                break
            if raw or i not in (self.pad_id, self.bos_id):
                out.append(self.itos[i])
        return out

    def oov_rate(self, sentences: Iterable[Sequence[str]]) -> float:
        """The fraction of the tokens of ``sentences`` that encode to ``<unk>``."""
        total = unknown = 0
        for s in sentences:
            total += len(s)
            unknown += sum(t not in self.stoi for t in s)
        return unknown / total if total else 0.0

    def save(self, path: str | os.PathLike) -> None:
        """Writes JSON (UTF-8; no pickle, so loading it runs no code)."""
        data = {"format": _FORMAT, "specials": list(SPECIALS), "tokens": self.itos[len(SPECIALS) :]}
        with open(path, "w", encoding="utf-8") as f:
            json.dump({**data, "meta": self.meta}, f, ensure_ascii=False, indent=0)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        """Reads a file written by `save`; a missing or malformed one is a one-line DataError."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if data.get("format") != _FORMAT or data.get("specials") != list(SPECIALS):
                raise ValueError("not a dl.text.Vocab file (format or specials differ)")
            return cls(data["tokens"], data.get("meta"))
        except FileNotFoundError:
            raise DataError(f"vocabulary file {path} not found; save it with Vocab.save") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise DataError(f"vocabulary file {path} is malformed ({e}); rebuild it") from None


# ----------------------------------------------------------------------------------------------
# Length buckets


def bucket_boundaries(lengths: Sequence[int], num_buckets: int) -> list[int]:
    """Upper edges of ``num_buckets`` length quantiles (fewer when quantiles tie): edge ``k`` is
    the shortest length that at least ``k / num_buckets`` of the sequences fit in (the inverted
    CDF), and the last edge is the longest length, so every sequence fits a bucket."""
    lengths = np.asarray(lengths)
    qs = np.quantile(lengths, np.arange(1, num_buckets + 1) / num_buckets, method="inverted_cdf")
    return sorted({int(q) for q in qs} | {int(lengths.max())})


def bucket_of(lengths: Sequence[int], boundaries: Sequence[int]) -> np.ndarray:
    """[n] int: the index of the smallest boundary >= each length."""
    lengths = np.asarray(lengths)
    if lengths.max(initial=0) > boundaries[-1]:
        raise ValueError(f"length {lengths.max()} exceeds the last boundary {boundaries[-1]}")
    return np.searchsorted(np.asarray(boundaries), lengths, side="left")


def padding_fraction(lengths: Sequence[int], boundaries: Sequence[int] | None = None) -> float:
    """Padded positions / all positions when each sequence pads to its bucket's boundary.

    ``boundaries=None`` is no bucketing: one bucket at the longest length, i.e. fixed-shape
    batches padded to the corpus maximum. Filler rows of partial batches are not counted.
    """
    lengths = np.asarray(lengths, np.int64)
    if boundaries is None:
        boundaries = [int(lengths.max())]
    return _fraction(lengths, boundaries, bucket_of(lengths, boundaries))


def _pad_rows(seqs: Sequence[np.ndarray], idx: np.ndarray, time: int, pad_id: int):
    out = np.full((len(idx), time), pad_id, np.int32)
    for row, i in enumerate(idx):
        out[row, : len(seqs[i])] = seqs[i]
    return out, np.array([len(seqs[i]) for i in idx], np.int32)


class BucketLoader:
    """Length-bucketed, shuffled batches of sequences (or of (source, target) pairs).

    Epoch ``e`` draws from ``np.random.default_rng([seed, e])``: it permutes each bucket's
    members, cuts them into batches of ``batch_size``, then permutes the list of batches. The
    batch at step ``s`` is a pure function of ``(seed, s)`` (as in `dl.data.pipeline.Loader`),
    and each sequence is in exactly one batch per epoch. A bucket's last batch is filled up to
    ``batch_size`` with copies of its first row that have ``mask`` 0, so shapes are fixed per
    bucket: ``[batch_size, boundary]``, one compile per bucket.

    Args:
      inputs: n int sequences (e.g. `Vocab.encode` outputs, <bos>/<eos> included).
      batch_size: B.
      seed: non-negative int.
      targets: optional n target sequences (seq2seq). A pair's bucket is that of
        ``max(len(input), len(target))`` and both sides pad to that bucket's boundary.
      boundaries: increasing bucket upper edges; default `bucket_boundaries(num_buckets)`.
      num_buckets: used when ``boundaries`` is None.
      shuffle: False keeps storage order within buckets and bucket order across batches.
      pad_id: the padding id (`Vocab.pad_id` is 0).
    """

    def __init__(
        self,
        inputs: Sequence[Sequence[int]],
        batch_size: int,
        *,
        seed: int,
        targets: Sequence[Sequence[int]] | None = None,
        boundaries: Sequence[int] | None = None,
        num_buckets: int = 8,
        shuffle: bool = True,
        pad_id: int = 0,
    ):
        if not inputs:
            raise ValueError("cannot batch an empty corpus")
        if targets is not None and len(targets) != len(inputs):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        if batch_size < 1 or seed < 0:
            raise ValueError(f"need batch_size >= 1 and seed >= 0, got {batch_size}, {seed}")
        self.inputs = [np.asarray(x, np.int32) for x in inputs]
        self.targets = None if targets is None else [np.asarray(y, np.int32) for y in targets]
        self.lengths = np.array([len(x) for x in self.inputs], np.int64)
        key = self.lengths
        if self.targets is not None:
            key = np.maximum(key, [len(y) for y in self.targets])
        self.boundaries = list(boundaries) if boundaries else bucket_boundaries(key, num_buckets)
        self.bucket = bucket_of(key, self.boundaries)
        self.batch_size, self.seed, self.shuffle, self.pad_id = batch_size, seed, shuffle, pad_id
        self.members = [np.flatnonzero(self.bucket == b) for b in range(len(self.boundaries))]
        self.steps_per_epoch = sum(math.ceil(len(m) / batch_size) for m in self.members)
        self._cached: tuple[int, list] | None = None

    def padding_fraction(self) -> dict[str, float]:
        """{'bucketed', 'unbucketed'}: `padding_fraction` of the inputs (and 'targets_*' of the
        targets) under these buckets and under one bucket at the longest length."""
        out = {"bucketed": _fraction(self.lengths, self.boundaries, self.bucket)}
        out["unbucketed"] = padding_fraction(self.lengths)
        if self.targets is not None:
            lengths = np.array([len(y) for y in self.targets], np.int64)
            out["targets_bucketed"] = _fraction(lengths, self.boundaries, self.bucket)
            out["targets_unbucketed"] = padding_fraction(lengths)
        return out

    def plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        """Epoch ``epoch``'s batches as ``(bucket, example indices)``, in visiting order."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        rng = np.random.default_rng([self.seed, epoch])
        batches = []
        for b, members in enumerate(self.members):
            order = rng.permutation(members) if self.shuffle else members
            batches += [
                (b, order[i : i + self.batch_size]) for i in range(0, len(order), self.batch_size)
            ]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cached = (epoch, batches)
        return batches

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """The batch at global step ``step``.

        Returns:
          {'inputs': [B, T] int32, 'lengths': [B] int32, 'mask': [B] float32, 'index': [B]
          int64 (the rows' positions in the corpus)}, plus 'targets' [B, T] and
          'target_lengths' [B] for pairs; T is the bucket's boundary.
        """
        epoch, position = divmod(int(step), self.steps_per_epoch)
        bucket, idx = self.plan(epoch)[position]
        mask = np.zeros(self.batch_size, np.float32)
        mask[: len(idx)] = 1.0
        idx = np.concatenate([idx, np.full(self.batch_size - len(idx), idx[0], idx.dtype)])
        time = self.boundaries[bucket]
        inputs, lengths = _pad_rows(self.inputs, idx, time, self.pad_id)
        out = {"inputs": inputs, "lengths": lengths, "mask": mask, "index": idx}
        if self.targets is not None:
            out["targets"], out["target_lengths"] = _pad_rows(self.targets, idx, time, self.pad_id)
        return out

    def epoch(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        """The ``steps_per_epoch`` batches of epoch ``epoch``, in order."""
        first = epoch * self.steps_per_epoch
        for step in range(first, first + self.steps_per_epoch):
            yield self.batch(step)


def _fraction(lengths: np.ndarray, boundaries: Sequence[int], bucket: np.ndarray) -> float:
    padded = np.asarray(boundaries, np.int64)[bucket]
    return float((padded - lengths).sum() / padded.sum())


# ----------------------------------------------------------------------------------------------
# Contiguous streams (truncated BPTT)


def stream(sentences: Iterable[Sequence[int]], eos_id: int) -> np.ndarray:
    """[total] int32: the sentences concatenated, each followed by ``eos_id`` (PTB's layout,
    where every line ends in <eos>, so the model also learns to end sentences)."""
    parts = [np.append(np.asarray(s, np.int32), np.int32(eos_id)) for s in sentences]
    return np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)


class StreamBatches:
    """Truncated-BPTT chunks of one token stream (Zaremba, Sutskever & Vinyals, 2014).

    The stream is cut into ``batch_size`` contiguous rows, ``rows = stream[:B * n].reshape(B,
    n)`` with ``n = len(stream) // B``. Chunk ``i`` is ``inputs = rows[:, i*bptt:(i+1)*bptt]``
    and ``targets = rows[:, i*bptt + 1:(i+1)*bptt + 1]`` (the next tokens), for ``num_chunks =
    (n - 1) // bptt`` chunks; the ragged tail (under ``bptt`` columns, and the last
    ``len(stream) % B`` tokens) is dropped so every chunk has one shape. Because row ``r`` of
    chunk ``i + 1`` continues row ``r`` of chunk ``i``, the final RNN state of one chunk is the
    right initial state of the next.

    Args:
      tokens: [total] int stream (see `stream`).
      batch_size: B rows.
      bptt: time steps per chunk.
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, bptt: int):
        tokens = np.asarray(tokens, np.int32)
        n = len(tokens) // batch_size
        if batch_size < 1 or bptt < 1 or n < bptt + 1:
            raise ValueError(
                f"a stream of {len(tokens)} tokens is too short for batch_size={batch_size}, "
                f"bptt={bptt} (needs at least batch_size * (bptt + 1) tokens)"
            )
        self.rows = tokens[: batch_size * n].reshape(batch_size, n)
        self.bptt = bptt
        self.num_chunks = (n - 1) // bptt

    def __len__(self) -> int:
        return self.num_chunks

    def chunk(self, i: int) -> dict[str, np.ndarray]:
        """{'inputs': [B, bptt] int32, 'targets': [B, bptt] int32} of chunk ``i``."""
        if not 0 <= i < self.num_chunks:
            raise IndexError(f"chunk {i} out of range [0, {self.num_chunks})")
        start = i * self.bptt
        return {
            "inputs": self.rows[:, start : start + self.bptt],
            "targets": self.rows[:, start + 1 : start + self.bptt + 1],
        }

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (self.chunk(i) for i in range(self.num_chunks))
