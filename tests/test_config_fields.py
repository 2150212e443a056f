"""Config validation: every field of every experiment declares what it accepts (FIELDS), and
every bad value, typed on the command line, is one line on stderr and exit status 2."""

import pytest

import run
from experiments import EXPERIMENTS
from experiments._fields import (
    SCALES,
    Bool,
    Choice,
    Dir,
    FieldError,
    Float,
    Int,
    Tuple,
    Where,
    as_text,
    check_coverage,
    leaves,
    validate,
)


def _cases():
    for name, module in EXPERIMENTS.items():
        for field, spec in module.FIELDS.items():
            for bad in spec.bad_values():
                yield pytest.param(name, field, as_text(bad), id=f"{name}.{field}={as_text(bad)}")


CASES = list(_cases())


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_fields_declare_exactly_the_config_and_accept_its_defaults(name, scale):
    module = EXPERIMENTS[name]
    config = module.get_config(scale)
    check_coverage(module.FIELDS, config, name)
    validate(config, module.FIELDS, getattr(module, "CHECKS", ()))


def test_sweep_covers_every_field_with_a_wrong_type():
    fields = {(n, f) for n, m in EXPERIMENTS.items() for f in m.FIELDS}
    covered = {(c.values[0], c.values[1]) for c in CASES}
    assert covered == fields
    assert len(fields) >= 190  # 14 experiments; new ones add to it automatically
    with_range = {
        (n, f)
        for n, m in EXPERIMENTS.items()
        for f, spec in m.FIELDS.items()
        if len(spec.bad_values()) > 1
    }
    assert len(with_range) > len(fields) // 2  # most fields also get an out-of-range value


@pytest.mark.parametrize("name, field, text", CASES)
def test_every_bad_value_is_one_line_and_status_2(name, field, text, capsys, monkeypatch, tmp_path):
    def must_not_run(config, workdir):
        raise AssertionError(f"{name} ran with --config.{field}={text}")

    monkeypatch.setattr(EXPERIMENTS[name], "run", must_not_run)
    argv = [name, "--scale", "smoke", "--workdir", str(tmp_path), f"--config.{field}={text}"]
    code = run.main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    assert err.startswith(f"run.py: error: config field {field!r} must be "), err
    assert "Traceback" not in err and out == ""


# ----------------------------------------------------------------------------------------------
# The specs themselves, against hand-derived cases.


@pytest.mark.parametrize(
    "spec, good, bad",
    [
        (Int(lo=1), [1, 10**9], [0, -5, 1.0, True, "1", None]),
        (Int(0, 3), [0, 3], [-1, 4]),
        (Float(0.0, 1.0, hi_open=True), [0.0, 0.999], [1.0, 1.5, -0.1, float("nan"), 1]),
        (Float(lo=0.0, lo_open=True), [1e-30, 1e30], [0.0, -1.0, float("inf")]),
        (Bool(), [True, False], [0, 1, "true", None]),
        (Choice(("relu", "tanh")), ["relu", "tanh"], ["foo", "", 1, None]),
        (Tuple(Int(lo=1)), [(1,), (64, 32)], [(), (0,), (64, 0), 64, [64], "abc", (1.5,)]),
        (
            Tuple(Float(), min_len=2, max_len=2, increasing=True),
            [(-1.0, 1.0)],
            [(1.0, -1.0), (0.0,)],
        ),
        (Tuple((Choice(("a",)), Int(lo=2))), [("a", 2)], [("b", 2), ("a", 1), ("a",), ("a", 2, 3)]),
        (Where(Int(lo=1), lambda n: n % 2 == 0, "even"), [2, 4], [0, 3, "abc"]),
    ],
)
def test_specs_accept_and_refuse(spec, good, bad):
    for v in good:
        assert spec.problem(v) is None, v
    for v in bad:
        assert spec.problem(v) is not None, v
    for v in spec.bad_values():
        assert spec.problem(spec.coerce(v, as_text(v))) is not None, v


def test_dir_accepts_empty_and_existing(tmp_path):
    assert Dir().problem("") is None and Dir().problem(str(tmp_path)) is None
    assert Dir().problem(str(tmp_path / "absent")) is not None


def test_coerce_takes_ints_for_floats_and_scalars_for_tuples():
    assert Float().coerce(2, "2") == 2.0 and isinstance(Float().coerce(2, "2"), float)
    assert Tuple(Int(lo=1)).coerce(64, "64") == (64,)
    assert Tuple(Int(lo=1)).coerce([64, 32], "[64, 32]") == (64, 32)
    assert Tuple(Choice(("adam", "sgd"))).coerce("adam", "adam") == ("adam",)
    assert Choice(("1",)).coerce(1, "1") == "1"


def test_messages_name_field_value_and_what_is_valid():
    module = EXPERIMENTS["digits_mlp"]
    config = module.get_config("smoke")
    config.dropout = 1.5
    with pytest.raises(FieldError, match=r"^config field 'dropout' must be in \[0, 1\); got 1.5$"):
        validate(config, module.FIELDS)
    assert Int(lo=1).problem("abc") == "an int >= 1"
    assert Tuple(Int(lo=1)).describe() == "a tuple of ints >= 1"


def test_nested_fields_are_dotted():
    config = EXPERIMENTS["optimizers_digits"].get_config("smoke")
    assert "learning_rates.adam" in leaves(config)
    with pytest.raises(TypeError, match="missing"):
        check_coverage({}, config, "optimizers_digits")
