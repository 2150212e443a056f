"""A tiny run of benchmarks/vae_step.py so that it keeps working: structure, the analytic FLOP
count and the loss parity of JAX and eager PyTorch (same weights, batch and noise). Never asserts
on speed (see tests/test_benchmarks_smoke.py)."""

import json

import numpy as np
import pytest

from benchmarks import vae_step
from tests.test_benchmarks_smoke import check_ratio


def test_forward_macs_closed_form():
    # 784-3-2 encoder (mean and logvar heads), 2-3-784 decoder
    assert vae_step.forward_macs((3,), 2) == [784 * 3, 2 * 3 * 2, 2 * 3, 3 * 784]
    f = vae_step.step_flops((3,), 2, batch=5)
    assert f["model"] == 6 * 5 * (784 * 3 + 12 + 6 + 3 * 784)
    assert f["matmul_executed"] == f["model"] - 2 * 5 * 784 * 3


def test_vae_step_structure_and_parity(tmp_path, capsys):
    path = tmp_path / "vae.json"
    argv = ["--steps", "1", "--repeats", "1", "--batch", "8", "--hidden", "16", "--latent", "4"]
    res = vae_step.main(argv + ["--no-torch-compile", "--json", str(path)])
    assert json.loads(path.read_text())["ratios"] == pytest.approx(res["ratios"])
    assert "images/s" in capsys.readouterr().out
    # encoder 784x16+16, heads 2 x (16x4+4), decoder 4x16+16, 16x784+784
    assert res["param_count"] == 784 * 16 + 16 + 2 * (16 * 4 + 4) + 4 * 16 + 16 + 16 * 784 + 784
    results = res["results"]
    if "torch eager" not in results:
        assert set(results) == {"jax"} and "torch" in res["notes"]
        return
    assert set(results) == {"jax", "torch eager"}
    np.testing.assert_allclose(
        results["jax"]["warmup_losses"], results["torch eager"]["warmup_losses"], rtol=1e-5
    )
    assert res["parity_max_abs_loss_diff"] < 1e-2
    num, den = results["jax"], results["torch eager"]
    check_ratio(res["ratios"], res["notes"], "jax_over_torch_eager", num, den, quiet=False)
    quiet = "jax_quiet_over_torch_eager_quiet"
    check_ratio(res["ratios"], res["notes"], quiet, num, den, quiet=True)
    assert set(res["ratios"]) == {"jax_over_torch_eager", quiet}
