"""A tiny run of benchmarks/gan_step.py: structure, the analytic counts and, above all, parity
of the first D and G losses with PyTorch eager on copied weights and the same latents. Never
asserts on speed (see tests/test_benchmarks_smoke.py)."""

import json

import pytest

from benchmarks import gan_step


def test_step_flops_closed_form():
    # widths (2, 3, 4, 5), latent 100, batch 2: M_G = 100*49*2 + 49*16*2*3 + 196*16*3,
    # M_D = 196*16*4 + 49*16*4*5 + 49*5; model = 2 B (4 M_G + 9 M_D).
    f = gan_step.step_flops((2, 3, 4, 5), 2)
    m_g, m_d = 9800 + 4704 + 9408, 12544 + 15680 + 245
    assert (f["generator"], f["discriminator"]) == (m_g, m_d)
    assert f["model"] == 2 * 2 * (4 * m_g + 9 * m_d)


def test_gan_step_structure_and_parity(tmp_path, capsys):
    path = tmp_path / "gan.json"
    argv = ["--steps", "1", "--repeats", "1", "--batch", "4", "--widths", "2", "3", "2", "3"]
    res = gan_step.main(argv + ["--no-torch-compile", "--json", str(path)])
    assert json.loads(path.read_text())["ratios"] == pytest.approx(res["ratios"], nan_ok=True)
    assert "goal >= 1.0" in capsys.readouterr().out
    # G: dense 100 x 98 + BN 196 + convT 4*4*2*3 + BN 6 + convT 4*4*3 + 1;
    # D: conv 16*2 + 2, conv 4*4*2*3 (no bias), BN 6, dense 147 + 1
    assert res["param_count"] == (9800 + 196 + 96 + 6 + 49) + (34 + 96 + 6 + 148)
    results = res["results"]
    if "torch eager" not in results:
        assert set(results) == {"jax (dl engine)"} and "torch" in res["notes"]
        return
    assert set(results) == {"jax (dl engine)", "torch eager"}
    # 3 warm-up steps of (d_loss, g_loss), equal on both sides: same weights, batch and z.
    assert len(results["torch eager"]["warmup_losses"]) == 2 * gan_step.WARMUP_STEPS
    assert res["parity_max_abs_loss_diff"] < 1e-4, res["parity_max_abs_loss_diff"]
    j, t = results["jax (dl engine)"], results["torch eager"]
    assert res["ratios"]["jax_over_torch_eager"] == pytest.approx(
        j["steps_per_s"] / t["steps_per_s"]
    )
    quiet = res["ratios"]["jax_quiet_over_torch_eager_quiet"]
    assert (quiet is None) == ("jax_quiet_over_torch_eager_quiet" in res["notes"])
