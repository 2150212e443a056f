"""Strict numerics for every test: no silent dtype promotion (equinox's habit); shared fixtures."""

import os

import jax
import pytest
import tensorflow_datasets as tfds
from hypothesis import settings

jax.config.update("jax_numpy_dtype_promotion", "strict")

# Property tests draw the same examples on every run by default, so a red CI is reproducible and
# never a coin flip; `HYPOTHESIS_PROFILE=explore python -m pytest` draws fresh ones (run it when
# touching numerics, and turn anything it finds into a fixed test). No deadline in either: a
# per-example time limit (hypothesis' default is 200 ms) fails a correct test when the machine
# is busy or an example compiles, and tests must not depend on load.
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def mock_tfds(monkeypatch):
    """tfds.testing.mock_data, with its batched read repaired.

    tfds 4.9.10's mock installs ``partial(_getitems, generator=...)`` as a plain attribute of a
    MagicMock, so ``self`` is never bound and ``__getitems__(keys)`` raises TypeError. Accept
    both the broken and a fixed calling convention.
    """
    from tensorflow_datasets.testing import mocking

    original = mocking._getitems

    def getitems(*args, generator, serialized=False):
        self, keys = (None, args[0]) if len(args) == 1 else args
        return original(self, keys, generator, serialized=serialized)

    monkeypatch.setattr(mocking, "_getitems", getitems)
    return tfds.testing.mock_data


@pytest.fixture
def synthetic_mnist(tmp_path):
    """A data root holding random MNIST-format IDX files: 10048 train images (48 after the fixed
    10000-image val split) and 20 test images; for experiment smoke tests without real MNIST."""
    import numpy as np

    from dl.data import idx

    rng = np.random.default_rng(0)
    splits = {
        split: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n))
        for split, n in (("train", 10048), ("test", 20))
    }
    idx.write_folder(tmp_path / "data" / "mnist", splits)
    return tmp_path / "data"


@pytest.fixture
def synthetic_multi30k(tmp_path):
    """A data root holding Multi30K-layout gzip files (English and German, the real line counts
    29000 / 1014 / 1000) of short random captions from a 40-word grammar; for smoke tests."""
    import gzip

    import numpy as np

    from dl.data.multi30k import SPLITS

    rng = np.random.default_rng(0)
    words = {
        "en": (
            ["a", "the", "two"],
            ["man", "woman", "dog", "child", "group"],
            ["is", "are"],
            ["running", "sitting", "playing", "walking"],
            ["in", "on", "near"],
            ["the park", "a street", "the water", "a field"],
        ),
        "de": (
            ["ein", "der", "zwei"],
            ["mann", "frau", "hund", "kind", "gruppe"],
            ["ist", "sind"],
            ["rennt", "sitzt", "spielt", "geht"],
            ["im", "auf", "nahe"],
            ["dem park", "einer strasse", "dem wasser", "einem feld"],
        ),
    }
    root = tmp_path / "data" / "multi30k"
    root.mkdir(parents=True)
    for stem, n in SPLITS.values():
        picks = [rng.integers(0, len(part), n) for part in words["en"]]
        for lang, parts in words.items():
            lines = [
                " ".join(part[p[i]] for part, p in zip(parts, picks, strict=True)).capitalize()
                + "."
                for i in range(n)
            ]
            with gzip.open(root / f"{stem}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
    return tmp_path / "data"
