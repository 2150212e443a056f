"""A tiny run of the benchmark harness so that it keeps working. Never asserts on speed: the
figures depend on the machine and its load; only plumbing, parity and the analytic counts are
checked. Whether a repeat counts as quiet depends on the load too, so a quiet figure is checked
in either state it can be in (a value, or null with a note), and the null state on its own with
synthetic inputs: the suite must pass while other processes hold every core."""

import json
import math
import os

import numpy as np
import pytest

from benchmarks import matmul_peak, mlp_step, sparsemax, sweep_vmap, sweep_vmap_torch


def check_ratio(ratios: dict, notes: dict, key: str, num: dict, den: dict, *, quiet: bool):
    """`ratios[key]` is num's steps/s over den's (both `summarize` results), over the quiet
    repeats if `quiet`; when a side had none it is None and `notes` says why. Either state is
    fine: which one a run lands in depends on the machine's load, not on the code."""
    field = "quiet_steps_per_s" if quiet else "steps_per_s"
    if num[field] is None or den[field] is None:
        assert quiet and min(num["quiet_repeats"], den["quiet_repeats"]) == 0
        assert ratios[key] is None and "no quiet repeats" in notes[key]
    else:
        assert ratios[key] == pytest.approx(num[field] / den[field]) and key not in notes


def test_step_flops_closed_form():
    # widths (3, 4, 2), batch 5: sum d_{l-1} d_l = 12 + 8 = 20; P = 12 + 4 + 8 + 2 = 26.
    f = mlp_step.step_flops((3, 4, 2), 5)
    assert f["model"] == 6 * 5 * 20
    assert f["matmul_executed"] == 6 * 5 * 20 - 2 * 5 * 3 * 4
    assert f["params"] == 26
    # bias 2*5*(4+2), relu 2*5*4, softmax-CE 5*5*2, momentum SGD 4*26
    assert f["elementwise"] == 60 + 40 + 50 + 104


def test_others_busy_closed_form():
    # 2 s of wall time, the machine busy for 3 CPU-s of which we used 1: the others kept
    # 2 CPU-s busy out of 2 * cpu_count available.
    got = mlp_step.others_busy((0.0, 10.0, 1.0), (2.0, 13.0, 2.0))
    assert got == pytest.approx(2.0 / (2.0 * os.cpu_count()))
    assert mlp_step.others_busy((0.0, 10.0, 1.0), (1.0, 10.5, 1.5)) == 0.0  # only us
    # A tick more busy time than the window holds (clock-tick rounding) still reads as 1.
    assert mlp_step.others_busy((0.0, 0.0, 0.0), (0.01, 0.03, 0.0)) == 1.0
    assert math.isnan(mlp_step.others_busy(None, (1.0, 1.0, 1.0)))
    snap = mlp_step.cpu_snapshot()
    assert snap is None or all(v >= 0 for v in snap)


def test_summarize_quiet_repeats():
    # Repeats of 10 steps; the second had other processes on half the machine: it is dropped
    # from the quiet median (of 1, 3, 10 s -> 3 s) but kept in the plain one (2.5 s).
    flops = {"model": 2e9, "matmul_executed": 1e9, "elementwise": 0}
    r = mlp_step.summarize([1.0, 2.0, 3.0, 10.0], [0.0, 0.5, 0.05, 0.0], steps=10, flops=flops)
    assert r["steps_per_s"] == pytest.approx(4.0)
    assert r["quiet_steps_per_s"] == pytest.approx(10 / 3)
    assert r["quiet_repeats"] == 3
    assert r["best_steps_per_s"] == pytest.approx(10.0)
    assert r["gflops"] == pytest.approx(8.0) and r["executed_gflops"] == pytest.approx(4.0)
    # Every repeat contended (a busy machine): no quiet figures, null rather than NaN.
    none_quiet = mlp_step.summarize([1.0, 2.0], [0.9, 0.2], steps=1, flops=flops)
    assert none_quiet["quiet_repeats"] == 0
    assert none_quiet["quiet_steps_per_s"] is None and none_quiet["quiet_gflops"] is None
    assert json.loads(json.dumps(none_quiet, allow_nan=False))["quiet_steps_per_s"] is None


def test_speed_ratio_of_no_quiet_repeats_is_null_with_the_reason():
    flops = {"model": 1, "matmul_executed": 1, "elementwise": 0}
    quiet = mlp_step.summarize([1.0, 1.0], [0.0, 0.0], steps=4, flops=flops)
    busy = mlp_step.summarize([2.0, 2.0], [0.5, 0.5], steps=4, flops=flops)
    assert mlp_step.speed_ratio(quiet, busy) == (pytest.approx(2.0), "")
    assert mlp_step.speed_ratio(quiet, quiet, quiet=True) == (pytest.approx(1.0), "")
    for a, b in ((quiet, busy), (busy, quiet)):
        ratio, why = mlp_step.speed_ratio(a, b, quiet=True)
        assert ratio is None and "no quiet repeats" in why and "0 of 2" in why


def test_matmul_peak_cli(tmp_path, capsys):
    path = tmp_path / "peak.json"
    res = matmul_peak.main(["--sizes", "64", "96", "--repeats", "1", "--json", str(path)])
    assert json.loads(path.read_text()) == json.loads(json.dumps(res))
    assert "jax" in res["gflops"] and set(res["gflops"]["jax"]) == {"64", "96"}
    assert res["peak_gflops"] == max(res["best_by_library"].values())
    assert all(v > 0 and math.isfinite(v) for v in res["best_by_library"].values())
    assert "peak:" in capsys.readouterr().out


def test_mlp_step_cli(tmp_path, capsys):
    path = tmp_path / "mlp.json"
    res = mlp_step.main(
        [
            "--steps",
            "2",
            "--repeats",
            "2",
            "--peak-sizes",
            "64",
            "--peak-repeats",
            "1",
            "--no-torch-compile",
            "--json",
            str(path),
        ]
    )
    assert json.loads(path.read_text())["ratios"] == pytest.approx(res["ratios"], nan_ok=True)
    assert "jax_over_peak" in capsys.readouterr().out
    busy = res["machine"]["others_busy_fraction"].values()
    assert all(math.isnan(v) or 0.0 <= v <= 1.0 for v in busy)  # NaN: no /proc/stat
    jax_res = res["results"]["jax (dl engine)"]
    assert len(jax_res["seconds"]) == 2 and all(s > 0 for s in jax_res["seconds"])
    assert jax_res["gflops"] == pytest.approx(jax_res["steps_per_s"] * res["flops"]["model"] / 1e9)
    # XLA's own count of the compiled step is independent of our formula: it must sit between
    # the executed matmuls and those plus a generous allowance for elementwise work and the
    # engine's norm metrics (a few passes over the 1.29M parameters).
    f = res["flops"]
    assert f["matmul_executed"] <= f["xla_cost_analysis"] <= f["matmul_executed"] + 20e6
    expected = {"jax_over_peak", "jax_quiet_over_peak", "jax_executed_over_peak"}
    if jax_res["quiet_gflops"] is None:
        assert res["ratios"]["jax_quiet_over_peak"] is None
        assert "no quiet repeat" in res["notes"]["jax_quiet_over_peak"]
    if "torch eager" in res["results"]:
        expected |= {"jax_over_torch_eager", "jax_quiet_over_torch_eager_quiet"}
        torch_res = res["results"]["torch eager"]
        for key, quiet in (
            ("jax_over_torch_eager", False),
            ("jax_quiet_over_torch_eager_quiet", True),
        ):
            check_ratio(res["ratios"], res["notes"], key, jax_res, torch_res, quiet=quiet)
        # Same initial parameters and batch: PyTorch's SGD-momentum must track the engine's losses,
        # otherwise the two sides are not timing the same computation.
        np.testing.assert_allclose(torch_res["warmup_losses"], jax_res["warmup_losses"], rtol=1e-5)
        assert res["parity_max_abs_loss_diff"] < 1e-4
    assert set(res["ratios"]) == expected


def test_sweep_vmap_torch_cli(tmp_path, capsys):
    pytest.importorskip("torch")
    path = tmp_path / "sweep.json"
    res = sweep_vmap.main(
        [
            "--steps",
            "4",
            "--models",
            "2",
            "--hidden",
            "4",
            "--batch-size",
            "4",
            "--repeats",
            "2",
            "--no-torch-compile",
            "--json",
            str(path),
        ]
    )
    main = res["main"]
    assert main["steps"] == 4 and main["models"] == 2
    assert json.loads(path.read_text())["main"]["torch"]["ratios"] == pytest.approx(
        main["torch"]["ratios"]
    )
    assert "torch vmap" in capsys.readouterr().out
    results, ratios, notes = (main["torch"][k] for k in ("results", "ratios", "notes"))
    assert set(results) == {"jax sweep", "torch sequential", "torch vmap"}
    for name in ("torch sequential", "torch vmap"):
        key = sweep_vmap_torch.ratio_key(name)
        check_ratio(ratios, notes, key, results["jax sweep"], results[name], quiet=False)
        check_ratio(ratios, notes, key + "_quiet", results["jax sweep"], results[name], quiet=True)
        assert len(results[name]["seconds"]) == 2 and all(s > 0 for s in results[name]["seconds"])
    # Same initial parameters, hyperparameters, batches and loss: each PyTorch implementation's
    # first losses of every model must be the JAX sweep's, otherwise the two sides do not time
    # the same trainings.
    losses = main["torch"]["parity_losses"]
    assert np.shape(losses["jax sweep"]) == (2, sweep_vmap_torch.PARITY_STEPS)
    for name in ("torch sequential", "torch vmap"):
        np.testing.assert_allclose(losses[name], losses["jax sweep"], rtol=0, atol=1e-5)
    assert main["torch"]["parity_max_abs_loss_diff"] < 1e-5


def test_sweep_vmap_no_torch():
    res = sweep_vmap.main(
        ["--steps", "2", "--models", "2", "--hidden", "4", "--batch-size", "4", "--repeats", "1"]
        + ["--no-torch"]
    )
    assert "torch" not in res["main"] and res["main"]["sweep_s"] > 0


def test_sparsemax_benchmark_parity():
    # One small shape: every implementation's value and gradient agree with JAX's sort path
    # (the benchmark checks this before timing; here it is the whole point).
    res = sparsemax.benchmark(repeats=1, torch_threads=1, shapes=((10, 8),))
    assert [(r["K"], r["B"], r["op"]) for r in res["rows"]] == [(10, 8, op) for op in sparsemax.OPS]
    for row in res["rows"]:
        names = {f"jax {m}" for m in sparsemax.JAX_METHODS}
        assert names <= set(row["ms"]) == set(row["parity_max_abs_diff"]) == set(row["others_busy"])
        assert all(v < 1e-5 for v in row["parity_max_abs_diff"].values()), row
        assert row["calls_per_repeat"] >= 1


def test_cnn_step_structure_and_parity(tmp_path, capsys):
    # Both models, every conv impl, eager PyTorch: the copied weights must give the same first
    # losses on every side (the benchmark checks this before timing; here it is the point).
    from benchmarks import cnn_step
    from dl.ops.conv import IMPLS

    path = tmp_path / "cnn.json"
    res = cnn_step.main(
        # A small batch: the structure and parity are the same at 128, the compile is cheaper.
        [
            "--steps",
            "1",
            "--repeats",
            "1",
            "--no-torch-compile",
            "--batch",
            "8",
            "--json",
            str(path),
        ]
    )
    assert json.loads(path.read_text())["ratios"] == pytest.approx(res["ratios"])
    assert "jax xla" in capsys.readouterr().out
    for name, counts in (("mnist_cnn", 3274634), ("lenet5", 61706)):
        r = res["models"][name]
        assert r["param_count"] == counts
        assert set(r["results"]) == {f"jax {i}" for i in IMPLS} | {"torch eager"}
        assert r["parity_max_abs_loss_diff"] < 1e-4, r["parity_max_abs_loss_diff"]
        for impl in IMPLS:
            key = cnn_step.ratio_key(impl, "torch eager")
            num, den = r["results"][f"jax {impl}"], r["results"]["torch eager"]
            check_ratio(r["ratios"], r["notes"], key, num, den, quiet=False)
            quiet = key.replace("_over_", "_quiet_over_", 1) + "_quiet"
            check_ratio(r["ratios"], r["notes"], quiet, num, den, quiet=True)
            assert res["ratios"][f"{name}_{key}"] == r["ratios"][key]
    assert "mnist_cnn_jax_over_torch_eager" in res["ratios"]


def test_lstm_step_structure_and_parity(tmp_path, capsys):
    # A tiny vocabulary and width (the structure and parity do not depend on them; the compile
    # and the steps are cheaper): the copied weights must give the same first losses in JAX
    # and eager PyTorch under clipped SGD with lr 1. A non-default unroll, so that the ratio
    # keys of a variant are exercised (one JAX compile: each costs seconds).
    from benchmarks import lstm_step

    path = tmp_path / "lstm.json"
    argv = ["--steps", "1", "--repeats", "1", "--vocab", "50", "--hidden", "8"]
    res = lstm_step.main(argv + ["--unroll", "2", "--no-torch-compile", "--json", str(path)])
    assert json.loads(path.read_text())["ratios"] == pytest.approx(res["ratios"])
    assert "tokens/s" in capsys.readouterr().out
    # embedding 50 x 8, two layers of (8 + 8) x 32 + 32, softmax 8 x 50 + 50
    assert res["param_count"] == 50 * 8 + 2 * (16 * 32 + 32) + 8 * 50 + 50
    names = {lstm_step.jax_name(2)}
    results = res["results"]
    tokens = lstm_step.BATCH * lstm_step.STEPS_UNROLLED
    for r in results.values():
        assert r["tokens_per_s"] == pytest.approx(r["steps_per_s"] * tokens)
    if "torch eager" not in results:
        assert set(results) == names and "torch" in res["notes"]
        return
    assert set(results) == names | {"torch eager"}
    assert res["parity_max_abs_loss_diff"] < 1e-3, res["parity_max_abs_loss_diff"]
    for name in names:
        np.testing.assert_allclose(
            results[name]["warmup_losses"], results["torch eager"]["warmup_losses"], rtol=1e-5
        )
    key = lstm_step.ratio_key(2, "torch eager")
    assert key == "jax_unroll2_over_torch_eager" and lstm_step.ratio_key(1, "torch.compile") == (
        "jax_over_torch_compile"
    )
    num, den = results[lstm_step.jax_name(2)], results["torch eager"]
    check_ratio(res["ratios"], res["notes"], key, num, den, quiet=False)
    quiet = key.replace("_over_", "_quiet_over_", 1) + "_quiet"
    check_ratio(res["ratios"], res["notes"], quiet, num, den, quiet=True)
    assert set(res["ratios"]) == {key, quiet}
