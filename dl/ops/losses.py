"""Pure, keyword-only losses.

Shared convention (every loss here):

* A loss first computes one value per example over its *batch dims* (stated per loss).
* ``mask`` (optional) has exactly the batch shape; bool or 0/1. Nonzero means "keep". Masked
  entries are selected away with ``where`` rather than multiplied by zero, so garbage (even NaN)
  in padded positions cannot leak into the value.
* ``reduce=True`` returns the scalar ``sum(l * mask) / max(sum(mask), 1)`` (the plain mean when
  ``mask`` is None); an all-zero mask gives 0, not NaN.
* ``reduce=False`` returns the per-example values with masked entries set to 0.

Pointwise losses (mse, mae, huber, binary cross-entropy) treat axis 0 as the batch axis and
average the elementwise loss over all other axes, so ``[batch]`` inputs are elementwise and
``[batch, d]`` inputs give the mean over ``d`` (torch's ``reduction="mean"`` without a mask).
Classification losses treat the last axis as the class axis and every leading axis as a batch
axis, so ``logits: [batch, length, vocab]`` pairs with ``mask: [batch, length]``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def _reduce(per_example: Array, mask: Array | None, reduce: bool) -> Array:
    """Applies the module's mask/reduce convention to per-example values."""
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != per_example.shape:
            # Broadcasting a [batch] mask against [batch, length] values would silently
            # weight the wrong entries, so insist on the exact batch shape.
            raise ValueError(
                f"mask shape {mask.shape} must equal the batch shape {per_example.shape}"
            )
        keep = mask if mask.dtype == jnp.bool_ else mask != 0
        per_example = jnp.where(keep, per_example, jnp.zeros_like(per_example))
        if not reduce:
            return per_example
        count = jnp.sum(keep, dtype=per_example.dtype)
        return jnp.sum(per_example) / jnp.maximum(count, 1.0)
    return jnp.mean(per_example) if reduce else per_example


def _mean_over_features(elementwise: Array) -> Array:
    """Averages over every axis but the batch axis 0 (identity for [batch] inputs)."""
    return jnp.mean(elementwise, axis=tuple(range(1, elementwise.ndim)))


def _as(x, like: Array) -> Array:
    """Casts targets/labels to the prediction dtype explicitly (strict dtype promotion)."""
    return jnp.asarray(x).astype(like.dtype)


# --------------------------------------------------------------------------------------------
# Regression losses.
# --------------------------------------------------------------------------------------------


def mse(
    *, predictions: Array, targets: Array, mask: Array | None = None, reduce: bool = True
) -> Array:
    """Mean squared error ``(p - t)^2``.

    predictions, targets: [batch, ...] (targets are cast to the predictions' dtype).
    mask: [batch]. Per example: mean over the non-batch axes.
    """
    err = predictions - _as(targets, predictions)
    return _reduce(_mean_over_features(jnp.square(err)), mask, reduce)


def mae(
    *, predictions: Array, targets: Array, mask: Array | None = None, reduce: bool = True
) -> Array:
    """Mean absolute error ``|p - t|``. Shapes as in :func:`mse`."""
    err = predictions - _as(targets, predictions)
    return _reduce(_mean_over_features(jnp.abs(err)), mask, reduce)


def huber(
    *,
    predictions: Array,
    targets: Array,
    delta: float = 1.0,
    mask: Array | None = None,
    reduce: bool = True,
) -> Array:
    """Huber loss (Huber 1964): ``r^2/2`` for ``|r| <= delta``, else ``delta (|r| - delta/2)``.

    Equals torch's ``huber_loss(delta=delta)``; ``smooth_l1_loss(beta)`` is this divided by
    ``beta``. Shapes as in :func:`mse`.
    """
    abs_err = jnp.abs(predictions - _as(targets, predictions))
    # Splitting |r| into a clipped quadratic part and a linear remainder avoids a `where`
    # between two branches and is smooth at |r| = delta.
    quadratic = jnp.minimum(abs_err, delta)
    linear = abs_err - quadratic
    elementwise = 0.5 * jnp.square(quadratic) + delta * linear
    return _reduce(_mean_over_features(elementwise), mask, reduce)


# --------------------------------------------------------------------------------------------
# Classification losses.
# --------------------------------------------------------------------------------------------


def cross_entropy(
    *,
    logits: Array,
    targets: Array,
    mask: Array | None = None,
    reduce: bool = True,
    label_smoothing: float = 0.0,
) -> Array:
    """Softmax cross-entropy ``-sum_k t_k log softmax(z)_k``.

    logits: [*batch, K]. targets: either integer labels [*batch] or (one-hot or soft)
    probabilities [*batch, K] of a floating dtype. mask: [*batch].
    label_smoothing: eps in Szegedy et al. 2016 (sec. 7): targets become ``(1-eps) t + eps/K``.

    The log-softmax subtracts the max logit before exponentiating, so the value and gradient
    stay finite and exact for logits as large as +-1e4 in float32.
    """
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    num_classes = logits.shape[-1]
    targets = jnp.asarray(targets)
    if jnp.issubdtype(targets.dtype, jnp.integer):
        if targets.shape != logits.shape[:-1]:
            raise ValueError(f"integer targets {targets.shape} must have shape {logits.shape[:-1]}")
        # Gather instead of building a one-hot: O(batch) memory for large vocabularies.
        nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
        if label_smoothing:
            # The smoothed target's uniform part costs the mean negative log-probability.
            nll = (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(log_probs, axis=-1)
    else:
        if targets.shape != logits.shape:
            raise ValueError(
                f"probability targets {targets.shape} must match logits {logits.shape}"
            )
        probs = _as(targets, logits)
        if label_smoothing:
            probs = (1.0 - label_smoothing) * probs + label_smoothing / num_classes
        nll = -jnp.sum(probs * log_probs, axis=-1)
    return _reduce(nll, mask, reduce)


def binary_cross_entropy_with_logits(
    *, logits: Array, targets: Array, mask: Array | None = None, reduce: bool = True
) -> Array:
    """Bernoulli negative log-likelihood of ``targets`` in [0, 1] under ``sigmoid(logits)``.

    Uses ``max(z, 0) - z y + log1p(exp(-|z|))``, which is ``-y log s(z) - (1-y) log(1-s(z))``
    rearranged so that no ``exp`` of a positive number is taken (finite at z = +-1e4).
    logits, targets: [batch, ...]; mask: [batch]. Per example: mean over non-batch axes.
    """
    y = _as(targets, logits)
    # max(z, 0) and -|z| take their branches on the same test so that the gradient is exactly
    # sigmoid(z) - y, also at z = 0 (jnp.maximum/jnp.abs would give a mismatched subgradient).
    positive = logits > 0
    relu = jnp.where(positive, logits, 0.0)
    neg_abs = jnp.where(positive, -logits, logits)
    elementwise = relu - logits * y + jnp.log1p(jnp.exp(neg_abs))
    return _reduce(_mean_over_features(elementwise), mask, reduce)


def _true_class_score(logits: Array, labels: Array) -> Array:
    return jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]


def multiclass_hinge(
    *,
    logits: Array,
    labels: Array,
    margin: float = 1.0,
    mask: Array | None = None,
    reduce: bool = True,
) -> Array:
    """Crammer & Singer (2001) multiclass hinge ``max(0, margin + max_{j != y} z_j - z_y)``.

    logits: [*batch, K] with K >= 2; labels: integer [*batch]; mask: [*batch].
    (Unlike torch's ``multi_margin_loss``, which sums the hinge over all wrong classes.)
    """
    true_score = _true_class_score(logits, labels)
    is_true = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.bool_)
    best_other = jnp.max(jnp.where(is_true, -jnp.inf, logits), axis=-1)
    return _reduce(jnp.maximum(0.0, margin + best_other - true_score), mask, reduce)


def perceptron(
    *, logits: Array, labels: Array, mask: Array | None = None, reduce: bool = True
) -> Array:
    """Perceptron criterion (Rosenblatt 1958), chosen by the shapes.

    * Multiclass, ``logits: [*batch, K]``, integer ``labels: [*batch]``:
      ``max_j z_j - z_y`` (already >= 0; zero iff the true class attains the max). Equals
      :func:`multiclass_hinge` with ``margin=0``.
    * Binary, ``logits: [*batch]`` scores, ``labels: [*batch]`` in {-1, +1}: ``max(0, -y z)``.

    The binary form is used when ``logits.ndim == labels.ndim``. mask: [*batch].
    """
    if logits.ndim == jnp.ndim(labels):
        per_example = jnp.maximum(0.0, -_as(labels, logits) * logits)
    else:
        per_example = jnp.max(logits, axis=-1) - _true_class_score(logits, labels)
    return _reduce(per_example, mask, reduce)


# --------------------------------------------------------------------------------------------
# Divergences.
# --------------------------------------------------------------------------------------------


def kl_divergence(
    *, p_logits: Array, q_logits: Array, mask: Array | None = None, reduce: bool = True
) -> Array:
    """Categorical ``KL(p || q) = sum_k p_k (log p_k - log q_k)``.

    p_logits, q_logits: [*batch, K], unnormalized logits *or* log-probabilities (both are
    renormalized with a log-softmax, which leaves log-probabilities unchanged; ``-inf`` marks a
    zero-probability class). mask: [*batch].

    Terms with ``p_k = 0`` contribute 0 (the ``0 log 0 = 0`` convention); they are selected
    away so that a ``-inf`` in ``p`` gives neither NaN values nor NaN gradients.
    """
    log_p = jax.nn.log_softmax(p_logits, axis=-1)
    log_q = jax.nn.log_softmax(q_logits, axis=-1)
    p = jnp.exp(log_p)
    support = p > 0
    log_ratio = jnp.where(support, log_p - log_q, 0.0)
    per_example = jnp.sum(jnp.where(support, p * log_ratio, 0.0), axis=-1)
    return _reduce(per_example, mask, reduce)


def gaussian_kl(
    *,
    mean: Array,
    logvar: Array,
    prior_mean: float | Array = 0.0,
    prior_logvar: float | Array = 0.0,
    mask: Array | None = None,
    reduce: bool = True,
) -> Array:
    """``KL(N(mean, exp(logvar)) || N(prior_mean, exp(prior_logvar)))`` for diagonal Gaussians.

    Closed form (Kingma & Welling 2014, appendix B, for a general diagonal prior), summed over
    the last (latent) axis:
        1/2 sum_d [ pv_d - v_d + (exp(v_d) + (m_d - pm_d)^2) exp(-pv_d) - 1 ]
    with v = logvar, pv = prior_logvar, m = mean, pm = prior_mean.

    mean, logvar: [*batch, D]; prior_*: scalars or arrays broadcastable to [*batch, D]
    (cast to the dtype of ``mean``). mask: [*batch].
    """
    prior_mean = _as(prior_mean, mean)
    prior_logvar = _as(prior_logvar, mean)
    per_dim = (
        prior_logvar
        - logvar
        + (jnp.exp(logvar) + jnp.square(mean - prior_mean)) * jnp.exp(-prior_logvar)
        - 1.0
    )
    return _reduce(0.5 * jnp.sum(per_dim, axis=-1), mask, reduce)


# --------------------------------------------------------------------------------------------
# Registry.
# --------------------------------------------------------------------------------------------


def _sparsemax_loss(
    *, logits: Array, targets: Array, mask: Array | None = None, reduce: bool = True
) -> Array:
    """Sparsemax loss (Martins & Astudillo 2016); see :mod:`dl.ops.sparsemax`."""
    # Imported on call: sparsemax lives in its own module, and importing this one must not
    # depend on it.
    from dl.ops.sparsemax import sparsemax_loss

    return sparsemax_loss(logits=logits, targets=targets, mask=mask, reduce=reduce)


LOSSES: dict[str, Callable[..., Array]] = {
    "mse": mse,
    "mae": mae,
    "huber": huber,
    "cross_entropy": cross_entropy,
    "binary_cross_entropy_with_logits": binary_cross_entropy_with_logits,
    "multiclass_hinge": multiclass_hinge,
    "perceptron": perceptron,
    "kl_divergence": kl_divergence,
    "gaussian_kl": gaussian_kl,
    "sparsemax": _sparsemax_loss,
}


def get_loss(name: str) -> Callable[..., Array]:
    """Looks up a loss by name; raises ValueError listing the valid names."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(
            f"unknown loss {name!r}; valid names: {', '.join(sorted(LOSSES))}"
        ) from None
