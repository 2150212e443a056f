"""The command line: listing, overrides, and one-line errors with exit status 2."""

import os
import subprocess
import sys

import pytest

import run
from experiments import EXPERIMENTS
from experiments._runner import UsageError, apply_overrides, build_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(capsys, *argv):
    code = run.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_every_experiment(capsys):
    code, out, _ = _main(capsys, "--list")
    assert code == 0
    for name in EXPERIMENTS:
        assert name in out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["digits_mpl"], "did you mean digits_mlp"),
        (
            ["digits_mlp", "--config.nope=1"],
            "unknown config field 'nope'; valid fields: activation, batch_size",
        ),
        (["digits_mlp", "--config.learning_rate=fast"], "'learning_rate' must be a float > 0"),
        (["digits_mlp", "--config.hidden=abc"], "'hidden' must be a tuple of ints >= 1"),
        (["digits_mlp", "--config.batch_size=0"], "'batch_size' must be >= 1; got '0'"),
        (["digits_mlp", "--config.batch_size=-5"], "'batch_size' must be >= 1; got '-5'"),
        (["digits_mlp", "--config.activation=foo"], "'activation' must be one of sigmoid, tanh"),
        (["digits_mlp", "--config.dropout=1.5"], "'dropout' must be in [0, 1); got '1.5'"),
        (["digits_mlp", "--config.num_epochs=0"], "'num_epochs' must be >= 1; got '0'"),
        (
            ["ensembles", "--config.members=4", "--config.ensemble_sizes=(1, 3)"],
            "'ensemble_sizes' must hold sizes that each divide members; got ensemble_sizes=(1, 3)",
        ),
        (["digits_mlp", "--seed", "-1"], "'seed' must be in [0, 4294967295]; got '-1'"),
        (["digits_mlp", "--data-dir", "/no/such/dir"], "'data_dir' must be an existing directory"),
        (["digits_mlp", "--scale", "huge"], "unknown scale 'huge'"),
        (["digits_mlp", "--seed", "x"], "invalid int value"),
        (["digits_mlp", "--bogus"], "unrecognized argument"),
        (["digits_mlp", "--workdir", "/proc/no_such_dir"], "cannot write to workdir"),
    ],
)
def test_bad_input_is_one_line_and_status_2(capsys, argv, expected):
    try:
        code, _out, err = _main(capsys, *argv)
    except SystemExit as e:  # argparse-level errors exit from parse()
        code = e.code
        _out, err = capsys.readouterr()
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_missing_data_says_where_it_looked(tmp_path):
    if "mnist_mlp" not in EXPERIMENTS:
        pytest.skip("mnist_mlp not registered")
    empty = tmp_path / "empty"
    empty.mkdir()
    # A subprocess, so that anything a library logs (tfds' absl WARNINGs) is on this stderr too.
    p = subprocess.run(
        [
            sys.executable,
            "run.py",
            "mnist_mlp",
            "--scale",
            "smoke",
            "--data-dir",
            str(empty),
            "--workdir",
            str(tmp_path / "w"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("run.py: error: mnist not found")
    assert f"{empty} (--data-dir)" in p.stderr and "train-images-idx3-ubyte.gz" in p.stderr


def test_overrides_are_type_checked():
    config = build_config(
        EXPERIMENTS["digits_mlp"],
        scale="smoke",
        overrides=["hidden=(32, 16)", "learning_rate=1", "dropout=0.5"],
    )
    assert config.hidden == (32, 16) and config.learning_rate == 1.0
    assert isinstance(config.learning_rate, float)
    fields = EXPERIMENTS["digits_mlp"].FIELDS
    with pytest.raises(UsageError, match="must be an int >= 1; got '0.5'"):
        apply_overrides(config, ["batch_size=0.5"], fields)
    with pytest.raises(UsageError, match="must look like"):
        apply_overrides(config, ["batch_size"], fields)
    apply_overrides(config, ["hidden=64"], fields)  # a scalar where a tuple is expected
    assert config.hidden == (64,)


def test_subprocess_exit_status_and_single_line():
    p = subprocess.run(
        [sys.executable, "run.py", "no_such_experiment"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "unknown experiment" in p.stderr


def test_run_all_writes_report(tmp_path, monkeypatch):
    from experiments._runner import run_all

    report = tmp_path / "REPORT.md"
    results = run_all(
        {"digits_mlp": EXPERIMENTS["digits_mlp"]},
        scale="smoke",
        workdir=str(tmp_path / "runs"),
        report_path=str(report),
    )
    text = report.read_text()
    assert "| digits_mlp | smoke |" in text and "curves.png" in text
    assert os.path.exists(os.path.join(results[0]["workdir"], "results.json"))


def test_default_run_is_digits_mlp(capsys, tmp_path, monkeypatch):
    called = {}

    def fake(name, registry, **kw):
        called.update(name=name, **kw)
        return {"workdir": "w", "bars": []}

    monkeypatch.setattr("experiments._runner.run_experiment", fake)
    code, out, _ = _main(capsys, "--scale", "smoke")
    assert code == 0 and called["name"] == "digits_mlp" and "--list" in out
