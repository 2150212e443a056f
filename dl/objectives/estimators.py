"""Monte Carlo gradient estimators for J(theta) = E_{s~p(s|theta)} f(s, theta).

The score-function (REINFORCE) identity, with the direct term that seed 000's formula keeps:

    grad J = E[ f(s, theta) grad log p(s|theta) + grad_theta f(s, theta) ]      (Williams 1992)

and the pathwise (reparameterization) one, for s = g(theta, eps), eps ~ p(eps):

    grad J = E[ grad_theta f(g(theta, eps), theta) ]        (Kingma & Welling 2014; Rezende et
                                                             al. 2014; Mohamed et al. 2020, s. 5)

Every estimator is a pure function of (key, theta) that returns a gradient pytree shaped like
theta, usable under `jit`/`vmap`. The `*_terms` variants return the K per-sample estimates
(leading axis K), whose mean is the estimate; their variance over the K samples is the
per-sample estimator variance. Variance reduction (Mohamed et al. 2020, s. 7):

* a baseline b subtracted from f in the score term: a constant or moving average
  (`ema_update`), the leave-one-out mean over the K samples (`loo_baseline`), or a learned
  function of a context that does not depend on s (fitted with `baseline_loss`). Any b that is
  independent of s_i keeps the estimator unbiased, since E[grad log p] = 0;
* a control variate h with known mean and the optimal per-coordinate coefficient
  c = Cov(g, h) / Var(h), estimated from the same samples (`control_variate`); with h = the
  score, `score_function_cv` is the per-coordinate optimal baseline.

A distribution is a `dl.objectives.distributions.Distribution` (any sampler plus log-prob);
`params_fn(theta)` maps theta to its parameters (default: theta is the parameter dict).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from dl.objectives.distributions import Distribution

PyTree = Any


def ema_update(average, value, decay: float):
    """Moving-average baseline: returns decay * average + (1 - decay) * value.

    average, value: arrays (or pytrees) of the same shape; decay in [0, 1). A baseline built
    from past returns only is independent of the current sample, so it keeps REINFORCE
    unbiased (Williams 1992, reinforcement comparison).
    """
    return jax.tree.map(lambda a, v: decay * a + (1.0 - decay) * v, average, value)


def loo_baseline(values: jax.Array, axis: int = 0) -> jax.Array:
    """Leave-one-out baseline: b_i = mean_{j != i} values_j over the K samples on `axis`.

    values: [..., K, ...] with K >= 2 on `axis`; returns the same shape. b_i does not depend on
    sample i, so E[(f_i - b_i) grad log p_i] = E[f_i grad log p_i] (Kool et al. 2019, "Buy 4
    REINFORCE samples, get a baseline for free").
    """
    k = values.shape[axis]
    total = jnp.sum(values, axis=axis, keepdims=True)
    return (total - values) / (k - 1)


def baseline_loss(
    baseline_fn: Callable[[PyTree, Any], jax.Array], baseline_params: PyTree, context, targets
) -> jax.Array:
    """Squared-error loss of a learned baseline: mean((targets - baseline_fn(params, context))^2).

    Its minimizer is E[f | context], the baseline that regresses out what the context predicts.
    targets (the sampled f values, [K]) are not differentiated. The context must not depend on
    the sample s it is a baseline for (e.g. the state before an action), or the score-function
    estimate is biased. Pass `baseline_fn(params, context)` as `baseline=` to the estimators.
    """
    pred = baseline_fn(baseline_params, context)
    return jnp.mean((jax.lax.stop_gradient(targets) - pred) ** 2)


def _identity(theta, context=None):
    del context
    return theta


def _bind(f, params_fn, context):
    """f and params_fn as functions of (.., context_i); without a context they ignore it."""
    if context is None:
        return (lambda s, th, c: f(s, th)), (lambda th, c: params_fn(th))
    return f, params_fn


def _draw(key, dist: Distribution, params_fn, theta, context, num_samples: int, draw):
    """num_samples draws `draw(key, params)` (sample or noise), params of theta and context_i."""
    keys = jax.random.split(key, num_samples)
    theta = jax.lax.stop_gradient(theta)
    return jax.lax.stop_gradient(jax.vmap(lambda k, c: draw(k, params_fn(theta, c)))(keys, context))


def _baseline_values(baseline, f_values: jax.Array) -> jax.Array:
    """None -> 0; "loo" -> leave-one-out mean; an array -> broadcast to f_values' shape [K]."""
    if baseline is None:
        return jnp.zeros_like(f_values)
    if isinstance(baseline, str):
        if baseline != "loo":
            raise ValueError(f"unknown baseline {baseline!r}; valid: None, 'loo', or an array")
        if f_values.shape[0] < 2:
            raise ValueError("the leave-one-out baseline needs num_samples >= 2")
        return loo_baseline(f_values)
    return jnp.broadcast_to(jnp.asarray(baseline, f_values.dtype), f_values.shape)


def _score_setup(key, f, dist, params_fn, theta, context, num_samples, baseline):
    """Samples drawn at stop_gradient(theta), and the (non-differentiated) weights f - b of the
    score term."""
    samples = _draw(key, dist, params_fn, theta, context, num_samples, dist.sample)
    f_values = jax.vmap(f, in_axes=(0, None, 0))(samples, jax.lax.stop_gradient(theta), context)
    weights = jax.lax.stop_gradient(f_values - _baseline_values(baseline, f_values))
    return samples, weights


def surrogate(log_prob: jax.Array, f_value: jax.Array, weight: jax.Array) -> jax.Array:
    """The stochastic-computation-graph surrogate (Schulman et al. 2015) of ONE sample:
    stop_gradient(weight) * log_prob + f_value, whose gradient is the score-function estimate
    (weight = f - b) plus the direct term grad_theta f."""
    return jax.lax.stop_gradient(weight) * log_prob + f_value


# Shared keyword arguments of the estimators below:
#   f(s, theta) -> scalar for ONE sample s, or f(s, theta, context_i) when `context` is given;
#   params_fn(theta) -> the distribution's parameters, or params_fn(theta, context_i);
#   context: None, or a pytree with leading axis K = num_samples (e.g. states; sample i is
#       drawn from p(s | theta, context_i)), so the estimate is of sum_i E f / K.
#   baseline: None, "loo", or an array broadcast to [K]: a constant, an `ema_update` average,
#       or a learned baseline's values baseline_fn(phi, context) (fitted with `baseline_loss`).


def score_function_terms(
    key: jax.Array,
    f: Callable,
    dist: Distribution,
    theta: PyTree,
    num_samples: int,
    *,
    baseline=None,
    params_fn: Callable = _identity,
    context=None,
) -> PyTree:
    """Per-sample score-function estimates (f(s_i) - b_i) grad log p(s_i|theta) + grad f(s_i).

    Returns theta's pytree with a leading axis of K = num_samples. With baseline="loo" the K
    terms share the samples through b_i: their mean is unbiased, but their spread describes the
    estimate's variance only to O(1/K) (use independent repeats for small K).
    """
    f, params_fn = _bind(f, params_fn, context)
    samples, weights = _score_setup(key, f, dist, params_fn, theta, context, num_samples, baseline)

    def one(s, w, c):
        def objective(th):
            return surrogate(dist.log_prob(params_fn(th, c), s), f(s, th, c), w)

        return jax.grad(objective)(theta)

    return jax.vmap(one)(samples, weights, context)


def score_function(
    key: jax.Array,
    f: Callable,
    dist: Distribution,
    theta: PyTree,
    num_samples: int,
    *,
    baseline=None,
    params_fn: Callable = _identity,
    context=None,
) -> PyTree:
    """The score-function (REINFORCE) estimate of grad J: the mean of `score_function_terms`,
    computed with one backward pass through the mean surrogate."""
    f, params_fn = _bind(f, params_fn, context)
    samples, weights = _score_setup(key, f, dist, params_fn, theta, context, num_samples, baseline)

    def objective(th):
        log_probs = jax.vmap(lambda s, c: dist.log_prob(params_fn(th, c), s))(samples, context)
        f_values = jax.vmap(f, in_axes=(0, None, 0))(samples, th, context)
        return jnp.mean(surrogate(log_probs, f_values, weights))

    return jax.grad(objective)(theta)


def _pathwise_noise(key, dist, params_fn, theta, context, num_samples):
    if dist.reparameterize is None or dist.noise is None:
        raise ValueError("this distribution has no reparameterization; use score_function")
    return _draw(key, dist, params_fn, theta, context, num_samples, dist.noise)


def pathwise_terms(
    key: jax.Array,
    f: Callable,
    dist: Distribution,
    theta: PyTree,
    num_samples: int,
    *,
    params_fn: Callable = _identity,
    context=None,
) -> PyTree:
    """Per-sample pathwise estimates grad_theta f(g(theta, eps_i), theta); leading axis K.
    f must be differentiable in s (and in theta where it depends on it)."""
    f, params_fn = _bind(f, params_fn, context)
    noise = _pathwise_noise(key, dist, params_fn, theta, context, num_samples)

    def one(eps, c):
        return jax.grad(lambda th: f(dist.reparameterize(params_fn(th, c), eps), th, c))(theta)

    return jax.vmap(one)(noise, context)


def pathwise(
    key: jax.Array,
    f: Callable,
    dist: Distribution,
    theta: PyTree,
    num_samples: int,
    *,
    params_fn: Callable = _identity,
    context=None,
) -> PyTree:
    """The pathwise (reparameterization) estimate of grad J: the mean of `pathwise_terms`."""
    f, params_fn = _bind(f, params_fn, context)
    noise = _pathwise_noise(key, dist, params_fn, theta, context, num_samples)

    def objective(th):
        def one(eps, c):
            return f(dist.reparameterize(params_fn(th, c), eps), th, c)

        return jnp.mean(jax.vmap(one)(noise, context))

    return jax.grad(objective)(theta)


def optimal_coefficient(g: jax.Array, h: jax.Array) -> jax.Array:
    """c = Cov(g, h) / Var(h) per coordinate over the samples on axis 0 (0 where Var(h) = 0):
    the c minimizing Var(g - c h) (Mohamed et al. 2020, s. 7.4)."""
    gc = g - jnp.mean(g, axis=0)
    hc = h - jnp.mean(h, axis=0)
    var = jnp.mean(hc**2, axis=0)
    cov = jnp.mean(gc * hc, axis=0)
    return jnp.where(var > 0, cov / jnp.where(var > 0, var, 1.0), 0.0)


def control_variate(g: PyTree, h: PyTree, h_mean: PyTree | float = 0.0) -> tuple[PyTree, PyTree]:
    """Per-sample estimates g_i - c (h_i - E[h]) with the optimal coefficient c per coordinate.

    g, h: pytrees of per-sample terms, leading axis K (e.g. from `score_function_terms`);
    h_mean: E[h], known exactly (a pytree like one sample of h, or a scalar). Returns
    (corrected terms, c). c is estimated from the same K samples, which biases the mean by
    O(1/K) (Glasserman 2004, s. 4.1); estimate it from independent samples if that matters.
    """
    if not isinstance(h_mean, (int, float)):
        means = jax.tree.leaves(h_mean)
    else:
        means = [h_mean] * len(jax.tree.leaves(h))
    leaves_g, treedef = jax.tree.flatten(g)
    leaves_h = jax.tree.leaves(h)
    coefs = [optimal_coefficient(a, b) for a, b in zip(leaves_g, leaves_h, strict=True)]
    out = [a - c * (b - m) for a, b, c, m in zip(leaves_g, leaves_h, coefs, means, strict=True)]
    return jax.tree.unflatten(treedef, out), jax.tree.unflatten(treedef, coefs)


def score_terms(
    key: jax.Array,
    dist: Distribution,
    theta: PyTree,
    num_samples: int,
    *,
    params_fn: Callable = _identity,
    context=None,
) -> PyTree:
    """Per-sample scores grad_theta log p(s_i|theta) (mean zero: a control variate), drawn with
    the same key, hence the same samples, as `score_function_terms`."""
    _, params_fn = _bind(lambda s, th: s, params_fn, context)
    samples = _draw(key, dist, params_fn, theta, context, num_samples, dist.sample)

    def one(s, c):
        return jax.grad(lambda th: dist.log_prob(params_fn(th, c), s))(theta)

    return jax.vmap(one)(samples, context)


def score_function_cv(
    key: jax.Array,
    f: Callable,
    dist: Distribution,
    theta: PyTree,
    num_samples: int,
    *,
    params_fn: Callable = _identity,
    context=None,
) -> tuple[PyTree, PyTree]:
    """Score-function terms with the score itself as control variate (E[score] = 0) and the
    optimal coefficient per coordinate, i.e. the per-coordinate optimal constant baseline
    b*_j = E[f s_j^2] / E[s_j^2] (up to the direct term). Returns (terms [K, ...], c)."""
    kw = {"params_fn": params_fn, "context": context}
    g = score_function_terms(key, f, dist, theta, num_samples, **kw)
    h = score_terms(key, dist, theta, num_samples, **kw)
    return control_variate(g, h, 0.0)


def tree_mean(terms: PyTree) -> PyTree:
    """The estimate from per-sample terms: the mean over the leading axis."""
    return jax.tree.map(lambda t: jnp.mean(t, axis=0), terms)
