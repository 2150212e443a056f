"""Orbax checkpoints of a TrainState plus JSON metadata (loop bookkeeping such as early-stopping
counters), written atomically: orbax writes into a temporary folder and renames it on success, so
a run killed mid-write leaves the previous checkpoint intact and the partial one is ignored.

Atomic writes do not protect against bytes damaged later (a bad disk, a copy cut short, a
stray edit), and orbax does not check what it reads: a flipped byte in an array file restores
silently as a wrong number. So every checkpoint also stores a CRC-32 of each array and of the
metadata, and `restore_latest` verifies them, falls back to an older checkpoint when the newest
is unreadable, and turns a checkpoint from another config into one line naming the first leaf
that differs (`CheckpointError`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import sys
import zlib
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(Exception):
    """A checkpoint that cannot be used: none readable, or written by another config. The message
    is one line that says what to do (the command line prints it and exits 2)."""


class _Unreadable(Exception):
    """One checkpoint's bytes are damaged or missing; the message says what, briefly."""


# Tensorstore reports damaged or missing bytes as ValueError("<STATUS>: ..."); these statuses
# mean the files, not the code, are at fault.
_DAMAGE_STATUS = re.compile(r"^(DATA_LOSS|OUT_OF_RANGE|NOT_FOUND|FAILED_PRECONDITION): ")


def _damage(e: BaseException, root: str) -> str | None:
    """What is wrong with the files under `root` if `e` means damaged or missing bytes, else None
    (a bug: let it raise). Orbax wraps a failed array read in a bare `Exception(...) from e`, so
    the chain of causes is searched."""
    while e is not None:
        if isinstance(e, (json.JSONDecodeError, UnicodeDecodeError)):
            return "invalid JSON"
        if isinstance(e, FileNotFoundError):
            return f"missing file {os.path.basename(e.filename or '') or '?'}"
        if isinstance(e, ValueError) and (m := _DAMAGE_STATUS.match(str(e))):
            files = re.findall(r'local file "([^"]+)"', str(e))  # the innermost is the culprit
            where = f" in {os.path.relpath(files[-1], root)}" if files else ""
            return f"tensorstore {m.group(1)}{where}"
        if type(e) is not Exception:  # only orbax's bare wrapper is looked through
            return None
        e = e.__cause__
    return None


def _path(keys: tuple) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in keys)


def _leaves(tree: Any) -> dict[str, Any]:
    return {_path(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _crc32s(tree: Any, meta: dict[str, Any]) -> dict[str, int]:
    """CRC-32 of each array's bytes (key: its path) and of the metadata's JSON (key: "")."""
    leaves = _leaves(tree)
    # A multi-host array has shards this process cannot read: it goes unchecked.
    host = jax.device_get(
        {k: x for k, x in leaves.items() if getattr(x, "is_fully_addressable", True)}
    )
    out = {
        k: zlib.crc32(np.ascontiguousarray(x).reshape(-1).view(np.uint8)) for k, x in host.items()
    }
    out[""] = zlib.crc32(json.dumps(meta, sort_keys=True).encode())
    return out


def _mismatch(stored: Any, template: Any) -> str | None:
    """The first leaf (in the template's order) whose path, shape or dtype differs, in words."""
    have, want = _leaves(stored), _leaves(template)
    for name, x in want.items():
        if name not in have:
            return f"{name} is missing from the checkpoint"
        shape, dtype = getattr(have[name], "shape", None), getattr(have[name], "dtype", None)
        if shape is not None and tuple(shape) != tuple(np.shape(x)):
            return f"{name} has shape {tuple(shape)} in the checkpoint, {tuple(np.shape(x))} here"
        here = np.dtype(x.dtype) if hasattr(x, "dtype") else np.result_type(x)  # or a scalar
        if dtype is not None and np.dtype(dtype) != here:
            return f"{name} has dtype {np.dtype(dtype)} in the checkpoint, {here} here"
    extra = next((name for name in have if name not in want), None)
    return f"{extra} is in the checkpoint but not here" if extra else None


def _is_read_aftermath(u) -> bool:
    """True for the two unraisable reports a failed orbax read leaves behind, one traceback per
    array still in flight, possibly after `restore_latest` has returned; they say nothing the
    error did not: tensorstore finishing a read whose asyncio loop orbax has closed
    (RuntimeError('Event loop is closed')), and the abandoned read coroutine, closed by the
    garbage collector, turning GeneratorExit into orbax's bare Exception."""
    e = u.exc_value
    if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
        return True
    return type(e) is Exception and isinstance(e.__cause__, GeneratorExit)


def _drop_read_aftermath() -> None:
    """Installs (once; process-wide) an unraisable hook that drops `_is_read_aftermath` reports
    and passes every other one on."""
    hook = sys.unraisablehook
    if getattr(hook, "_drops_read_aftermath", False):
        return

    def quiet(u):
        if not _is_read_aftermath(u):
            hook(u)

    quiet._drops_read_aftermath = True
    sys.unraisablehook = quiet
    # The same aftermath can also reach asyncio's logger instead, when a read task of the failed
    # restore is collected with its exception unread (seen on a busy machine).
    logging.getLogger("asyncio").addFilter(_not_read_task_report)


def _not_read_task_report(record: logging.LogRecord) -> bool:
    """A logging filter: False for asyncio's "Task/Future exception was never retrieved" report
    of an orbax read (a deserialize task, or a tensorstore error that `restore_latest` has
    already reported), True for everything else."""
    text = record.getMessage()
    if "exception was never retrieved" not in text:
        return True
    read = ("deserialize", "OUT_OF_RANGE", "DATA_LOSS", "NOT_FOUND", "FAILED_PRECONDITION")
    return not any(word in text for word in read)


@contextlib.contextmanager
def _quiet_absl() -> Iterator[None]:
    """Orbax logs through absl (to stderr as "WARNING:absl:...") when it meets damaged files;
    `restore_latest` says what happened in one line of its own instead."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


class Checkpointer:
    """Thin owner of an `ocp.CheckpointManager` rooted at `directory` (keeps the newest few)."""

    # 3, not 2: when the newest checkpoint is unreadable, `restore_latest` falls back to the one
    # before and deletes the damaged one (orbax would otherwise never save that step again); with
    # 2 kept the run would then hold a single copy of its state until the next save, and a second
    # damaged one would end it. The cost is one more copy of the state on disk.
    def __init__(self, directory: str, *, max_to_keep: int = 3):
        self.directory = os.path.abspath(directory)
        with _quiet_absl():  # it reads the checkpoints' metadata; restore_latest reports damage
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True
                ),
                # Handlers named up front let `item_metadata` read a checkpoint's tree before
                # restoring it (to compare with the template).
                item_handlers={
                    "state": ocp.StandardCheckpointHandler(),
                    "meta": ocp.JsonCheckpointHandler(),
                    "crc32": ocp.JsonCheckpointHandler(),
                },
            )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        # A snapshot: orbax may write the JSON after this returns, and the caller goes on
        # updating its dict (the loop's best/bad_evals); the checksum must match what is written.
        meta = json.loads(json.dumps(meta))
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                meta=ocp.args.JsonSave(meta),
                crc32=ocp.args.JsonSave(_crc32s(state, meta)),
            ),
        )

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores into the structure, shapes, dtypes and shardings of `template`, unchecked:
        orbax's own errors propagate. `restore_latest` is the checked way to resume."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return out["state"], dict(out["meta"])

    def restore_latest(self, template: Any) -> tuple[Any, dict[str, Any], int] | None:
        """Restores the newest readable checkpoint into `template`'s structure, shapes, dtypes
        and shardings, as (state, meta, step); None when there is none.

        Prints one line to stderr when there is no checkpoint, and one when damaged newer ones
        were skipped (they are deleted, so that their steps are saved again). Raises
        CheckpointError when no checkpoint is readable or the newest readable one has other
        shapes or dtypes than `template` (another config: older ones would not fit either)."""
        steps = sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            print(f"no checkpoint under {self.directory}; starting from step 0", file=sys.stderr)
            return None
        failed: list[tuple[int, str]] = []
        _drop_read_aftermath()  # before reading: the reports can come at once
        with _quiet_absl():
            for step in steps:
                try:
                    state, meta = self._read(step, template)
                except _Unreadable as e:
                    failed.append((step, str(e)))
                else:
                    break
                gc.collect()  # the failed read's abandoned coroutines close now, under the hook
            else:
                listed = ", ".join(str(s) for s, _ in failed)
                raise CheckpointError(
                    f"no readable checkpoint under {self.directory} (steps {listed}; newest: "
                    f"{failed[0][1]}); use another --workdir or drop --resume"
                )
            for bad, _ in failed:
                self._manager.delete(bad)
        if failed:
            many = len(failed) > 1
            print(
                f"warning: checkpoint{'s' if many else ''} "
                + ", ".join(f"{s} ({why})" for s, why in failed)
                + f" under {self.directory} {'are' if many else 'is'} unreadable; deleted "
                + f"{'them' if many else 'it'}, resuming from step {step}",
                file=sys.stderr,
            )
        return state, meta, step

    def _read(self, step: int, template: Any) -> tuple[Any, dict[str, Any]]:
        """One checkpoint, checked: _Unreadable for damage, CheckpointError for a mismatch."""
        try:
            items = self._manager.item_metadata(step)
            names = set(items.keys())  # what the checkpoint holds
            for name in ("state", "meta"):
                if name not in names:
                    raise _Unreadable(f"no {name} item")
            if items["state"] is None:  # orbax's answer when state/_METADATA is gone
                raise _Unreadable("missing file _METADATA")
            problem = _mismatch(items["state"].tree, template)
            if problem:
                raise CheckpointError(
                    f"checkpoint under {self.directory} does not match this config: {problem}; "
                    "use another --workdir or drop --resume"
                )
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
            wanted = {"state": ocp.args.StandardRestore(abstract), "meta": ocp.args.JsonRestore()}
            if "crc32" in names:  # absent from checkpoints older than the check
                wanted["crc32"] = ocp.args.JsonRestore()
            out = self._manager.restore(step, args=ocp.args.Composite(**wanted))
        except (CheckpointError, _Unreadable):
            raise
        except Exception as e:  # re-raised below unless it means damaged files
            why = _damage(e, self.directory)
            if why is None:
                raise
            raise _Unreadable(why) from e
        state, meta = out["state"], dict(out["meta"])
        if "crc32" in names:
            stored, now = dict(out["crc32"]), _crc32s(state, meta)
            bad = next((k for k in now if k in stored and stored[k] != now[k]), None)
            if bad is not None:
                raise _Unreadable(f"{f'array {bad}' if bad else 'meta'} fails its checksum")
        return state, meta

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
