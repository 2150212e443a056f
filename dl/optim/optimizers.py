"""First-order optimizers written from their update rules, in optax's shape.

Each builder returns an ``optax.GradientTransformation`` whose ``update_fn`` maps gradients to
*updates* (already scaled by ``-learning_rate``), to be added with ``optax.apply_updates``. Every
state is a ``NamedTuple`` of pytrees shaped like the parameters plus an int32 step ``count``, which
drives learning-rate schedules and bias corrections.

Conventions follow optax 0.2.8 exactly (eps placement, bias correction, the Nesterov form, the
Adagrad accumulator start), so that each optimizer can be tested equal to its optax counterpart.
Notation: ``g`` the gradient, ``eta_t`` the learning rate at step ``t`` (0-based), ``t' = t + 1``.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

ScalarOrSchedule = float | Callable[[jax.Array], Any]


class SgdState(NamedTuple):
    """State of plain SGD: only the step count (for a learning-rate schedule)."""

    count: jax.Array  # shape=(), dtype=int32; steps taken so far.


class MomentumState(NamedTuple):
    """State of heavy-ball and Nesterov momentum."""

    count: jax.Array  # shape=(), dtype=int32.
    velocity: optax.Params  # like params; v_t = g_t + beta * v_{t-1}.


class AdagradState(NamedTuple):
    """State of Adagrad."""

    count: jax.Array  # shape=(), dtype=int32.
    sum_of_squares: optax.Params  # like params; initial_accumulator_value + sum_s g_s^2.


class RmspropState(NamedTuple):
    """State of RMSprop."""

    count: jax.Array  # shape=(), dtype=int32.
    nu: optax.Params  # like params; EMA of g^2.


class AdadeltaState(NamedTuple):
    """State of Adadelta (Zeiler 2012, Algorithm 1)."""

    count: jax.Array  # shape=(), dtype=int32.
    e_g2: optax.Params  # like params; E[g^2], EMA of squared gradients.
    e_dx2: optax.Params  # like params; E[dx^2], EMA of squared (unscaled) updates.


class AdamState(NamedTuple):
    """State of Adam and Adamax."""

    count: jax.Array  # shape=(), dtype=int32; t, steps taken so far.
    mu: optax.Params  # like params; first moment m_t (EMA of g).
    nu: optax.Params  # like params; Adam: EMA of g^2; Adamax: decayed max of |g|.


def _learning_rate(learning_rate: ScalarOrSchedule, count: jax.Array) -> Any:
    """The learning rate at step ``count`` (0-based), as optax's ``scale_by_learning_rate``."""
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _descend(direction: optax.Updates, lr: Any) -> optax.Updates:
    """``-lr * direction``, with the rate cast to each leaf's dtype (no silent promotion)."""
    return jax.tree.map(lambda d: -jnp.asarray(lr, d.dtype) * d, direction)


def _zeros_count() -> jax.Array:
    return jnp.zeros([], jnp.int32)


def _bias_correction(decay: float, count: jax.Array) -> jax.Array:
    """``1 - decay**t`` (Kingma & Ba 2015, Sec. 3), in float32: the debiasing divisor."""
    return 1.0 - decay ** count.astype(jnp.float32)


def sgd(learning_rate: ScalarOrSchedule) -> optax.GradientTransformation:
    """Stochastic gradient descent (Robbins & Monro 1951): ``u_t = -eta_t g_t``.

    Args:
      learning_rate: a float or a schedule ``count -> rate``.
    """

    def init_fn(params):
        del params
        return SgdState(count=_zeros_count())

    def update_fn(updates, state, params=None):
        del params
        updates = _descend(updates, _learning_rate(learning_rate, state.count))
        return updates, SgdState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def _momentum(learning_rate: ScalarOrSchedule, beta: float, nesterov: bool):
    def init_fn(params):
        return MomentumState(count=_zeros_count(), velocity=jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        velocity = jax.tree.map(lambda g, v: g + beta * v, updates, state.velocity)
        # Nesterov's look-ahead in the form that needs no gradient at the shifted point.
        direction = (
            jax.tree.map(lambda g, v: g + beta * v, updates, velocity) if nesterov else velocity
        )
        updates = _descend(direction, _learning_rate(learning_rate, state.count))
        return updates, MomentumState(count=optax.safe_increment(state.count), velocity=velocity)

    return optax.GradientTransformation(init_fn, update_fn)


def momentum(learning_rate: ScalarOrSchedule, beta: float = 0.9) -> optax.GradientTransformation:
    """Heavy-ball momentum (Polyak 1964; Sutskever et al. 2013, eq. 1-2 with v scaled by 1/eta).

    ``v_t = g_t + beta v_{t-1}``, ``u_t = -eta_t v_t``, ``v_{-1} = 0``. Equals
    ``optax.sgd(learning_rate, momentum=beta)``.
    """
    return _momentum(learning_rate, beta, nesterov=False)


def nesterov(learning_rate: ScalarOrSchedule, beta: float = 0.9) -> optax.GradientTransformation:
    """Nesterov accelerated gradient (Nesterov 1983), in the reformulation of
    Bengio, Boulanger-Lewandowski & Pascanu 2013 (eq. 7): iterates are the look-ahead points, so the
    gradient is taken where the parameters are.

    ``v_t = g_t + beta v_{t-1}``, ``u_t = -eta_t (g_t + beta v_t)``. Equals
    ``optax.sgd(learning_rate, momentum=beta, nesterov=True)``.
    """
    return _momentum(learning_rate, beta, nesterov=True)


def adagrad(
    learning_rate: ScalarOrSchedule, initial_accumulator_value: float = 0.1, eps: float = 1e-7
) -> optax.GradientTransformation:
    """Adagrad (Duchi, Hazan & Singer 2011, diagonal version of eq. 1 / Fig. 1).

    ``G_t = G_{-1} + sum_{s<=t} g_s^2`` with ``G_{-1} = initial_accumulator_value``;
    ``u_t = -eta_t g_t / sqrt(G_t + eps)`` (eps inside the root, as optax), and ``u_t = 0`` where
    ``G_t = 0`` so that an all-zero history cannot give 0/0.
    """

    def init_fn(params):
        acc = jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params)
        return AdagradState(count=_zeros_count(), sum_of_squares=acc)

    def update_fn(updates, state, params=None):
        del params
        acc = jax.tree.map(lambda g, s: s + g * g, updates, state.sum_of_squares)
        direction = jax.tree.map(
            lambda g, s: jnp.where(s > 0, g * jax.lax.rsqrt(s + eps), jnp.zeros_like(g)),
            updates,
            acc,
        )
        updates = _descend(direction, _learning_rate(learning_rate, state.count))
        return updates, AdagradState(count=optax.safe_increment(state.count), sum_of_squares=acc)

    return optax.GradientTransformation(init_fn, update_fn)


def rmsprop(
    learning_rate: ScalarOrSchedule, decay: float = 0.9, eps: float = 1e-8
) -> optax.GradientTransformation:
    """RMSprop (Tieleman & Hinton 2012, Coursera lecture 6.5).

    ``nu_t = decay nu_{t-1} + (1 - decay) g_t^2`` with ``nu_{-1} = 0``;
    ``u_t = -eta_t g_t / sqrt(nu_t + eps)`` (eps inside the root: optax's default, not PyTorch's).
    """

    def init_fn(params):
        return RmspropState(count=_zeros_count(), nu=jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        nu = jax.tree.map(lambda g, n: (1 - decay) * g * g + decay * n, updates, state.nu)
        direction = jax.tree.map(lambda g, n: g * jax.lax.rsqrt(n + eps), updates, nu)
        updates = _descend(direction, _learning_rate(learning_rate, state.count))
        return updates, RmspropState(count=optax.safe_increment(state.count), nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adadelta(
    learning_rate: ScalarOrSchedule = 1.0, rho: float = 0.9, eps: float = 1e-6
) -> optax.GradientTransformation:
    """Adadelta (Zeiler 2012, Algorithm 1, eq. 14).

    ``E[g^2]_t = rho E[g^2]_{t-1} + (1 - rho) g_t^2``;
    ``dx_t = sqrt(E[dx^2]_{t-1} + eps) / sqrt(E[g^2]_t + eps) * g_t``;
    ``E[dx^2]_t = rho E[dx^2]_{t-1} + (1 - rho) dx_t^2``; ``u_t = -eta_t dx_t``.

    The paper has no learning rate; ``learning_rate=1.0`` is the paper's rule. The running average
    ``E[dx^2]`` holds the *unscaled* step ``dx``, as optax does, so a rate other than 1 scales the
    step without feeding back into the average. Unlike ``optax.adadelta()`` (whose default ``None``
    leaves the sign unflipped, i.e. ascends), the default here descends.
    """

    def init_fn(params):
        return AdadeltaState(
            count=_zeros_count(),
            e_g2=jax.tree.map(jnp.zeros_like, params),
            e_dx2=jax.tree.map(jnp.zeros_like, params),
        )

    def update_fn(updates, state, params=None):
        del params
        e_g2 = jax.tree.map(lambda g, e: (1 - rho) * g * g + rho * e, updates, state.e_g2)
        dx = jax.tree.map(
            lambda g, eg, ex: jnp.sqrt(ex + eps) / jnp.sqrt(eg + eps) * g,
            updates,
            e_g2,
            state.e_dx2,
        )
        e_dx2 = jax.tree.map(lambda d, e: (1 - rho) * d * d + rho * e, dx, state.e_dx2)
        updates = _descend(dx, _learning_rate(learning_rate, state.count))
        return updates, AdadeltaState(
            count=optax.safe_increment(state.count), e_g2=e_g2, e_dx2=e_dx2
        )

    return optax.GradientTransformation(init_fn, update_fn)


def _adam_init(params) -> AdamState:
    # Separate buffers for the two moments: a donated state must not alias itself.
    return AdamState(
        count=_zeros_count(),
        mu=jax.tree.map(jnp.zeros_like, params),
        nu=jax.tree.map(jnp.zeros_like, params),
    )


def adam(
    learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Adam (Kingma & Ba 2015, Algorithm 1).

    ``m_t = b1 m_{t-1} + (1 - b1) g_t``, ``v_t = b2 v_{t-1} + (1 - b2) g_t^2``,
    ``m^_t = m_t / (1 - b1^t')``, ``v^_t = v_t / (1 - b2^t')``,
    ``u_t = -eta_t m^_t / (sqrt(v^_t) + eps)`` (eps outside the root, as the paper).
    """

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: (1 - b1) * g + b1 * m, updates, state.mu)
        nu = jax.tree.map(lambda g, v: (1 - b2) * g * g + b2 * v, updates, state.nu)
        c1, c2 = _bias_correction(b1, count), _bias_correction(b2, count)
        direction = jax.tree.map(
            lambda m, v: (m / c1.astype(m.dtype)) / (jnp.sqrt(v / c2.astype(v.dtype)) + eps), mu, nu
        )
        updates = _descend(direction, _learning_rate(learning_rate, state.count))
        return updates, AdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(_adam_init, update_fn)


def adamax(
    learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Adamax (Kingma & Ba 2015, Algorithm 2, Sec. 7.1): Adam with the infinity norm.

    ``m_t = b1 m_{t-1} + (1 - b1) g_t``, ``u_t^inf = max(|g_t| + eps, b2 u_{t-1}^inf)``,
    ``u_t = -eta_t m_t / ((1 - b1^t') u_t^inf)``. The paper has no eps; optax adds it inside the max
    so the divisor is never zero.
    """

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: (1 - b1) * g + b1 * m, updates, state.mu)
        nu = jax.tree.map(lambda g, u: jnp.maximum(jnp.abs(g) + eps, b2 * u), updates, state.nu)
        c1 = _bias_correction(b1, count)
        direction = jax.tree.map(lambda m, u: (m / c1.astype(m.dtype)) / u, mu, nu)
        updates = _descend(direction, _learning_rate(learning_rate, state.count))
        return updates, AdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(_adam_init, update_fn)


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adadelta": adadelta,
    "adam": adam,
    "adamax": adamax,
}


def get_optimizer(name: str, **kwargs: Any) -> optax.GradientTransformation:
    """Builds the optimizer registered as ``name`` with ``kwargs`` (e.g. ``learning_rate``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; valid names: {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](**kwargs)
