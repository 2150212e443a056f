"""A tiny run of the benchmark harness so that it keeps working. Never asserts on speed: the
figures depend on the machine and its load; only plumbing and the analytic counts are checked."""

import json
import math
import os

import numpy as np
import pytest

from benchmarks import matmul_peak, mlp_step, sweep_vmap, sweep_vmap_torch


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
    none_quiet = mlp_step.summarize([1.0], [0.9], steps=1, flops=flops)
    assert none_quiet["quiet_repeats"] == 0 and math.isnan(none_quiet["quiet_steps_per_s"])


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
    assert all(0.0 <= v <= 1.0 for v in res["machine"]["others_busy_fraction"].values())
    jax_res = res["results"]["jax (dl engine)"]
    assert len(jax_res["seconds"]) == 2 and all(s > 0 for s in jax_res["seconds"])
    assert jax_res["gflops"] == pytest.approx(jax_res["steps_per_s"] * res["flops"]["model"] / 1e9)
    # XLA's own count of the compiled step is independent of our formula: it must sit between
    # the executed matmuls and those plus a generous allowance for elementwise work and the
    # engine's norm metrics (a few passes over the 1.29M parameters).
    f = res["flops"]
    assert f["matmul_executed"] <= f["xla_cost_analysis"] <= f["matmul_executed"] + 20e6
    if "torch eager" in res["results"]:
        torch_res = res["results"]["torch eager"]
        ratio = jax_res["steps_per_s"] / torch_res["steps_per_s"]
        assert res["ratios"]["jax_over_torch_eager"] == pytest.approx(ratio)
        # Same initial parameters and batch: PyTorch's SGD-momentum must track the engine's losses,
        # otherwise the two sides are not timing the same computation.
        np.testing.assert_allclose(torch_res["warmup_losses"], jax_res["warmup_losses"], rtol=1e-5)
        assert res["parity_max_abs_loss_diff"] < 1e-4


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
    results = main["torch"]["results"]
    assert set(results) == {"jax sweep", "torch sequential", "torch vmap"}
    for name in ("torch sequential", "torch vmap"):
        ratio = results["jax sweep"]["steps_per_s"] / results[name]["steps_per_s"]
        assert main["torch"]["ratios"][sweep_vmap_torch.ratio_key(name)] == pytest.approx(ratio)
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
