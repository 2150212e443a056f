"""Sparsemax and the sparsemax loss (Martins & Astudillo, 2016, "From Softmax to Sparsemax").

sparsemax(z) = argmin_{p in simplex} ||p - z||^2 is the Euclidean projection of the logits onto
the probability simplex; unlike softmax it returns exact zeros. Its closed form is
p = max(z - tau, 0), with the threshold tau chosen so that p sums to one (eq. 3, Alg. 1 of the
paper). tau is found by sorting (Alg. 1) or by an exact sort-free fixed-point iteration that is
several times faster on CPU, where XLA's sort is slow; by default the fixed point, with the sort
as the fallback for the rare inputs on which it would need many passes. All functions work under
`jit`, `vmap` and `grad`, in float32 and float64.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


def _check_floating(z: Array) -> Array:
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.floating):
        raise TypeError(f"sparsemax needs floating logits, got dtype {z.dtype}")
    return z


# "auto" runs the fixed-point iteration to convergence up to this K. It needs a handful of O(K)
# passes on every input we tried (3-9 up to K = 1000, about log K) and is then 10-40x faster than
# XLA's CPU sort, but its worst case is K passes. With K passes forced, [1024, K] rows on the
# 2-core CPU took 3.2 ms vs the sort's 15.8 ms at K = 64, 63 vs 95 ms at K = 256 and 223 vs 199 ms
# at K = 512; so up to 256 even the worst case is no slower than the sort.
FIXED_POINT_MAX_K = 256
# Beyond FIXED_POINT_MAX_K, "auto" allows the iteration this many passes (threshold evaluations)
# and falls back to the sort for the whole call if a row has not converged. Random float32 rows
# took at most 12 passes at K = 30000 and 15 at K = 1e6 (uniform, normal, Laplace, power-law
# logits), so 24 leaves room; the adversarial inputs we could build (geometrically growing
# blocks, each pass dropping one block) reach about 20 passes in float32 and 24-31 in float64.
# A wasted attempt costs 24 passes on top of the sort: ~5-10% of the sort at K = 1000-30000.
FIXED_POINT_MAX_PASSES = 24

METHODS = ("auto", "sort", "fixed_point")


def _sort_threshold(z: Array) -> Array:
    """tau [..., 1] for z [..., K] with max(z) = 0, by Alg. 1 of the paper.

    With z sorted in decreasing order z_(1) >= ... >= z_(K), the support size is
    k(z) = max{k : 1 + k z_(k) > sum_{j<=k} z_(j)} and tau = (sum_{j<=k(z)} z_(j) - 1) / k(z).
    """
    z_sorted = -jnp.sort(-z, axis=-1)
    k = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    cumsum = jnp.cumsum(z_sorted, axis=-1)
    in_support = 1.0 + k * z_sorted > cumsum
    # The paper's max over k; in exact arithmetic the condition holds on a prefix, so this equals
    # the count, but the max stays faithful to the definition if rounding breaks the prefix.
    k_z = jnp.max(jnp.where(in_support, k, 0.0), axis=-1, keepdims=True)
    idx = k_z.astype(jnp.int32) - 1
    return (jnp.take_along_axis(cumsum, idx, axis=-1) - 1.0) / k_z


def _support_mean_threshold(z: Array, tau: Array) -> Array:
    """(sum_{z_j > tau} z_j - 1) / #{z_j > tau}: [..., K], [..., 1] -> [..., 1]."""
    support = z > tau
    size = jnp.sum(support, axis=-1, keepdims=True, dtype=z.dtype)
    return (jnp.sum(jnp.where(support, z, 0.0), axis=-1, keepdims=True) - 1.0) / size


def _fixed_point_iterate(z: Array, max_passes: int) -> tuple[Array, Array]:
    """(tau [..., 1], converged []) after at most `max_passes` threshold evaluations on z [..., K]
    (max(z) = 0; the caller stops gradients). converged: every row reached its fixed point."""

    def cond(carry):
        tau, new_tau, passes = carry
        return (passes < max_passes) & jnp.any(new_tau != tau)

    def body(carry):
        _, tau, passes = carry
        return tau, _support_mean_threshold(z, tau), passes + 1

    tau0 = jnp.full(z.shape[:-1] + (1,), -1.0, z.dtype)
    carry = (tau0, _support_mean_threshold(z, tau0), jnp.ones((), jnp.int32))
    tau, new_tau, _ = jax.lax.while_loop(cond, body, carry)
    return new_tau, jnp.all(new_tau == tau)


def _fixed_point_threshold(z: Array) -> Array:
    """tau [..., 1] for z [..., K] with max(z) = 0, without sorting.

    tau solves f(tau) = sum_j max(z_j - tau, 0) = 1. Newton's method on this convex, decreasing,
    piecewise-linear f is the iteration tau <- (sum_{z_j > tau} z_j - 1) / #{z_j > tau}
    (Michelot 1986; Condat 2016, "Fast projection onto the simplex", Sec. 3). Started left of the
    root, at tau_0 = max(z) - 1 <= tau(z), it rises monotonically, each step dropping at least
    one entry from the candidate support, and stops exactly at the fixed point, whose support
    {z_j > tau} is the sort's: entries on the threshold (ties included) are out in both, and tied
    entries are always on the same side. So it is exact, with at most K steps (a handful in
    practice). The loop runs on stop_gradient(z) and only picks the support; tau is then formed
    from z outside it, so d tau / d z = s / |S| as with the sort.
    """
    tau, _ = _fixed_point_iterate(jax.lax.stop_gradient(z), z.shape[-1] + 1)
    return _support_mean_threshold(z, jax.lax.stop_gradient(tau))


def _auto_threshold(z: Array) -> Array:
    """tau [..., 1] for z [..., K] with max(z) = 0: the fixed point, bounded, else the sort.

    For K <= FIXED_POINT_MAX_K the fixed point runs to convergence (its worst case, K passes, is
    no slower than the sort there). Beyond, it gets at most FIXED_POINT_MAX_PASSES passes; if
    any row of the call has not converged by then, the whole call takes the sort instead, chosen
    by `lax.cond` on one scalar, so the common case never runs the sort. Both branches give the
    sort's support and tau. Under a caller's `vmap` the predicate is batched and the cond becomes
    a select that computes both branches: still exact, only slower.
    """
    k = z.shape[-1]
    if k <= FIXED_POINT_MAX_K:
        return _fixed_point_threshold(z)
    tau, converged = _fixed_point_iterate(jax.lax.stop_gradient(z), FIXED_POINT_MAX_PASSES)
    return jax.lax.cond(
        converged,
        lambda z, tau: _support_mean_threshold(z, jax.lax.stop_gradient(tau)),
        lambda z, tau: _sort_threshold(z),
        z,
        tau,
    )


def _shifted_threshold(z: Array, method: str) -> tuple[Array, Array]:
    """(z - max(z), tau(z) - max(z)) along the last axis: [..., K] -> ([..., K], [..., 1])."""
    if method not in METHODS:
        raise ValueError(f"unknown sparsemax method {method!r}; valid: {', '.join(METHODS)}")
    # tau(z + c) = tau(z) + c, so the shift by m = max(z) changes nothing in exact arithmetic.
    # In floating point it matters: callers form z - tau from the two shifted values, which are
    # within 1 of 0 on the support, instead of from tau itself, which for logits around 1e4 is
    # rounded at a scale of 1e-3 in float32. It also makes k = 1 satisfy the condition exactly
    # (1 + 0 > 0), so the support is never empty. The shift is a constant for differentiation:
    # d tau / d c = 1 would cancel it anyway.
    m = jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    z = z - m
    thresholds = {"auto": _auto_threshold, "sort": _sort_threshold}
    tau = thresholds.get(method, _fixed_point_threshold)(z)
    return z, tau


def sparsemax_threshold(z: Array, axis: int = -1, *, method: str = "auto") -> Array:
    """The threshold tau(z) of sparsemax(z) = max(z - tau, 0) (Alg. 1 of the paper).

    Args:
      z: [..., K, ...] floating logits.
      axis: the axis projected onto the simplex.
      method: how tau is found, with the same result: "sort" (Alg. 1), "fixed_point" (no sort;
        see `_fixed_point_threshold`) or "auto" (fixed_point, limited to FIXED_POINT_MAX_PASSES
        passes when K > FIXED_POINT_MAX_K, with the sort for the whole call if a row needs
        more; see `_auto_threshold`).

    Returns:
      tau with `axis` removed: shape z.shape without axis, dtype of `z`. Differentiable, with
      d tau / d z = s / |S| where s indicates the support.
    """
    z = jnp.moveaxis(_check_floating(z), axis, -1)
    m = jax.lax.stop_gradient(jnp.max(z, axis=-1))
    return _shifted_threshold(z, method)[1][..., 0] + m


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _sparsemax_last(z: Array, method: str) -> Array:
    z_shifted, tau_shifted = _shifted_threshold(z, method)
    return jnp.maximum(z_shifted - tau_shifted, 0.0)


@_sparsemax_last.defjvp
def _sparsemax_last_jvp(method, primals, tangents):
    # Jacobian diag(s) - s s^T / |S| (Sec. 2.3 of the paper), where s indicates the support.
    # Written by hand: it is O(K) instead of differentiating through the sort, and it takes an
    # entry sitting exactly on the threshold (p_j = 0) as outside the support, where autodiff of
    # max(z - tau, 0) would give it half a derivative.
    (z,), (v,) = primals, tangents
    p = _sparsemax_last(z, method)
    s = (p > 0).astype(z.dtype)
    s_v = s * v
    mean_on_support = jnp.sum(s_v, axis=-1, keepdims=True) / jnp.sum(s, axis=-1, keepdims=True)
    return p, s_v - s * mean_on_support


def sparsemax(z: Array, axis: int = -1, *, method: str = "auto") -> Array:
    """Sparsemax: Euclidean projection of `z` onto the probability simplex along `axis` (eq. 2).

    Args:
      z: [..., K, ...] floating logits; finite values of any size (e.g. +-1e4) and ties are fine.
      axis: the axis whose entries become a probability vector.
      method: how the threshold is found, as in `sparsemax_threshold`; the same result.

    Returns:
      p with the shape and dtype of `z`: p >= 0, sums to 1 along `axis`, and is exactly 0 off the
      support S(z) = {j : z_j > tau(z)}. Its JVP is v -> s * v - s * sum(s * v) / |S|.
    """
    z = jnp.moveaxis(_check_floating(z), axis, -1)
    return jnp.moveaxis(_sparsemax_last(z, method), -1, axis)


def _loss_terms(z: Array, q: Array, method: str) -> tuple[Array, Array, Array]:
    """Per-example loss [...], sparsemax p [..., K] and z - tau [..., K] for z, q: [..., K].

    Eq. 18 of the paper, L = -z.q + 1/2 sum_{j in S} (z_j^2 - tau^2) + 1/2 ||q||^2, rearranged
    for sum(q) = 1 into 1/2 ||q - p||^2 + q . max(tau - z, 0), using z_j^2 - tau^2 =
    p_j (p_j + 2 tau) on S, sum(p) = 1 and z - tau - p = -max(tau - z, 0). The literal form
    subtracts squares of size 1e8 for logits of 1e4 and loses every digit of a small loss in
    float32; this one is a sum of two non-negative terms, so L >= 0 holds exactly.
    """
    z_shifted, tau_shifted = _shifted_threshold(z, method)
    margin = z_shifted - tau_shifted  # z - tau, formed where both are small
    p = jnp.maximum(margin, 0.0)
    gap = jnp.maximum(-margin, 0.0)  # max(tau - z, 0)
    loss = 0.5 * jnp.sum(jnp.square(q - p), axis=-1) + jnp.sum(q * gap, axis=-1)
    return loss, p, margin


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _sparsemax_loss_last(z: Array, q: Array, method: str) -> Array:
    return _loss_terms(z, q, method)[0]


@_sparsemax_loss_last.defjvp
def _sparsemax_loss_last_jvp(method, primals, tangents):
    # dL/dz = sparsemax(z) - q (Prop. 2 of the paper): L is continuously differentiable, so the
    # hand-written rule is right even at ties and support boundaries, where autodiff through the
    # sort and the max would pick one side. dL/dq = q - (z - tau) is the exact derivative of the
    # rearranged form for any q (it differs from eq. 18's q - z by tau * 1, which vanishes along
    # directions that keep q on the simplex).
    (z, q), (dz, dq) = primals, tangents
    loss, p, margin = _loss_terms(z, q, method)
    dloss = jnp.sum((p - q) * dz, axis=-1) + jnp.sum((q - margin) * dq, axis=-1)
    return loss, dloss


def sparsemax_loss(
    *,
    logits: Array,
    targets: Array,
    mask: Array | None = None,
    reduce: bool = True,
    method: str = "auto",
) -> Array:
    """Sparsemax loss (eq. 18 of Martins & Astudillo, 2016), the sparse analogue of cross-entropy.

    L(z; q) = -z.q + 1/2 sum_{j in S(z)} (z_j^2 - tau(z)^2) + 1/2 ||q||^2. It is >= 0, equals 0
    exactly when sparsemax(z) = q, and its gradient with respect to z is sparsemax(z) - q.

    Args:
      logits: [batch, K] floating logits (any leading shape [..., K] works the same way).
      targets: [batch, K] probability vectors (non-negative, each summing to 1; the rearranged
        formula relies on that), or [batch] integer class labels, taken as one-hot.
      mask: optional [batch], bool or 0/1 (any dtype); nonzero marks a real example. As in
        `dl.ops.losses`, masked examples are selected away, so even a NaN there cannot leak
        into the value.
      reduce: if True, return sum(loss * mask) / max(sum(mask), 1), i.e. the mean over unmasked
        examples (the plain mean when `mask` is None; 0 when nothing is unmasked). If False,
        return the per-example loss [batch], with masked examples set to 0.
      method: how the threshold is found, as in `sparsemax_threshold`; the same result.

    Returns:
      A scalar if `reduce`, else [batch]; dtype of `logits`.
    """
    z = _check_floating(logits)
    targets = jnp.asarray(targets)
    if jnp.issubdtype(targets.dtype, jnp.integer):
        if targets.shape != z.shape[:-1]:
            raise ValueError(f"integer targets must have shape {z.shape[:-1]}, got {targets.shape}")
        q = jax.nn.one_hot(targets, z.shape[-1], dtype=z.dtype)
    else:
        if targets.shape != z.shape:
            raise ValueError(f"probability targets must have shape {z.shape}, got {targets.shape}")
        q = targets.astype(z.dtype)
    loss = _sparsemax_loss_last(z, q, method)
    if mask is None:
        return jnp.mean(loss) if reduce else loss
    # The mask convention of dl.ops.losses: entries are selected with `where`, not multiplied
    # by 0, so a non-finite loss in a padded example cannot reach the value.
    mask = jnp.asarray(mask)
    if mask.shape != loss.shape:
        raise ValueError(f"mask shape {mask.shape} must equal the batch shape {loss.shape}")
    keep = mask if mask.dtype == jnp.bool_ else mask != 0
    loss = jnp.where(keep, loss, jnp.zeros_like(loss))
    if not reduce:
        return loss
    return jnp.sum(loss) / jnp.maximum(jnp.sum(keep, dtype=loss.dtype), 1.0)
