"""REPORT.md: one table of paper vs ours vs bar vs pass over many experiments' results.json."""

from __future__ import annotations

import glob
import os
from typing import Any


def _fmt(x: Any) -> str:
    """One table cell: 4 significant digits, and '|' escaped so it cannot split the row."""
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x).replace("|", "\\|")


def report_markdown(results: list[dict[str, Any]], *, root: str) -> str:
    """Markdown for `results` (each a results.json dict with a "workdir" key); links are relative
    to `root`, the folder REPORT.md is written in."""
    lines = [
        "# Report: paper vs ours",
        "",
        "| experiment | scale | bar | paper | ours | target | pass | plots |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    n_pass = n_bars = n_skip = 0
    for r in results:
        workdir = r["workdir"]
        plots = sorted(glob.glob(os.path.join(workdir, "*.png")))
        links = " ".join(f"[{os.path.basename(p)}]({os.path.relpath(p, root)})" for p in plots)
        if "skipped" in r:
            n_skip += 1
            lines.append(
                f"| {r['experiment']} | {r.get('scale', '')} | {_fmt(r['skipped'])} | | | | SKIPPED | |"
            )
            continue
        bars = r.get("bars") or [
            {
                "name": r.get("error", "no bar checked at this scale"),
                "paper": "",
                "ours": "",
                "target": "",
                "passed": False if "error" in r else None,
            }
        ]
        for i, b in enumerate(bars):
            n_bars += 1
            n_pass += b["passed"] is True
            verdict = {True: "PASS", False: "FAIL", None: "-"}[b["passed"]]
            lines.append(
                f"| {r['experiment'] if i == 0 else ''} | {r.get('scale', '') if i == 0 else ''} "
                f"| {_fmt(b['name'])} | {_fmt(b['paper'])} | {_fmt(b['ours'])} | {_fmt(b['target'])} "
                f"| {verdict} | {links if i == 0 else ''} |"
            )
    lines += [
        "",
        f"{n_pass} of {n_bars} bars pass; {n_skip} experiment{'' if n_skip == 1 else 's'} skipped.",
        "",
    ]
    for r in results:
        if "wall_time_s" in r:
            lines.append(
                f"- `{r['experiment']}`: {r['wall_time_s']:.1f} s on "
                f"{r['environment']['device']} x{r['environment']['device_count']}"
            )
    return "\n".join(lines) + "\n"
