"""Long-range sequence problems: the stated layout holds exactly, targets follow from the
inputs, equal keys give equal arrays, and the baselines match their closed forms."""

import functools
import math

import jax
import numpy as np
import pytest

from dl.data.sequences import (
    ADDING_BASELINE_MSE,
    BOS,
    EOS,
    PAD,
    SYMBOL0,
    adding,
    copy_memory,
    copy_memory_baseline,
    transduction,
)


@pytest.mark.parametrize("length", [2, 3, 10, 101])
def test_adding_has_one_marker_per_half_and_target_is_the_marked_sum(length):
    x, y = adding(jax.random.key(length), batch=512, length=length)
    x, y = np.asarray(x), np.asarray(y)
    assert x.shape == (512, length, 2) and x.dtype == np.float32 and y.shape == (512,)
    values, markers = x[..., 0], x[..., 1]
    assert set(np.unique(markers)) <= {0.0, 1.0}
    half = length // 2
    np.testing.assert_array_equal(markers[:, :half].sum(1), 1.0)
    np.testing.assert_array_equal(markers[:, half:].sum(1), 1.0)
    assert values.min() >= 0.0 and values.max() < 1.0
    first, second = markers[:, :half].argmax(1), half + markers[:, half:].argmax(1)
    rows = np.arange(512)
    np.testing.assert_allclose(y, values[rows, first] + values[rows, second], rtol=1e-6)
    if length >= 10:  # every position of each half gets used
        assert len(np.unique(first)) == half and len(np.unique(second)) == length - half


def test_adding_is_deterministic_in_the_key_and_jittable():
    make = jax.jit(lambda k: adding(k, batch=4, length=20))
    a, b = make(jax.random.key(1)), adding(jax.random.key(1), batch=4, length=20)
    c = make(jax.random.key(2))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_constant_one_predictor_scores_one_sixth():
    """(U1 + U2 - 1) is triangular on [-1, 1]: E = 1/6 and Var[(.)^2] = 1/15 - 1/36 = 7/180,
    so the sample mean of n squared errors is within 5 standard errors of 1/6."""
    n = 200_000
    _, y = adding(jax.random.key(0), batch=n, length=8)
    mse = float(np.mean((np.asarray(y, np.float64) - 1.0) ** 2))
    assert ADDING_BASELINE_MSE == pytest.approx(1 / 6)
    assert abs(mse - 1 / 6) < 5 * math.sqrt(7 / 180 / n)


@pytest.mark.parametrize("delay, n_symbols, n_copy", [(1, 8, 10), (5, 3, 2), (100, 8, 10)])
def test_copy_memory_layout_and_targets(delay, n_symbols, n_copy):
    inputs, targets = copy_memory(
        jax.random.key(delay), batch=256, delay=delay, n_symbols=n_symbols, n_copy=n_copy
    )
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    steps = delay + 2 * n_copy
    assert inputs.shape == targets.shape == (256, steps)
    assert inputs.dtype == targets.dtype == np.int32
    symbols = inputs[:, :n_copy]
    assert symbols.min() >= 1 and symbols.max() <= n_symbols
    assert len(np.unique(symbols)) == n_symbols  # every category drawn
    delimiter_at = delay + n_copy - 1
    np.testing.assert_array_equal(inputs[:, delimiter_at], n_symbols + 1)
    rest = np.delete(inputs[:, n_copy:], delimiter_at - n_copy, axis=1)
    np.testing.assert_array_equal(rest, 0)
    np.testing.assert_array_equal(targets[:, : delay + n_copy], 0)
    np.testing.assert_array_equal(targets[:, delay + n_copy :], symbols)
    # The delimiter comes exactly `delay` steps after the last symbol; the first recall is
    # exactly `delay + n_copy` steps after the first symbol.
    assert delimiter_at - (n_copy - 1) == delay


def test_copy_memory_is_deterministic_and_rejects_bad_sizes():
    a = copy_memory(jax.random.key(3), batch=2, delay=7)
    b = jax.jit(lambda k: copy_memory(k, batch=2, delay=7))(jax.random.key(3))
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="delay"):
        copy_memory(jax.random.key(0), batch=2, delay=0)
    with pytest.raises(ValueError, match="length"):
        adding(jax.random.key(0), batch=2, length=1)


def test_copy_memory_baseline_is_the_memoryless_cross_entropy():
    """Blanks with certainty for T + L steps, then uniform over the symbols: computed directly
    as the mean per-step cross-entropy of that predictor on a sample."""
    delay, n_symbols, n_copy = 30, 8, 10
    _, targets = copy_memory(jax.random.key(0), batch=64, delay=delay)
    probs = np.zeros((delay + 2 * n_copy, n_symbols + 1))
    probs[: delay + n_copy, 0] = 1.0
    probs[delay + n_copy :, 1:] = 1.0 / n_symbols
    targets = np.asarray(targets)
    ce = -np.log(probs[np.arange(targets.shape[1]), targets]).mean()
    assert copy_memory_baseline(delay) == pytest.approx(ce, rel=1e-12)
    assert copy_memory_baseline(delay) == pytest.approx(10 * math.log(8) / 50)


def test_transduction_targets_follow_from_the_sources():
    key = jax.random.key(7)
    for task, fn in (("reverse", lambda x: x[::-1]), ("sort", sorted), ("copy", list)):
        draw = jax.jit(
            functools.partial(transduction, batch=24, min_len=2, max_len=9, n_symbols=4, task=task)
        )
        b = {k: np.asarray(v) for k, v in draw(key).items()}
        lengths = b["src_lengths"]
        assert lengths.min() >= 2 and lengths.max() <= 9 and len(set(lengths)) > 4
        for src, n, t_in, t_out, m in zip(
            b["src"], lengths, b["tgt_in"], b["tgt_out"], b["tgt_mask"], strict=True
        ):
            x = list(src[:n])
            assert all(SYMBOL0 <= s < SYMBOL0 + 4 for s in x) and not src[n:].any()
            y = [int(v) for v in fn(x)]
            assert list(t_in[: n + 1]) == [BOS, *y] and list(t_out[: n + 1]) == [*y, EOS]
            assert not t_in[n + 1 :].any() and not t_out[n + 1 :].any()
            np.testing.assert_array_equal(m, np.arange(10) <= n)
    assert PAD == 0
    with pytest.raises(ValueError, match="task must be"):
        transduction(key, batch=1, min_len=1, max_len=2, task="shuffle")
