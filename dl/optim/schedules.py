"""Learning-rate schedules (step -> rate) and the classic "halve the rate when validation error
rises" rule, as an optax transformation plus a training-engine callback.

Schedules are optax schedules: pure functions of a 0-based int step (python int or int32 array)
returning a float32 scalar, usable inside ``jit`` and by the optimizers in ``optimizers.py``.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


def _as_float(step: Any) -> jax.Array:
    # Steps arrive as python ints or int32 counters; the strict dtype rules want one explicit cast.
    return jnp.asarray(step).astype(jnp.float32)


def step_decay(init_value: float, decay_rate: float, step_size: int) -> optax.Schedule:
    """Piecewise-constant decay: ``eta_t = init_value * decay_rate ** floor(t / step_size)``.

    The "multiply the rate by ``decay_rate`` every ``step_size`` steps" rule; equals
    ``optax.exponential_decay(init_value, step_size, decay_rate, staircase=True)``.
    """
    step_size = int(step_size)  # a numpy int would be a strongly typed operand below
    if step_size <= 0:
        raise ValueError(f"step_size must be positive, got {step_size}")

    def schedule(step):
        # Integer division for integer steps: float32 t / step_size misplaces stairs beyond 2**24.
        stairs = jnp.asarray(step) // step_size
        return init_value * decay_rate ** stairs.astype(jnp.float32)

    return schedule


def exponential_decay(init_value: float, decay_rate: float, decay_steps: int) -> optax.Schedule:
    """Smooth exponential decay: ``eta_t = init_value * decay_rate ** (t / decay_steps)``.

    The rate is multiplied by ``decay_rate`` over every ``decay_steps`` steps, continuously; equals
    ``optax.exponential_decay(init_value, decay_steps, decay_rate)``.
    """
    decay_steps = int(decay_steps)
    if decay_steps <= 0:
        raise ValueError(f"decay_steps must be positive, got {decay_steps}")

    def schedule(step):
        return init_value * decay_rate ** (_as_float(step) / decay_steps)

    return schedule


def warmup_cosine(
    peak_value: float, warmup_steps: int, decay_steps: int, end_value: float = 0.0
) -> optax.Schedule:
    """Linear warmup from 0 to ``peak_value``, then cosine decay to ``end_value``
    (Loshchilov & Hutter 2017, eq. 5, one cycle; warmup as Goyal et al. 2017, Sec. 2.2).

    ``eta_t = peak * t / W`` for ``t < W``; with ``c = min(t - W, T - W) / (T - W)``,
    ``eta_t = end + (peak - end) * (1 + cos(pi c)) / 2`` for ``t >= W``, where ``W = warmup_steps``
    and ``T = decay_steps`` is the *total* length including warmup (optax's convention), so the rate
    reaches ``end_value`` at step ``T`` and stays there.
    """
    warmup_steps, decay_steps = int(warmup_steps), int(decay_steps)
    if not 0 <= warmup_steps < decay_steps:
        raise ValueError(f"need 0 <= warmup_steps < decay_steps, got {warmup_steps}, {decay_steps}")
    cosine_steps = decay_steps - warmup_steps

    def schedule(step):
        t = _as_float(step)
        warm = peak_value * t / max(warmup_steps, 1)
        progress = jnp.clip(t - warmup_steps, 0.0, cosine_steps) / cosine_steps
        cosine = end_value + (peak_value - end_value) * 0.5 * (1.0 + jnp.cos(math.pi * progress))
        return jnp.where(t < warmup_steps, warm, cosine)

    return schedule


class PlateauFactorState(NamedTuple):
    """State of ``scale_by_plateau_factor``."""

    factor: jax.Array  # shape=(), dtype=float32; multiplies every update; starts at 1.


def scale_by_plateau_factor() -> optax.GradientTransformation:
    """Multiplies updates by a factor held in the state, changed only by ``halve_on_rise``.

    Chain it after any optimizer: ``optax.chain(adam(1e-3), scale_by_plateau_factor())``. Keeping the
    factor in the optimizer state (rather than rebuilding the optimizer with a new rate) keeps the
    jitted step compiled once and makes the factor part of every checkpoint.
    """

    def init_fn(params):
        del params
        return PlateauFactorState(factor=jnp.ones([], jnp.float32))

    def update_fn(updates, state, params=None):
        del params
        updates = jax.tree.map(lambda u: state.factor.astype(u.dtype) * u, updates)
        return updates, state

    return optax.GradientTransformation(init_fn, update_fn)


def halve_on_rise(opt_state: Any, *, val_error: Any, prev_val_error: Any) -> Any:
    """Halves ``factor`` in every ``PlateauFactorState`` of ``opt_state`` if ``val_error`` rose.

    The classic annealing rule "halve the learning rate whenever the validation error goes up"
    (a variant of the schedule used to train Mikolov et al.'s 2010 RNN language model). Pure and
    jit-able: ``opt_state`` may be any (nested, chained) optax state; all other leaves pass through.

    Args:
      opt_state: an optax state containing zero or more ``PlateauFactorState`` nodes.
      val_error, prev_val_error: scalars; a rise is ``val_error > prev_val_error`` (equal: no change).
    """
    rose = jnp.asarray(val_error, jnp.float32) > jnp.asarray(prev_val_error, jnp.float32)

    def halve(node):
        if isinstance(node, PlateauFactorState):
            return PlateauFactorState(factor=jnp.where(rose, 0.5 * node.factor, node.factor))
        return node

    return jax.tree.map(halve, opt_state, is_leaf=lambda x: isinstance(x, PlateauFactorState))


class HalveOnRise:
    """Training-engine callback ``(state, eval_metrics) -> state`` applying ``halve_on_rise``.

    Remembers the previous ``eval_metrics[metric]``; the first evaluation only records it. ``state``
    is any flax struct dataclass with an ``opt_state`` field. ``state_dict``/``load_state_dict`` let a
    resumed run continue comparing against the last value seen before the interruption.
    """

    def __init__(self, metric: str = "val_error"):
        self.metric = metric
        self.prev: float | None = None

    def __repr__(self) -> str:
        # Stable across runs: the training loop keys saved callback state by repr.
        return f"HalveOnRise(metric={self.metric!r})"

    def __call__(self, state: Any, eval_metrics: dict[str, Any]) -> Any:
        value = float(eval_metrics[self.metric])
        if self.prev is not None:
            state = state.replace(
                opt_state=halve_on_rise(state.opt_state, val_error=value, prev_val_error=self.prev)
            )
        self.prev = value
        return state

    def state_dict(self) -> dict[str, float | None]:
        return {"prev": self.prev}

    def load_state_dict(self, d: dict[str, float | None]) -> None:
        self.prev = d["prev"]
