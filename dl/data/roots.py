"""Where file-backed datasets are looked for, and the error raised when they are not there.

Lookup order (`data_roots`):

1. the explicit ``data_dir`` argument (``--data-dir`` on the command line, or an experiment's
   ``data_dir`` config field);
2. else ``$DL_DATA_DIR``;
3. else ``data/`` at the repository root (git-ignored), then the repository's sibling
   ``../shared/data`` (used where it exists).

An explicit directory (1 or 2) is the only place looked: a directory the user named that lacks
the data is a mistake to report, not a reason to read some other copy. The repository root is
the parent of the ``dl`` package directory, so in a fresh clone with ``shared/`` copied beside
it, (3) finds ``<clone>/../shared/data``.
"""

from __future__ import annotations

import os

ENV_VAR = "DL_DATA_DIR"
# dl/data/roots.py -> dl/data -> dl -> the repository root.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class DataError(Exception):
    """A dataset is missing, corrupt or unknown; the message says where we looked and the fix."""


def data_roots(data_dir: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """The data roots to search, in order, as ``(path, where it came from)`` pairs.

    ``data_dir`` (when given and non-empty) or else ``$DL_DATA_DIR`` is the only root; otherwise
    ``<repo>/data`` then ``<repo>/../shared/data``. Paths are not checked for existence (callers
    look for their files under each root), so a "not found" message can name every one.
    """
    if data_dir:
        return [(os.fspath(data_dir), "--data-dir")]
    if os.environ.get(ENV_VAR):
        return [(os.environ[ENV_VAR], f"${ENV_VAR}")]
    shared = os.path.normpath(os.path.join(REPO_ROOT, os.pardir, "shared", "data"))
    return [
        (os.path.join(REPO_ROOT, "data"), "the repository's data/"),
        (shared, "the repository's sibling ../shared/data"),
    ]


def describe(roots: list[tuple[str, str]]) -> str:
    """``'/a (--data-dir)'`` or ``'/a (...), /b (...)'``: the roots for a one-line message."""
    return ", ".join(f"{path} ({origin})" for path, origin in roots)
