"""What each config field accepts, declared once per experiment and checked before anything runs.

Every experiment module has a `FIELDS` dict beside `get_config`: one spec per config field
(dotted names for nested ConfigDicts), saying its type, a numeric range, the names it may take,
or the shape of a tuple::

    FIELDS = {
        "batch_size": Int(lo=1),
        "dropout": Float(lo=0.0, hi=1.0, hi_open=True),
        "activation": Choice(ACTIVATIONS),
        "hidden": Tuple(Int(lo=1)),
        "data_dir": Dir(),
    }

`experiments._runner.build_config` parses each `--config.FIELD=VALUE` through its spec and then
checks the whole config with `validate`; a bad value is one line naming the field, the value and
what is valid (``config field 'dropout' must be in [0, 1); got 1.5``), and `run.py` exits 2.
Each spec also lists values it must refuse (`bad_values`), so the test suite sweeps every field
of every experiment, new ones included, without hand-written cases.
"""

from __future__ import annotations

import ast
import itertools
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import ml_collections


class FieldError(ValueError):
    """A config value that its field does not accept; the message is one line."""


def parse_text(text: str) -> Any:
    """A command-line value as a Python literal (1, 0.5, True, None, (64, 64), 'a'); anything
    that is not a literal stays the string it was."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


class Spec:
    """What one field accepts. Subclasses define `describe`, `problem` and `bad_values`."""

    def coerce(self, value: Any, text: str) -> Any:
        """The value to store for a parsed command-line `value` whose raw form was `text`."""
        del text
        return value

    def describe(self) -> str:
        """'an int >= 1', 'one of relu, tanh': the phrase after 'must be'."""
        raise NotImplementedError

    def plural(self) -> str:
        """'ints >= 1', 'names from relu, tanh': the phrase after 'a tuple of'."""
        raise NotImplementedError

    def problem(self, value: Any) -> str | None:
        """None if `value` is accepted, else what it must be ('in [0, 1)', 'an int >= 1')."""
        raise NotImplementedError

    def bad_values(self) -> list[Any]:
        """Values this field must refuse: one of a wrong type first, then any out of range (on
        the command line a string is its text, anything else its repr). The test suite sweeps
        these over every field of every experiment."""
        raise NotImplementedError


class Where(Spec):
    """`spec`, and also `test(value)`; `text` says what `test` asks ('a perfect square')."""

    def __init__(self, spec: Spec, test, text: str):
        self.spec, self.test, self.text = spec, test, text

    def coerce(self, value: Any, text: str) -> Any:
        return self.spec.coerce(value, text)

    def describe(self) -> str:
        return f"{self.spec.describe()} and {self.text}"

    def plural(self) -> str:
        return f"{self.spec.plural()} and {self.text}"

    def problem(self, value: Any) -> str | None:
        why = self.spec.problem(value)
        if why is None and not self.test(value):
            return self.text
        return why

    def bad_values(self) -> list[Any]:
        return self.spec.bad_values()


class _Number(Spec):
    kind = "number"

    def __init__(
        self,
        lo: float | None = None,
        hi: float | None = None,
        *,
        lo_open: bool = False,
        hi_open: bool = False,
    ):
        if lo is not None and hi is not None and not lo <= hi:
            raise ValueError(f"empty range [{lo}, {hi}]")
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open

    def range_text(self) -> str:
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            return f"in {'(' if self.lo_open else '['}{_num(lo)}, {_num(hi)}{')' if self.hi_open else ']'}"
        if lo is not None:
            return f"{'>' if self.lo_open else '>='} {_num(lo)}"
        if hi is not None:
            return f"{'<' if self.hi_open else '<='} {_num(hi)}"
        return ""

    def describe(self) -> str:
        article = "an" if self.kind[0] in "aeiou" else "a"
        return f"{article} {self.kind} {self.range_text()}".rstrip()

    def plural(self) -> str:
        return f"{self.kind}s {self.range_text()}".rstrip()

    def _is_type(self, value: Any) -> bool:
        raise NotImplementedError

    def _in_range(self, v: float) -> bool:
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return not (self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)))

    def problem(self, value: Any) -> str | None:
        if not self._is_type(value):
            return self.describe()
        if not self._in_range(value):
            return self.range_text()
        return None

    def _outside(self) -> list[Any]:
        out = []
        step = 1 if self.kind == "int" else 0.5
        if self.lo is not None:
            out.append(self.lo if self.lo_open else self.lo - step)
        if self.hi is not None:
            out.append(self.hi if self.hi_open else self.hi + step)
        return out

    def bad_values(self) -> list[Any]:
        return ["abc", *self._outside()]


class Int(_Number):
    """An int (not a bool) in an optional range."""

    kind = "int"

    def _is_type(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)


class Float(_Number):
    """A finite float in an optional range; an int is taken as the float it equals."""

    kind = "float"

    def coerce(self, value: Any, text: str) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    def _is_type(self, value: Any) -> bool:
        return isinstance(value, float) and math.isfinite(value)


class Bool(Spec):
    """True or False (on the command line: true/false, any case)."""

    def describe(self) -> str:
        return "true or false"

    def plural(self) -> str:
        return "booleans"

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else self.describe()

    def bad_values(self) -> list[Any]:
        return ["maybe"]


class Choice(Spec):
    """One of a fixed set of names (an activation, an optimizer, a dataset)."""

    def __init__(self, names: Iterable[str]):
        self.names = tuple(names)

    def coerce(self, value: Any, text: str) -> Any:
        return text if not isinstance(value, str) else value  # "--config.activation=1" is "1"

    def describe(self) -> str:
        return f"one of {', '.join(self.names)}"

    def plural(self) -> str:
        return f"names from {', '.join(self.names)}"

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, str) and value in self.names else self.describe()

    def bad_values(self) -> list[Any]:
        return [1, "no_such_name"]


class Dir(Spec):
    """A path: empty (meaning the default places) or an existing directory."""

    def coerce(self, value: Any, text: str) -> Any:
        return text

    def describe(self) -> str:
        return "an existing directory, or empty for the default places"

    def plural(self) -> str:
        return "existing directories"

    def problem(self, value: Any) -> str | None:
        if isinstance(value, str) and (value == "" or os.path.isdir(value)):
            return None
        return self.describe()

    def bad_values(self) -> list[Any]:
        return ["/no/such/dl/directory"]


class Tuple(Spec):
    """A tuple of items that each satisfy `item`, of a given length or length range.

    Args:
      item: the spec of every element, or a sequence of specs, one per position (a record such
        as ('uniform', 50)), which fixes the length.
      min_len, max_len: bounds on the length (ignored for a record).
      increasing: the elements must be strictly increasing (a (low, high) range).
    """

    def __init__(
        self,
        item: Spec | Sequence[Spec],
        *,
        min_len: int = 1,
        max_len: int | None = None,
        increasing: bool = False,
    ):
        self.items = tuple(item) if isinstance(item, Sequence) else None
        self.item = None if self.items is not None else item
        if self.items is not None:
            min_len = max_len = len(self.items)
        self.min_len, self.max_len, self.increasing = min_len, max_len, increasing

    def _spec(self, i: int) -> Spec:
        return self.items[i] if self.items is not None else self.item

    def coerce(self, value: Any, text: str) -> Any:
        if isinstance(value, list):
            value = tuple(value)
        if not isinstance(value, tuple):
            bare_name = isinstance(value, str) and isinstance(self.item, Choice)
            if (isinstance(value, str) and not bare_name) or self.items is not None:
                return value  # a wrong type, reported as such
            value = (value,)  # "--config.hidden=64" means (64,), "optimizers=adam" ("adam",)
        return tuple(self._spec(i).coerce(v, repr(v)) for i, v in enumerate(value[:256]))

    def _length_text(self) -> str:
        if self.max_len == self.min_len:
            return f"{self.min_len} "
        if self.max_len is not None:
            return f"{self.min_len} to {self.max_len} "
        return "" if self.min_len <= 1 else f"at least {self.min_len} "

    def describe(self) -> str:
        return f"a tuple of {self.plural()}"

    def plural(self) -> str:
        if self.items is not None:
            return f"({', '.join(s.describe() for s in self.items)})"
        order = ", increasing" if self.increasing else ""
        return f"{self._length_text()}{self.item.plural()}{order}"

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, tuple):
            return self.describe()
        n = len(value)
        if n < self.min_len or (self.max_len is not None and n > self.max_len):
            return self.describe()
        for i, v in enumerate(value):
            if self._spec(i).problem(v) is not None:
                return self.describe()
        if self.increasing and any(a >= b for a, b in itertools.pairwise(value)):
            return self.describe()
        return None

    def bad_values(self) -> list[Any]:
        out: list[Any] = ["abc"]
        first = self._spec(0).bad_values()
        if len(first) > 1:  # a tuple that is wrong in its first element only
            rest = [self._example(i) for i in range(1, self.min_len)]
            out.append((first[1], *rest))
        if self.max_len is not None and self.items is None:
            out.append(tuple(self._example(i) for i in range(self.max_len + 1)))
        return out

    def _example(self, i: int) -> Any:
        """A valid element for position i (increasing with i where the spec needs that)."""
        spec = self._spec(i)
        if isinstance(spec, Choice):
            return spec.names[0]
        if isinstance(spec, _Number):
            lo = spec.lo if spec.lo is not None else 0
            if spec.hi is not None:  # evenly inside [lo, hi], increasing with i
                v = lo + (spec.hi - lo) * (i + 1) / (self.min_len + (self.max_len or 0) + 3)
                return round(v) if spec.kind == "int" else float(v)
            v = lo + i + (1 if spec.lo_open else 0)
            return int(v) if spec.kind == "int" else float(v)
        raise NotImplementedError(f"no example element for {type(spec).__name__}")


def as_text(value: Any) -> str:
    """How a value is written on the command line: a string as itself, anything else as repr."""
    return value if isinstance(value, str) else repr(value)


SCALES = ("smoke", "quick", "full")
SEED = Int(0, 2**32 - 1)  # numpy's Generator and jax's PRNGKey both take it
DATA_DIR = Dir()


def leaves(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    """{dotted field name: value} for every non-ConfigDict field, nested ones included."""
    out = {}
    for k, v in config.items():
        if isinstance(v, ml_collections.ConfigDict):
            out.update(leaves(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def check_coverage(fields: Mapping[str, Spec], config: ml_collections.ConfigDict, where: str):
    """Every config field has a spec and every spec a field: a programming error otherwise."""
    names = set(leaves(config))
    missing, extra = sorted(names - set(fields)), sorted(set(fields) - names)
    if missing or extra:
        raise TypeError(
            f"{where}.FIELDS must declare exactly the config's fields; "
            f"missing {missing or 'none'}, unknown {extra or 'none'}"
        )


class Check(NamedTuple):
    """A rule over several fields (`members` divisible by each of `ensemble_sizes`)."""

    fields: tuple[str, ...]
    test: Callable[..., bool]  # called with the fields' values, in order
    text: str  # what the rule asks, after "must": "divide members"


def validate(
    config: ml_collections.ConfigDict,
    fields: Mapping[str, Spec],
    checks: Sequence[Check] = (),
) -> None:
    """Raises FieldError naming the first field whose value its spec refuses, then the first
    cross-field `Check` that fails (each runs only once its own fields are valid)."""
    values = leaves(config)
    for name, value in values.items():
        why = fields[name].problem(value)
        if why is not None:
            raise FieldError(f"config field {name!r} must be {why}; got {value!r}")
    for check in checks:
        args = [values[f] for f in check.fields]
        if not check.test(*args):
            got = ", ".join(f"{f}={v!r}" for f, v in zip(check.fields, args))
            raise FieldError(f"config field {check.fields[0]!r} must {check.text}; got {got}")
