"""Optimizers: equal to optax step by step, converge on a parabola and Rosenbrock, trace once.

optax's own adam/adamax/schedules promote int32 counts against python floats, which the strict
dtype mode of this suite rejects, so the optax *reference* runs under standard promotion while
ours runs under strict promotion.
"""

import functools
import inspect

import chex
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dl.optim import OPTIMIZERS, exponential_decay, get_optimizer, warmup_cosine
from dl.optim import optimizers as opt

NUM_STEPS = 100

# name -> (ours, optax reference with the same keyword meaning, non-default keyword values)
PAIRS = {
    "sgd": (opt.sgd, lambda lr: optax.sgd(lr), {}),
    "momentum": (opt.momentum, lambda lr, beta=0.9: optax.sgd(lr, momentum=beta), {"beta": 0.5}),
    "nesterov": (
        opt.nesterov,
        lambda lr, beta=0.9: optax.sgd(lr, momentum=beta, nesterov=True),
        {"beta": 0.7},
    ),
    "adagrad": (opt.adagrad, optax.adagrad, {"initial_accumulator_value": 0.5, "eps": 1e-4}),
    "rmsprop": (opt.rmsprop, optax.rmsprop, {"decay": 0.7, "eps": 1e-4}),
    "adadelta": (opt.adadelta, optax.adadelta, {"rho": 0.8, "eps": 1e-4}),
    "adam": (opt.adam, optax.adam, {"b1": 0.8, "b2": 0.99, "eps": 1e-4}),
    "adamax": (opt.adamax, optax.adamax, {"b1": 0.8, "b2": 0.99, "eps": 1e-4}),
}


def _random_tree(rng: np.random.Generator, lead: tuple[int, ...] = ()) -> dict:
    """A nested dict of float32 leaves of assorted shapes (matrix, vector, scalar, 3-D)."""
    shapes = {"dense": {"kernel": (3, 4), "bias": (4,)}, "scale": (), "conv": (2, 2, 3)}
    return jax.tree.map(
        lambda s: jnp.asarray(rng.normal(size=lead + s), jnp.float32),
        shapes,
        is_leaf=lambda s: isinstance(s, tuple),
    )


def _random_grads(rng: np.random.Generator) -> dict:
    """[NUM_STEPS, *leaf] gradients whose elements span 1e-3..30, so moments see varied scales."""
    grads = _random_tree(rng, (NUM_STEPS,))
    return jax.tree.map(
        lambda g: g * jnp.asarray(rng.choice([1e-3, 1.0, 30.0], size=g.shape), jnp.float32), grads
    )


def _updates_over_steps(tx: optax.GradientTransformation, params, grads):
    """Stacked updates of ``tx`` fed ``grads[t]`` at step t, params moving with the updates."""

    @jax.jit
    def run(params, grads):
        def body(carry, g):
            params, state = carry
            updates, state = tx.update(g, state, params)
            return (optax.apply_updates(params, updates), state), updates

        return jax.lax.scan(body, (params, tx.init(params)), grads)[1]

    return run(params, grads)


def _assert_trees_close(actual, expected, rtol=1e-6):
    """Relative to 1e-6, or absolute to 1e-6 of the leaf's largest update: moments that nearly
    cancel (an EMA of gradients of both signs) amplify one-ulp differences in summation order."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        e = np.asarray(e)
        np.testing.assert_allclose(np.asarray(a), e, rtol=rtol, atol=rtol * np.max(np.abs(e)))


# Defaults with a constant rate, and every other keyword changed with a schedule.
@pytest.mark.parametrize("lr_kind,custom", [("float", False), ("schedule", True)])
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_matches_optax_step_by_step(name, lr_kind, custom):
    ours, reference, custom_kwargs = PAIRS[name]
    kwargs = custom_kwargs if custom else {}
    # The schedule starts at 0 and changes every step, so an off-by-one step count would show.
    lr = 0.05 if lr_kind == "float" else warmup_cosine(0.1, warmup_steps=10, decay_steps=80)
    rng = np.random.default_rng(sorted(PAIRS).index(name))
    params, grads = _random_tree(rng), _random_grads(rng)
    got = _updates_over_steps(ours(lr, **kwargs), params, grads)
    with jax.numpy_dtype_promotion("standard"):
        want = _updates_over_steps(reference(lr, **kwargs), params, grads)
    assert max(float(jnp.max(jnp.abs(u))) for u in jax.tree.leaves(want)) > 0  # not vacuous
    _assert_trees_close(got, want)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_default_hyperparameters_match_optax(name):
    ours, _, _ = PAIRS[name]
    optax_fn = None if name in ("momentum", "nesterov") else getattr(optax, name)
    ours_defaults = {
        k: p.default
        for k, p in inspect.signature(ours).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    if optax_fn is None:  # optax has no separate momentum builders; its trace uses no default beta
        assert ours_defaults == {"beta": 0.9}
        return
    theirs = inspect.signature(optax_fn).parameters
    for key, value in ours_defaults.items():
        if name == "adadelta" and key == "learning_rate":
            continue  # optax's None leaves the sign unflipped (ascent); ours is Zeiler's rate 1, descent
        assert theirs[key].default == value, key


def test_adadelta_default_is_zeilers_descent():
    g = jnp.asarray([1.0, -2.0, 0.5], jnp.float32)
    tx = opt.adadelta()
    updates, _ = tx.update(g, tx.init(g), g)
    # First step of Zeiler 2012 Alg. 1: -sqrt(eps) / sqrt((1 - rho) g^2 + eps) * g.
    expected = -np.sqrt(1e-6) / np.sqrt(0.1 * np.square(g) + 1e-6) * np.asarray(g)
    np.testing.assert_allclose(np.asarray(updates), expected, rtol=1e-5)


_EDGE_VALUES = st.sampled_from([0.0, -0.0, 1e-8, -1e-8, 1.0, -3.0, 1e4, -1e4])


@functools.cache
def _jitted_pairs():
    """One compiled 3-step run per optimizer and side, reused across hypothesis examples."""
    x0 = jnp.zeros((6,), jnp.float32)
    runs = {}
    for name, (ours, reference, _) in PAIRS.items():
        # initial_accumulator_value=0 is Adagrad's 0/0 corner when a coordinate has only zero grads.
        kw = {"initial_accumulator_value": 0.0} if name == "adagrad" else {}
        runs[name] = (
            jax.jit(lambda g, tx=ours(0.1, **kw): _updates_over_steps(tx, x0, g)),  # noqa: B008 (binds this tx)
            jax.jit(lambda g, tx=reference(0.1, **kw): _updates_over_steps(tx, x0, g)),  # noqa: B008 (binds this tx)
        )
    return runs


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float32, (3, 6), elements=_EDGE_VALUES))
def test_edge_gradients_match_optax_and_stay_finite(grads):
    for name, (ours, reference) in _jitted_pairs().items():
        got = ours(jnp.asarray(grads))
        with jax.numpy_dtype_promotion("standard"):
            want = reference(jnp.asarray(grads))
        assert np.all(np.isfinite(np.asarray(got))), name
        _assert_trees_close(got, want)


# Convergence: an ill-conditioned parabola (curvatures 1..100) and Rosenbrock from (-1.5, 2).
_CURVATURES = jnp.asarray(np.logspace(0, 2, 5), jnp.float32)


def _parabola(x):
    return 0.5 * jnp.sum(_CURVATURES * x * x)


def _rosenbrock(x):
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2


PROBLEMS = {
    "parabola": (_parabola, np.ones(5, np.float32), np.zeros(5, np.float32)),
    "rosenbrock": (_rosenbrock, np.asarray([-1.5, 2.0], np.float32), np.ones(2, np.float32)),
}
TOL = 1e-3  # distance to the optimum

# Per optimizer and problem: (keyword arguments, steps). Steps leave a margin of 1.7x or more over
# what each needs to settle. RMSprop and Adadelta with a constant rate hover around the Rosenbrock
# valley floor, so they get the decaying rate that practice gives them.
CONVERGENCE = {
    "parabola": {
        "sgd": ({"learning_rate": 0.019}, 1000),
        "momentum": ({"learning_rate": 0.01}, 500),
        "nesterov": ({"learning_rate": 0.01}, 500),
        "adagrad": ({"learning_rate": 0.3}, 300),
        "rmsprop": ({"learning_rate": exponential_decay(0.003, 0.1, 1000)}, 2000),
        "adadelta": ({"rho": 0.95}, 2000),
        "adam": ({"learning_rate": 0.1}, 1000),
        "adamax": ({"learning_rate": 0.1}, 1000),
    },
    "rosenbrock": {
        "sgd": ({"learning_rate": 1e-3}, 30000),
        "momentum": ({"learning_rate": 1e-3}, 5000),
        "nesterov": ({"learning_rate": 1e-3}, 5000),
        "adagrad": ({"learning_rate": 1.0}, 25000),
        "rmsprop": ({"learning_rate": exponential_decay(0.01, 0.1, 3000)}, 15000),
        "adadelta": ({"learning_rate": exponential_decay(1.0, 0.1, 5000), "rho": 0.95}, 15000),
        "adam": ({"learning_rate": 0.01}, 8000),
        "adamax": ({"learning_rate": 0.1}, 8000),
    },
}


def _distances(tx: optax.GradientTransformation, problem: str, num_steps: int) -> np.ndarray:
    """[num_steps] distance to the optimum after each step of full-batch descent."""
    f, x0, optimum = PROBLEMS[problem]

    @jax.jit
    def run(x0):
        def body(carry, _):
            x, state = carry
            updates, state = tx.update(jax.grad(f)(x), state, x)
            x = optax.apply_updates(x, updates)
            return (x, state), jnp.linalg.norm(x - optimum)

        return jax.lax.scan(body, (x0, tx.init(x0)), None, length=num_steps)[1]

    return np.asarray(run(jnp.asarray(x0)))


def _steps_to_tolerance(distances: np.ndarray) -> int:
    """Steps after which the distance stays below TOL (len + 1 if it never settles)."""
    outside = np.nonzero(~(distances < TOL))[0]
    return 0 if outside.size == 0 else int(outside[-1]) + 1


@pytest.mark.parametrize("problem", sorted(CONVERGENCE))
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_converges(name, problem):
    kwargs, num_steps = CONVERGENCE[problem][name]
    distances = _distances(get_optimizer(name, **kwargs), problem, num_steps)
    # Settled, not passing through: the whole last tenth of the run stays within the tolerance.
    assert np.all(distances[-(num_steps // 10) :] < TOL), (name, problem, distances[-1])


@pytest.mark.parametrize(
    "problem,lr,num_steps", [("parabola", 0.01, 2000), ("rosenbrock", 1e-3, 30000)]
)
def test_momentum_beats_sgd(problem, lr, num_steps):
    sgd_steps = _steps_to_tolerance(_distances(opt.sgd(lr), problem, num_steps))
    momentum_steps = _steps_to_tolerance(_distances(opt.momentum(lr), problem, num_steps))
    assert sgd_steps < num_steps  # both settle, so the comparison is between two real numbers
    assert momentum_steps < sgd_steps / 2, (momentum_steps, sgd_steps)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_second_call_does_not_retrace(name):
    chex.clear_trace_counter()  # the count is per source location, shared by the parameters
    tx = get_optimizer(name, learning_rate=exponential_decay(0.1, 0.5, 10))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    rng = np.random.default_rng(0)
    params = _random_tree(rng)
    state = tx.init(params)
    for _ in range(3):  # the returned state (count, moments) must keep its dtypes and shapes
        params, state = step(params, state, _random_tree(rng))


def test_registry_and_unknown_name():
    assert set(OPTIMIZERS) == set(PAIRS)
    with pytest.raises(ValueError, match="adam.*sgd"):
        get_optimizer("adamw", learning_rate=0.1)
    tx = get_optimizer("adam", learning_rate=0.1, b1=0.5)
    g = jnp.ones((2,), jnp.float32)
    # One Adam step from zero moments is -lr * sign(g) (up to eps), whatever b1 and b2.
    # rtol: float32's 1 - 0.999 is 1e-5 off, which the bias correction of v carries.
    np.testing.assert_allclose(np.asarray(tx.update(g, tx.init(g))[0]), [-0.1, -0.1], rtol=1e-4)
