"""Schedules against closed forms and optax; plateau halving through chains and the callback."""

import math

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dl.optim import (
    HalveOnRise,
    PlateauFactorState,
    adam,
    exponential_decay,
    halve_on_rise,
    scale_by_plateau_factor,
    sgd,
    step_decay,
    warmup_cosine,
)

STEPS = np.arange(0, 400, dtype=np.int32)


def _optax_at(schedule, steps):
    # optax's schedules mix python numbers with int32 counts; evaluate them as the reference under
    # standard promotion, on float32 steps.
    with jax.numpy_dtype_promotion("standard"):
        return np.asarray(schedule(jnp.asarray(steps, jnp.float32)))


def test_step_decay_closed_form_and_optax_staircase():
    got = np.asarray(jax.jit(step_decay(0.1, 0.5, 30))(STEPS))
    np.testing.assert_allclose(got, 0.1 * 0.5 ** (STEPS // 30), rtol=1e-6)
    staircase = optax.exponential_decay(0.1, transition_steps=30, decay_rate=0.5, staircase=True)
    np.testing.assert_allclose(got, _optax_at(staircase, STEPS), rtol=1e-6)
    # Constant within a stair, a factor of decay_rate across each boundary.
    assert got[29] == got[0] and math.isclose(got[30] / got[29], 0.5, rel_tol=1e-6)


def test_exponential_decay_closed_form_and_optax():
    got = np.asarray(jax.jit(exponential_decay(0.3, 0.1, 100))(STEPS))
    np.testing.assert_allclose(got, 0.3 * 0.1 ** (STEPS / 100.0), rtol=1e-5)
    reference = optax.exponential_decay(0.3, transition_steps=100, decay_rate=0.1)
    np.testing.assert_allclose(got, _optax_at(reference, STEPS), rtol=1e-5)


def _warmup_cosine_numpy(t, peak, warmup, total, end):
    t = np.asarray(t, np.float64)
    progress = np.clip(t - warmup, 0, total - warmup) / (total - warmup)
    cosine = end + (peak - end) * 0.5 * (1 + np.cos(np.pi * progress))
    return np.where(t < warmup, peak * t / max(warmup, 1), cosine)


@pytest.mark.parametrize("warmup,total,end", [(20, 300, 0.0), (50, 120, 0.01), (0, 100, 0.0)])
def test_warmup_cosine_closed_form_and_optax(warmup, total, end):
    schedule = jax.jit(warmup_cosine(0.2, warmup, total, end))
    got = np.asarray(schedule(STEPS))
    np.testing.assert_allclose(
        got, _warmup_cosine_numpy(STEPS, 0.2, warmup, total, end), rtol=1e-5, atol=1e-7
    )
    reference = optax.warmup_cosine_decay_schedule(0.0, 0.2, warmup, total, end)
    np.testing.assert_allclose(got, _optax_at(reference, STEPS), rtol=1e-5, atol=1e-7)
    # Landmarks: 0 at the start (with warmup), the peak after warmup, end_value from `total` on.
    assert got[warmup] == pytest.approx(0.2) and got[total:].tolist() == pytest.approx(
        [end] * (len(STEPS) - total), abs=1e-7
    )
    if warmup:
        assert got[0] == 0.0 and np.all(np.diff(got[: warmup + 1]) > 0)
    assert np.all(np.diff(got[warmup : total + 1]) <= 1e-7)


@settings(max_examples=40, deadline=None)
@given(
    init=st.floats(1e-4, 10.0),
    rate=st.floats(0.5, 1.0),
    size=st.integers(1, 5000),
    steps=st.lists(st.integers(0, 2**31 - 1), min_size=8, max_size=8),
)  # one shape: one compile
def test_decays_match_float64_formulas(init, rate, size, steps):
    t = np.asarray(steps, np.int32)
    rate = float(np.float32(rate))  # the schedules compute in float32; compare with the same rate
    np.testing.assert_allclose(
        np.asarray(step_decay(init, rate, size)(t)),
        init * rate ** (t // size),
        rtol=1e-4,
        atol=1e-30,
    )
    # A numpy int is accepted too; t / decay_steps <= 50 keeps the value above float32 underflow.
    decay_steps = np.int64(max(size, t.max() // 50))
    np.testing.assert_allclose(
        np.asarray(exponential_decay(init, rate, decay_steps)(t)),
        init * rate ** (t / decay_steps),
        rtol=1e-4,
        atol=1e-30,
    )


def test_invalid_schedule_arguments():
    with pytest.raises(ValueError):
        step_decay(0.1, 0.5, 0)
    with pytest.raises(ValueError):
        exponential_decay(0.1, 0.5, 0)
    with pytest.raises(ValueError):
        warmup_cosine(0.1, warmup_steps=10, decay_steps=10)


def _tree():
    return {"w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3), "b": jnp.ones((3,), jnp.float32)}


def _factors(opt_state) -> list[float]:
    nodes = jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, PlateauFactorState))
    return [float(n.factor) for n in nodes if isinstance(n, PlateauFactorState)]


def test_plateau_factor_halves_only_on_rises():
    tx = scale_by_plateau_factor()
    state = tx.init(_tree())
    assert state.factor.dtype == jnp.float32 and state.factor.shape == ()
    for val, prev, expected in [
        (0.5, 0.6, 1.0),
        (0.5, 0.5, 1.0),
        (0.7, 0.5, 0.5),
        (0.8, 0.7, 0.25),
        (0.1, 0.8, 0.25),
    ]:
        state = halve_on_rise(state, val_error=val, prev_val_error=prev)
        assert float(state.factor) == expected
    updates, _ = tx.update(_tree(), state)
    chex.assert_trees_all_equal(updates, jax.tree.map(lambda g: 0.25 * g, _tree()))


def test_halving_in_a_chain_equals_halving_the_learning_rate():
    # Identity: for SGD and Adam the learning rate is the last factor, so factor 1/2 == rate / 2.
    for build in (sgd, adam):
        tx = optax.chain(optax.clip_by_global_norm(1e3), build(0.1), scale_by_plateau_factor())
        half = build(0.05)
        state, half_state = tx.init(_tree()), half.init(_tree())
        state = halve_on_rise(state, val_error=jnp.float32(2.0), prev_val_error=jnp.float32(1.0))
        assert _factors(state) == [0.5]
        rng = np.random.default_rng(0)
        update, half_update = jax.jit(tx.update), jax.jit(half.update)
        for _ in range(5):
            g = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), _tree())  # noqa: B023 (called at once)
            got, state = update(g, state)
            want, half_state = half_update(g, half_state)
            chex.assert_trees_all_close(got, want, rtol=1e-6)


def test_halve_on_rise_finds_nested_states_and_leaves_the_rest():
    inner = optax.chain(adam(0.1), scale_by_plateau_factor())
    tx = optax.chain(inner, optax.chain(sgd(0.1), scale_by_plateau_factor()))
    state = tx.init(_tree())
    _, state = tx.update(_tree(), state)  # non-zero moments and counts
    new = jax.jit(halve_on_rise)(state, val_error=1.0, prev_val_error=0.0)
    assert _factors(new) == [0.5, 0.5]
    is_factor = lambda x: isinstance(x, PlateauFactorState)
    old_nodes = jax.tree.leaves(state, is_leaf=is_factor)
    new_nodes = jax.tree.leaves(new, is_leaf=is_factor)
    assert len(new_nodes) == len(old_nodes) > 2
    for a, b in zip(new_nodes, old_nodes):
        if not is_factor(a):  # everything but the two factors is untouched
            np.testing.assert_array_equal(a, b)
    # A state with no PlateauFactorState passes through unchanged.
    plain = sgd(0.1).init(_tree())
    assert halve_on_rise(plain, val_error=1.0, prev_val_error=0.0) == plain


def test_halving_does_not_retrace_the_step():
    chex.clear_trace_counter()
    tx = optax.chain(sgd(0.1), scale_by_plateau_factor())

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params, state = _tree(), tx.init(_tree())
    for i in range(3):
        params, state = step(params, state, _tree())
        state = halve_on_rise(state, val_error=float(i + 1), prev_val_error=float(i))
    assert _factors(state) == [0.125]


@flax.struct.dataclass
class _State:
    params: dict
    opt_state: optax.OptState


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.5, 1.0]), min_size=1, max_size=12))
def test_callback_halves_once_per_rise_through_a_sequence(errors):
    tx = optax.chain(sgd(0.1), scale_by_plateau_factor())
    state = _State(params=_tree(), opt_state=tx.init(_tree()))
    callback = HalveOnRise()
    for i, e in enumerate(errors):
        state = callback(state, {"val_error": e, "val_accuracy": 1.0 - e})
        rises = int(np.sum(np.diff(np.asarray(errors[: i + 1])) > 0))  # ties do not count
        assert _factors(state.opt_state) == [0.5**rises]


def test_callback_resumes_from_its_state_dict():
    tx = optax.chain(sgd(0.1), scale_by_plateau_factor())
    first = HalveOnRise(metric="val_loss")
    state = _State(params=_tree(), opt_state=tx.init(_tree()))
    state = first(state, {"val_loss": 1.0})
    resumed = HalveOnRise(metric="val_loss")
    resumed.load_state_dict(first.state_dict())
    assert repr(resumed) == repr(first) == "HalveOnRise(metric='val_loss')"
    state = resumed(state, {"val_loss": 1.5})  # a rise relative to the value before the "restart"
    assert _factors(state.opt_state) == [0.5]
    with pytest.raises(KeyError):
        resumed(state, {"val_error": 1.0})
