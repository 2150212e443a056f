"""Everything `run.py` does, importable and tested: look up an experiment, build and override
its config, check the workdir, run it, write config.json / results.json, and REPORT.md for many.

User mistakes raise `UsageError`, whose message is one line; `run.py` prints it and exits 2.
"""

from __future__ import annotations

import difflib
import json
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import ml_collections

from dl.data import DataError
from dl.report import report_markdown, write_results
from dl.train import CheckpointError
from experiments._fields import (
    SCALES,
    FieldError,
    Spec,
    check_coverage,
    leaves,
    parse_text,
    validate,
)


class UsageError(Exception):
    """Bad input from the user; the message says what to do."""


class DataMissing(UsageError):
    """The experiment's dataset is not where we looked; `run all` records it as skipped."""


def get_experiment(name: str, registry: dict[str, ModuleType]) -> ModuleType:
    if name not in registry:
        close = difflib.get_close_matches(name, list(registry), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(
            f"unknown experiment {name!r}; {hint}`python run.py --list` shows all {len(registry)}"
        )
    return registry[name]


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Sequence[str], fields: Mapping[str, Spec]
) -> None:
    """Applies `FIELD=VALUE` strings (dotted fields for nested configs), each parsed as a Python
    literal and coerced by the field's spec (an int where a float is expected, 64 for (64,))."""
    names = leaves(config)
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"override {item!r} must look like --config.FIELD=VALUE")
        field, text = item.split("=", 1)
        if field not in names:
            close = difflib.get_close_matches(field, list(names), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(
                f"unknown config field {field!r}; {hint}valid fields: {', '.join(sorted(names))}"
            )
        spec = fields[field]
        value = spec.coerce(parse_text(text), text)
        why = spec.problem(value)
        if why is not None:
            raise UsageError(f"config field {field!r} must be {why}; got {text!r}")
        *parents, leaf = field.split(".")
        node = config
        for p in parents:
            node = node[p]
        try:
            node[leaf] = value
        except TypeError as e:  # the spec and the default's type disagree: a bug in FIELDS
            raise TypeError(f"FIELDS[{field!r}] accepts {value!r}, the config does not: {e}") from e


def check_workdir(workdir: str) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise UsageError(
            f"cannot write to workdir {workdir!r} ({e.strerror}); pass --workdir to a "
            f"writable folder"
        ) from None


def build_config(
    module: ModuleType,
    *,
    scale: str,
    seed: int | None = None,
    data_dir: str | None = None,
    overrides: Sequence[str] = (),
) -> ml_collections.ConfigDict:
    if scale not in SCALES:
        raise UsageError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    config = module.get_config(scale)
    check_coverage(module.FIELDS, config, module.__name__)
    overrides = list(overrides)
    # --seed and --data-dir are overrides like any other, so they are checked the same way.
    if seed is not None:
        overrides.insert(0, f"seed={seed}")
    if data_dir is not None:
        overrides.insert(0, f"data_dir={data_dir}")
    apply_overrides(config, overrides, module.FIELDS)
    try:
        # The defaults too, and the rules across fields (a module's optional CHECKS).
        validate(config, module.FIELDS, getattr(module, "CHECKS", ()))
    except FieldError as e:
        raise UsageError(str(e)) from None
    return config


def run_experiment(
    name: str,
    registry: dict[str, ModuleType],
    *,
    scale: str = "quick",
    workdir: str | None = None,
    seed: int | None = None,
    data_dir: str | None = None,
    resume: bool = False,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Runs one experiment end to end and returns its results.json contents."""
    module = get_experiment(name, registry)
    config = build_config(module, scale=scale, seed=seed, data_dir=data_dir, overrides=overrides)
    workdir = workdir or os.path.join("runs", name, scale)
    check_workdir(workdir)
    config.resume = resume  # read by experiments that use the training loop
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json(indent=2))
    start = time.perf_counter()
    try:
        metrics = module.run(config, workdir)
    except DataError as e:
        raise DataMissing(str(e)) from None
    except CheckpointError as e:  # --resume over a damaged or foreign checkpoint
        raise UsageError(str(e)) from None
    results = write_results(
        workdir,
        name=name,
        scale=scale,
        paper=module.PAPER,
        metrics=metrics,
        wall_time_s=time.perf_counter() - start,
    )
    results["workdir"] = workdir
    return results


def run_all(
    registry: dict[str, ModuleType],
    *,
    scale: str = "quick",
    workdir: str = "runs",
    seed: int | None = None,
    data_dir: str | None = None,
    names: Sequence[str] | None = None,
    report_path: str = "REPORT.md",
) -> list[dict[str, Any]]:
    """Runs every experiment (a failure is recorded, not fatal) and writes REPORT.md."""
    check_workdir(workdir)
    results = []
    for name in names or list(registry):
        sub = os.path.join(workdir, name, scale)
        print(f"== {name} ({scale})", flush=True)
        try:
            results.append(
                run_experiment(
                    name, registry, scale=scale, workdir=sub, seed=seed, data_dir=data_dir
                )
            )
        except DataMissing as e:  # e.g. MNIST not prepared: skipped, and the report says why
            results.append({"experiment": name, "scale": scale, "workdir": sub, "skipped": str(e)})
        except Exception as e:  # noqa: BLE001 - one broken experiment must not hide the others
            traceback.print_exc()
            results.append(
                {
                    "experiment": name,
                    "scale": scale,
                    "workdir": sub,
                    "error": f"{type(e).__name__}: {e}".splitlines()[0],
                }
            )
        r = results[-1]
        status = (
            "error"
            if "error" in r
            else "skipped"
            if "skipped" in r
            else "PASS"
            if r["passed"]
            else "FAIL"
        )
        print(f"   {name}: {status}", flush=True)
    root = os.path.dirname(os.path.abspath(report_path))
    for r in results:
        r["workdir"] = os.path.abspath(r["workdir"])
    with open(report_path, "w") as f:
        f.write(report_markdown(results, root=root))
    with open(os.path.join(workdir, f"all_{scale}.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


def list_lines(registry: dict[str, ModuleType]) -> list[str]:
    """`name  one line  (paper)` per experiment, from each module's docstring and PAPER."""
    width = max(map(len, registry))
    lines = []
    for name, module in registry.items():
        summary = (module.__doc__ or "").strip().splitlines()[0]
        paper = module.PAPER.get("citation", "") if isinstance(module.PAPER, dict) else ""
        lines.append(f"{name:<{width}}  {summary}  [{paper}]")
    return lines
