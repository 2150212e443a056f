"""Everything `run.py` does, importable and tested: look up an experiment, build and override
its config, check the workdir, run it, write config.json / results.json, and REPORT.md for many.

User mistakes raise `UsageError`, whose message is one line; `run.py` prints it and exits 2.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import time
import traceback
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import ml_collections

from dl.data import DataError
from dl.report import report_markdown, write_results

SCALES = ("smoke", "quick", "full")


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


def _field_names(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    names = []
    for k, v in config.items():
        names.append(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            names += _field_names(v, prefix + k + ".")
    return names


def _parse_value(text: str) -> Any:
    """Python literals (1, 0.5, True, None, (64, 64), 'a'); anything else stays a string."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Applies `FIELD=VALUE` strings (dotted fields for nested configs), type-checked by the
    ConfigDict against the field's current type (an int is accepted where a float is expected)."""
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"override {item!r} must look like --config.FIELD=VALUE")
        field, text = item.split("=", 1)
        *parents, leaf = field.split(".")
        node = config
        for p in parents:
            node = node.get(p) if isinstance(node, ml_collections.ConfigDict) else None
        if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
            raise UsageError(
                f"unknown config field {field!r}; valid fields: {', '.join(_field_names(config))}"
            )
        old = node[leaf]
        value = _parse_value(text)
        if isinstance(old, (tuple, list)) and isinstance(value, (int, float)):
            value = (value,)
        if isinstance(old, str) and not isinstance(value, str):
            value = text  # "--config.activation=1" on a string field keeps the text
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (
            old is not None
            and not isinstance(value, type(old))
            and not (isinstance(old, tuple) and isinstance(value, list))
        ):
            raise UsageError(
                f"config field {field!r} takes a {type(old).__name__} (now {old!r}); got {text!r}"
            )
        try:
            node[leaf] = tuple(value) if isinstance(old, tuple) else value
        except TypeError as e:
            raise UsageError(f"config field {field!r}: {e}".splitlines()[0]) from None


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
    if seed is not None:
        config.seed = seed
    if data_dir is not None:
        config.data_dir = data_dir
    apply_overrides(config, overrides)
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
