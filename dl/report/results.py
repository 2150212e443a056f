"""results.json: what an experiment measured, against which paper number, and whether it passed.

Every experiment's `run(config, workdir)` returns a dict of metrics that may carry a list of
`Bar`s under the key "bars"; `write_results` records them with the environment so that a number
in REPORT.md can always be traced to the machine and versions that produced it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
from typing import Any


@dataclasses.dataclass(frozen=True)
class Bar:
    """One checked claim. `target` is human-readable (">= 0.975"); `paper` is the published figure."""

    name: str
    ours: float
    target: str
    passed: bool
    paper: str = ""


def at_least(name: str, ours: float, bound: float, *, paper: str = "") -> Bar:
    return Bar(name, float(ours), f">= {bound:g}", bool(ours >= bound), paper)


def at_most(name: str, ours: float, bound: float, *, paper: str = "") -> Bar:
    return Bar(name, float(ours), f"<= {bound:g}", bool(ours <= bound), paper)


def environment() -> dict[str, Any]:
    """Versions and devices; imported lazily so `dl.report` itself needs no jax."""
    import flax
    import jax
    import numpy as np
    import optax

    devices = jax.devices()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "device": devices[0].device_kind,
        "device_count": len(devices),
        "cpu_count": os.cpu_count(),
    }


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Bar):
        return _jsonable(dataclasses.asdict(x))
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:  # numpy / jax scalars
        x = x.item()
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)  # JSON has no inf/nan; keep them visible rather than invalid
    return x


def write_results(
    workdir: str, *, name: str, scale: str, paper: Any, metrics: dict[str, Any], wall_time_s: float
) -> dict[str, Any]:
    """Writes `workdir/results.json` and returns what it wrote.

    `metrics["bars"]` (if present) is a list of `Bar`; the run passes iff every bar passes (a run
    with no bars has `passed: null`, so nothing is silently called a pass).
    """
    metrics = dict(metrics)
    bars = list(metrics.pop("bars", []))
    results = {
        "experiment": name,
        "scale": scale,
        "paper": paper,
        "metrics": metrics,
        "bars": bars,
        "passed": all(b.passed for b in bars) if bars else None,
        "wall_time_s": wall_time_s,
        "environment": environment(),
    }
    results = _jsonable(results)
    tmp = os.path.join(workdir, "results.json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2, sort_keys=False)
    os.replace(tmp, os.path.join(workdir, "results.json"))
    return results
