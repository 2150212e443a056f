"""A tiny run of benchmarks.conv: structure, parity and the FLOP count, never a timing (the suite
must pass while other processes hold every core)."""

import json

import pytest

from benchmarks import conv as bench
from dl.ops.conv import IMPLS


def test_conv_flops_closed_form():
    # 2 N H' W' k k C O: 2 * 128 * 28 * 28 * 25 * 32 * 64 = 10.28 GFLOP forward; x2, x3 with grads.
    assert bench.conv_flops(bench.SHAPE, "fwd") == 10_276_044_800
    assert bench.conv_flops(bench.SHAPE, "fwd_grads") == 3 * 10_276_044_800
    strided = bench.SHAPES["5x5_64to128_28_s2"]
    assert bench.out_size(strided) == 14  # ceil(28 / 2)


def test_conv_benchmark_parity_and_structure():
    shape = {"batch": 2, "size": 6, "in": 2, "out": 4, "kernel": 3, "stride": 2}
    res = bench.benchmark(steps=1, repeats=1, shape=shape, peak_sizes=(64,), peak_repeats=1)
    assert set(res["results"]) == set(bench.MODES)
    for mode, by_impl in res["results"].items():
        assert set(IMPLS) <= set(by_impl)
        # Every implementation computes the same output and gradients as the reference.
        assert all(v < 1e-5 for v in res["parity_relative_max_abs_diff"][mode].values()), mode
        for r in by_impl.values():
            assert r["cpu_ms_per_call"] >= 0 and r["ms_per_step"] > 0
    ref = "torch" if "torch" in res["results"]["fwd"] else None
    keys = {f"{i}_over_xla_{m}" for i in IMPLS if i != "xla" for m in bench.MODES}
    if ref:
        keys |= {f"{i}_over_torch_{m}" for i in IMPLS for m in bench.MODES}
    assert keys <= set(res["ratios"])
    for key, value in res["ratios"].items():
        # Either a ratio, or (quiet figures on a busy machine) null with the reason in the notes.
        assert value is None and "no quiet repeats" in res["notes"][key] or value > 0
    json.dumps(res, allow_nan=False)


def test_conv_benchmark_cli_writes_json(tmp_path, monkeypatch):
    monkeypatch.setitem(
        bench.SHAPES, "tiny", {"batch": 1, "size": 4, "in": 1, "out": 2, "kernel": 3, "stride": 1}
    )
    path = tmp_path / "conv.json"
    with pytest.raises(SystemExit):  # argparse rejects an unknown shape name
        bench.main(["--shape", "nope"])
    args = ["--shape", "tiny", "--steps", "1", "--repeats", "1", "--peak-sizes", "64"]
    res = bench.main([*args, "--peak-repeats", "1", "--json", str(path)])
    assert json.loads(path.read_text())["ratios"] == json.loads(json.dumps(res["ratios"]))
