"""Tiny runs of the seq2seq benchmarks (benchmarks/seq2seq_step.py, benchmarks/beam_decode.py)
so that they keep working: structure, loss parity with PyTorch and identical beam outputs,
never a timing."""

import json

import numpy as np
import pytest

from benchmarks import beam_decode, seq2seq_step

torch = pytest.importorskip("torch")


def test_seq2seq_step_structure_and_parity(tmp_path, capsys):
    path = tmp_path / "s2s.json"
    argv = ["--steps", "1", "--repeats", "1", "--vocab", "40", "--embed", "8", "--hidden", "8"]
    res = seq2seq_step.main(argv + ["--no-torch-compile", "--json", str(path)])
    assert json.loads(path.read_text())["ratios"] == pytest.approx(res["ratios"])
    assert "jax_over_torch_eager" in capsys.readouterr().out
    assert set(res["results"]) == {"jax", "torch eager"}
    # Adam on the same parameters and batch: the warm-up losses agree step after step.
    np.testing.assert_allclose(
        res["results"]["jax"]["warmup_losses"],
        res["results"]["torch eager"]["warmup_losses"],
        rtol=1e-5,
    )
    r = res["results"]
    assert res["ratios"]["jax_over_torch_eager"] == pytest.approx(
        r["jax"]["steps_per_s"] / r["torch eager"]["steps_per_s"]
    )


def test_beam_decode_same_outputs(tmp_path):
    path = tmp_path / "beam.json"
    argv = ["--sentences", "8", "--repeats", "1", "--vocab", "40", "--hidden", "8"]
    res = beam_decode.main(argv + ["--max-len", "6", "--json", str(path)])
    assert json.loads(path.read_text())["same_outputs"] == res["same_outputs"]
    assert res["same_outputs"] == 1.0
    assert 0.0 < res["ended_fraction"] <= 1.0
    assert res["ratios"]["jax_over_torch_eager"] > 0
