"""results.json and REPORT.md: bars, pass/fail, skipped and errored rows, JSON-safe values."""

import json

import numpy as np

from dl.report import Bar, at_least, at_most, report_markdown, write_results


def test_bars_compare_in_the_right_direction():
    assert at_least("a", 0.98, 0.975).passed and not at_least("a", 0.97, 0.975).passed
    assert at_most("e", 1.2, 1.35).passed and not at_most("e", 1.4, 1.35).passed
    assert at_least("a", 0.975, 0.975).passed  # the bound itself passes


def test_write_results_records_everything_and_is_valid_json(tmp_path):
    metrics = {
        "acc": np.float32(0.5),
        "curve": np.arange(3),
        "bad": float("nan"),
        "bars": [at_least("acc", 0.5, 0.4, paper="0.6"), Bar("x", 1.0, "== 1", False)],
    }
    r = write_results(
        str(tmp_path),
        name="e",
        scale="quick",
        paper={"citation": "c"},
        metrics=metrics,
        wall_time_s=1.5,
    )
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == r
    assert (
        r["passed"] is False and r["metrics"]["acc"] == 0.5 and r["metrics"]["curve"] == [0, 1, 2]
    )
    assert r["metrics"]["bad"] == "nan"
    assert {"jax", "device", "device_count", "python"} <= set(r["environment"])


def test_no_bars_is_not_a_pass(tmp_path):
    r = write_results(str(tmp_path), name="e", scale="smoke", paper={}, metrics={}, wall_time_s=0)
    assert r["passed"] is None


def test_report_table_rows(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "curves.png").write_bytes(b"")
    ok = {
        "experiment": "a",
        "scale": "quick",
        "workdir": str(tmp_path / "a"),
        "wall_time_s": 1.0,
        "environment": {"device": "cpu", "device_count": 1},
        "bars": [{"name": "acc", "paper": "0.9", "ours": 0.95, "target": ">= 0.9", "passed": True}],
    }
    skipped = {"experiment": "m", "scale": "quick", "workdir": "m", "skipped": "mnist not found"}
    broken = {"experiment": "b", "scale": "quick", "workdir": "b", "error": "ValueError: x"}
    text = report_markdown([ok, skipped, broken], root=str(tmp_path))
    assert "| a | quick | acc | 0.9 | 0.95 | >= 0.9 | PASS | [curves.png](a/curves.png) |" in text
    assert "SKIPPED" in text and "| ValueError: x |" in text and "FAIL" in text
    assert "1 of 2 bars pass; 1 experiment skipped." in text
