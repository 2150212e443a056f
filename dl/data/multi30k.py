"""Multi30K task 1 (Elliott, Frank, Sima'an & Specia, 2016, "Multi30K: Multilingual
English-German Image Descriptions"): raw English-German caption pairs.

Read from ``<root>/multi30k/`` under the first data root (see `dl.data.roots`) that holds the
split's files, gzip-compressed raw UTF-8, one sentence per line, line ``i`` of ``.en``
translating line ``i`` of ``.de``:

| split | lines | files |
| --- | --- | --- |
| train | 29000 | train.{en,de}.gz |
| val | 1014 | val.{en,de}.gz |
| test | 1000 | test_2016_flickr.{en,de}.gz |

Sentences are returned raw (untokenized; the files keep a few HTML entities such as ``&amp;``
as they are), because corpus BLEU is scored on raw references (sacreBLEU's default). Every
file is checked against its expected line count, so a truncated download or a pair of
misaligned files is a one-line `DataError` rather than silently shifted pairs.

Not in `dl.data.DATASETS`: that registry maps names to numeric ArrayData splits, and these are
strings to tokenize (`dl.data.text`) with a train-only vocabulary first.
"""

from __future__ import annotations

import gzip
import os
import zlib

from dl.data.roots import DataError, data_roots, describe

NAME = "multi30k"
LANGS = ("en", "de")
# split -> (file stem, expected number of lines).
SPLITS = {"train": ("train", 29000), "val": ("val", 1014), "test": ("test_2016_flickr", 1000)}
_HOME = "https://github.com/multi30k/dataset (data/task1/raw/)"


def _paths(split: str, langs: tuple[str, ...], data_dir) -> list[str]:
    """The split's files for ``langs`` under the first root that has all of them."""
    stem = SPLITS[split][0]
    names = [f"{stem}.{lang}.gz" for lang in langs]
    roots = data_roots(data_dir)
    for root, _ in roots:
        paths = [os.path.join(root, NAME, n) for n in names]
        if all(os.path.isfile(p) for p in paths):
            return paths
    target = os.path.join(roots[0][0], NAME)
    raise DataError(
        f"Multi30K {split} not found: looked for {', '.join(names)} under "
        f"{describe([(os.path.join(r, NAME), o) for r, o in roots])}. To fix: put the task-1 raw "
        f"files from {_HOME} into {target}/, or point --data-dir / $DL_DATA_DIR at a folder "
        f"with a multi30k/ subfolder."
    )


def _read_lines(path: str) -> list[str]:
    """The lines of a gzip UTF-8 text file.

    Split on '\\n' only: `str.splitlines` also splits on U+2028, U+0085 and friends, which would
    shift every later line against the other language.
    """
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            text = f.read()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise DataError(
            f"{path} is not readable gzip UTF-8 text ({type(e).__name__}: {e}); "
            f"download it again from {_HOME}"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start another
    return [line.removesuffix("\r") for line in lines]


def load_multi30k(
    lang: str | tuple[str, str], split: str, *, data_dir: str | os.PathLike | None = None
) -> list[str] | tuple[list[str], list[str]]:
    """Raw Multi30K sentences of one language, or parallel sentences of a language pair.

    Args:
      lang: 'en' or 'de' for one side; a pair such as ('en', 'de') (source, target) for
        aligned sentences.
      split: 'train', 'val' or 'test' (test_2016_flickr).
      data_dir: the data root holding ``multi30k/`` (default: see `dl.data.roots`).

    Returns:
      a list of the split's raw sentences; for a pair, a tuple of two such lists, aligned by
      position (``src[i]`` translates ``tgt[i]``).

    Raises:
      DataError: a file is missing, unreadable, or has the wrong number of lines, or the two
        sides differ in length (the message names the file(s) and the fix).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    langs = (lang,) if isinstance(lang, str) else tuple(lang)
    if not 1 <= len(langs) <= 2 or len(set(langs)) < len(langs) or not set(langs) <= set(LANGS):
        raise ValueError(f"lang must be one of {LANGS} or a pair of them, got {lang!r}")
    paths = _paths(split, langs, data_dir)
    sides = [_read_lines(p) for p in paths]
    # Compare the sides first, so a misaligned pair is reported as such, naming both files.
    if len(sides) == 2 and len(sides[0]) != len(sides[1]):
        raise DataError(
            f"Multi30K {split} is misaligned: {paths[0]} has {len(sides[0])} lines but "
            f"{paths[1]} has {len(sides[1])}; download both again from {_HOME}"
        )
    expected = SPLITS[split][1]
    for path, lines in zip(paths, sides):
        if len(lines) != expected:
            raise DataError(
                f"{path} has {len(lines)} lines, expected {expected} (truncated or a different "
                f"version); download it again from {_HOME}"
            )
    return sides[0] if len(sides) == 1 else (sides[0], sides[1])
