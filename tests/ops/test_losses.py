"""Losses against closed forms, numpy/scipy/sklearn/torch, and property tests at +-1e4."""

import importlib.util

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
import sklearn.metrics
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dl.ops import losses

RNG = np.random.default_rng(0)
PROPERTY = settings(max_examples=40, deadline=None)


def _t(x):
    return torch.from_numpy(np.asarray(x, dtype=np.float64))


# Property tests use one fixed shape and module-level jitted functions so that every example
# reuses one compilation (hypothesis explores values; shapes are covered by the other tests).
B, K = 4, 5
EXTREME = st.one_of(st.floats(-1e4, 1e4, width=32), st.sampled_from([-1e4, 1e4, 0.0, 3.0]))


def _logits_strategy():
    """float32 logits [B, K] mixing ordinary values, +-1e4 extremes, zeros and ties."""
    return hnp.arrays(np.float32, (B, K), elements=EXTREME)


def _labels_strategy():
    return hnp.arrays(np.int32, (B,), elements=st.integers(0, K - 1))


# Jitted once per module: value per example and gradient of the mean, for the property tests.
_ce = jax.jit(lambda z, t: losses.cross_entropy(logits=z, targets=t, reduce=False))
_ce_grad = jax.jit(
    jax.grad(lambda z, t: jnp.sum(losses.cross_entropy(logits=z, targets=t, reduce=False)))
)
_bce = jax.jit(
    lambda z, y: losses.binary_cross_entropy_with_logits(logits=z, targets=y, reduce=False)
)
_bce_grad = jax.jit(
    jax.grad(lambda z, y: losses.binary_cross_entropy_with_logits(logits=z, targets=y))
)
_hinge = jax.jit(
    lambda z, y, m: losses.multiclass_hinge(logits=z, labels=y, margin=m, reduce=False)
)
_hinge_grad = jax.jit(
    jax.grad(lambda z, y, m: losses.multiclass_hinge(logits=z, labels=y, margin=m))
)
_perc = jax.jit(lambda z, y: losses.perceptron(logits=z, labels=y, reduce=False))
_kl = jax.jit(lambda p, q: losses.kl_divergence(p_logits=p, q_logits=q, reduce=False))
_kl_grad = jax.jit(
    jax.grad(lambda p, q: losses.kl_divergence(p_logits=p, q_logits=q), argnums=(0, 1))
)


def _np_log_softmax(z):
    return scipy.special.log_softmax(np.asarray(z, np.float64), axis=-1)


def _atol(z):
    # float32 arithmetic on logits of size |z| loses about eps32 * |z| absolutely.
    return 1e-6 * (1.0 + float(np.max(np.abs(z))))


# --------------------------------------------------------------------------------------------
# Regression losses.
# --------------------------------------------------------------------------------------------


def test_mse_mae_match_numpy_mean_over_features():
    p = RNG.normal(size=(5, 3, 2)).astype(np.float32)
    t = RNG.normal(size=(5, 3, 2)).astype(np.float32)
    per_mse = ((p.astype(np.float64) - t) ** 2).reshape(5, -1).mean(1)
    per_mae = np.abs(p.astype(np.float64) - t).reshape(5, -1).mean(1)
    np.testing.assert_allclose(
        losses.mse(predictions=p, targets=t, reduce=False), per_mse, rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.mae(predictions=p, targets=t, reduce=False), per_mae, rtol=1e-5
    )
    # Unmasked reduction is torch's reduction="mean" over all elements.
    np.testing.assert_allclose(
        losses.mse(predictions=p, targets=t), F.mse_loss(_t(p), _t(t)).item(), rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.mae(predictions=p, targets=t), F.l1_loss(_t(p), _t(t)).item(), rtol=1e-5
    )


@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
def test_huber_matches_torch_huber_and_smooth_l1(delta):
    p = (3 * RNG.normal(size=(64, 4))).astype(np.float32)
    t = RNG.normal(size=(64, 4)).astype(np.float32)
    ours = losses.huber(predictions=p, targets=t, delta=delta, reduce=False)
    ref = F.huber_loss(_t(p), _t(t), delta=delta, reduction="none").numpy().mean(1)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)
    smooth = F.smooth_l1_loss(_t(p), _t(t), beta=delta, reduction="none").numpy().mean(1)
    np.testing.assert_allclose(np.asarray(ours) / delta, smooth, rtol=1e-5, atol=1e-7)


def test_huber_gradient_is_clipped_residual():
    p = jnp.array([-5.0, -0.5, 0.0, 0.2, 4.0])
    g = jax.grad(
        lambda x: jnp.sum(
            losses.huber(predictions=x, targets=jnp.zeros(5), delta=1.0, reduce=False)
        )
    )(p)
    np.testing.assert_allclose(g, np.clip(np.asarray(p), -1.0, 1.0), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Cross-entropy.
# --------------------------------------------------------------------------------------------


def test_cross_entropy_matches_torch_labels_soft_and_smoothing():
    z = RNG.normal(size=(6, 5)).astype(np.float32) * 3
    y = RNG.integers(0, 5, size=6)
    soft = RNG.dirichlet(np.ones(5), size=6).astype(np.float32)
    np.testing.assert_allclose(
        losses.cross_entropy(logits=z, targets=y, reduce=False),
        F.cross_entropy(_t(z), torch.from_numpy(y), reduction="none").numpy(),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        losses.cross_entropy(logits=z, targets=soft, reduce=False),
        F.cross_entropy(_t(z), _t(soft), reduction="none").numpy(),
        rtol=1e-5,
    )
    for eps in (0.1, 0.3):
        np.testing.assert_allclose(
            losses.cross_entropy(logits=z, targets=y, label_smoothing=eps, reduce=False),
            F.cross_entropy(
                _t(z), torch.from_numpy(y), label_smoothing=eps, reduction="none"
            ).numpy(),
            rtol=1e-5,
        )
        np.testing.assert_allclose(
            losses.cross_entropy(logits=z, targets=soft, label_smoothing=eps, reduce=False),
            F.cross_entropy(_t(z), _t(soft), label_smoothing=eps, reduction="none").numpy(),
            rtol=1e-5,
        )


def test_cross_entropy_sequence_batch_dims_and_mask():
    z = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    y = RNG.integers(0, 4, size=(2, 3))
    m = np.array([[1, 1, 0], [1, 0, 0]])
    per = -np.take_along_axis(_np_log_softmax(z), y[..., None], -1)[..., 0]
    np.testing.assert_allclose(
        losses.cross_entropy(logits=z, targets=y, mask=m), (per * m).sum() / m.sum(), rtol=1e-5
    )


@PROPERTY
@given(
    _logits_strategy(),
    _labels_strategy(),
    hnp.arrays(np.float32, (B, K), elements=st.floats(0.0, 1.0, width=32)),
)
def test_cross_entropy_three_target_kinds_agree_and_match_float64(z, y, soft):
    onehot = np.eye(K, dtype=np.float32)[y]
    ref = -np.take_along_axis(_np_log_softmax(z), y[:, None], -1)[:, 0]
    from_labels = np.asarray(_ce(z, y))
    assert np.all(np.isfinite(from_labels)) and np.all(from_labels >= 0)
    np.testing.assert_allclose(from_labels, ref, rtol=1e-5, atol=_atol(z))
    np.testing.assert_allclose(_ce(z, onehot), from_labels, rtol=1e-6, atol=_atol(z))
    soft = (soft + 1e-3) / (soft + 1e-3).sum(-1, keepdims=True)
    soft_ref = -(soft.astype(np.float64) * _np_log_softmax(z)).sum(-1)
    np.testing.assert_allclose(_ce(z, soft), soft_ref, rtol=1e-5, atol=K * _atol(z))


@PROPERTY
@given(_logits_strategy())
def test_cross_entropy_gradient_is_softmax_minus_onehot(z):
    y = np.argmin(z, axis=-1).astype(np.int32)  # the worst class: the gradient is far from zero
    g = _ce_grad(z, y)
    expected = scipy.special.softmax(np.float64(z), axis=-1) - np.eye(K)[y]
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, expected, atol=1e-6)


def test_cross_entropy_rejects_mismatched_targets():
    with pytest.raises(ValueError, match="must match logits"):
        losses.cross_entropy(logits=jnp.zeros((2, 3)), targets=jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="must have shape"):
        losses.cross_entropy(logits=jnp.zeros((2, 3)), targets=jnp.zeros((3,), jnp.int32))


# --------------------------------------------------------------------------------------------
# Binary cross-entropy.
# --------------------------------------------------------------------------------------------


def test_bce_matches_torch():
    z = (RNG.normal(size=(8, 3)) * 4).astype(np.float32)
    y = RNG.uniform(size=(8, 3)).astype(np.float32)
    ref = F.binary_cross_entropy_with_logits(_t(z), _t(y), reduction="none").numpy()
    np.testing.assert_allclose(
        losses.binary_cross_entropy_with_logits(logits=z, targets=y, reduce=False),
        ref.mean(1),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        losses.binary_cross_entropy_with_logits(logits=z, targets=y), ref.mean(), rtol=1e-5
    )


@PROPERTY
@given(
    hnp.arrays(np.float32, (16,), elements=EXTREME),
    hnp.arrays(np.float32, (16,), elements=st.sampled_from([0.0, 1.0, 0.25])),
)
def test_bce_stable_at_extremes(z, y):
    ours = np.asarray(_bce(z, y))
    z64, y64 = z.astype(np.float64), y.astype(np.float64)
    # -y log sigmoid(z) - (1-y) log sigmoid(-z) with scipy's stable log_expit.
    ref = -y64 * scipy.special.log_expit(z64) - (1 - y64) * scipy.special.log_expit(-z64)
    assert np.all(np.isfinite(ours)) and np.all(ours >= 0)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=_atol(z))
    # The gradient is exactly (sigmoid(z) - y) / n, also at the kink-free z = 0.
    np.testing.assert_allclose(
        _bce_grad(z, y), (scipy.special.expit(z64) - y64) / z.size, atol=1e-7
    )


# --------------------------------------------------------------------------------------------
# Hinge and perceptron.
# --------------------------------------------------------------------------------------------


def _np_crammer_singer(z, y, margin):
    z = np.float64(z)
    true = z[np.arange(len(y)), y]
    other = np.where(np.eye(z.shape[1], dtype=bool)[y], -np.inf, z).max(1)
    return np.maximum(0, margin + other - true)


def test_multiclass_hinge_matches_sklearn_crammer_singer():
    z = RNG.normal(size=(50, 4)).astype(np.float32)
    y = RNG.integers(0, 4, size=50)
    ours = losses.multiclass_hinge(logits=z, labels=y)
    # sklearn's multiclass hinge_loss is the Crammer-Singer form with margin 1.
    np.testing.assert_allclose(
        ours, sklearn.metrics.hinge_loss(y, z, labels=np.arange(4)), rtol=1e-5
    )


def test_multiclass_hinge_two_classes_is_twice_torch_multi_margin():
    # For K=2 torch's Weston-Watkins sum has one wrong class and divides by K=2.
    z = RNG.normal(size=(20, 2)).astype(np.float32)
    y = RNG.integers(0, 2, size=20)
    ref = F.multi_margin_loss(_t(z), torch.from_numpy(y), margin=0.7, reduction="none").numpy()
    np.testing.assert_allclose(
        losses.multiclass_hinge(logits=z, labels=y, margin=0.7, reduce=False),
        2 * ref,
        rtol=1e-5,
        atol=1e-7,
    )


@PROPERTY
@given(_logits_strategy(), _labels_strategy(), st.sampled_from([0.0, 0.5, 1.0]))
def test_hinge_and_perceptron_properties(z, y, margin):
    hinge = np.asarray(_hinge(z, y, margin))
    assert np.all(np.isfinite(hinge)) and np.all(hinge >= 0)
    np.testing.assert_allclose(hinge, _np_crammer_singer(z, y, margin), rtol=1e-6, atol=_atol(z))
    # The multiclass perceptron criterion is the hinge with zero margin.
    np.testing.assert_allclose(_perc(z, y), _np_crammer_singer(z, y, 0.0), rtol=1e-6, atol=_atol(z))
    assert np.all(np.isfinite(_hinge_grad(z, y, margin)))


def test_binary_perceptron_and_hinge_identity():
    z = RNG.normal(size=30).astype(np.float32)
    y = np.where(RNG.uniform(size=30) < 0.5, -1, 1)
    np.testing.assert_allclose(
        losses.perceptron(logits=z, labels=y, reduce=False),
        np.maximum(0, -y * z.astype(np.float64)),
        rtol=1e-6,
    )
    # Binary scores z are the two-class logits (0, z) with label (y+1)/2: same criterion.
    two_class = np.stack([np.zeros_like(z), z], 1)
    np.testing.assert_allclose(
        losses.perceptron(logits=z, labels=y, reduce=False),
        losses.perceptron(logits=two_class, labels=(y + 1) // 2, reduce=False),
        rtol=1e-6,
    )


# --------------------------------------------------------------------------------------------
# Divergences.
# --------------------------------------------------------------------------------------------


def test_kl_divergence_matches_scipy_entropy_and_torch():
    p = RNG.dirichlet(np.ones(5), size=7)
    q = RNG.dirichlet(np.ones(5), size=7)
    ours = losses.kl_divergence(
        p_logits=np.log(p).astype(np.float32), q_logits=np.log(q).astype(np.float32), reduce=False
    )
    np.testing.assert_allclose(ours, scipy.stats.entropy(p, q, axis=-1), rtol=1e-4, atol=1e-6)
    ref = F.kl_div(_t(np.log(q)), _t(np.log(p)), log_target=True, reduction="none").sum(-1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)
    # Logits and log-probabilities give the same answer (log-softmax is shift invariant).
    shifted = losses.kl_divergence(
        p_logits=np.log(p).astype(np.float32) + 7.0,
        q_logits=np.log(q).astype(np.float32) - 3.0,
        reduce=False,
    )
    np.testing.assert_allclose(shifted, ours, rtol=1e-4, atol=1e-6)


def test_kl_divergence_zero_probability_classes():
    log_p = jnp.log(jnp.array([[0.5, 0.5, 0.0]]))  # -inf entry: 0 log 0 = 0
    log_q = jnp.log(jnp.array([[0.25, 0.25, 0.5]]))
    val = losses.kl_divergence(p_logits=log_p, q_logits=log_q)
    np.testing.assert_allclose(val, np.log(2.0), rtol=1e-6)
    g = jax.grad(lambda a, b: losses.kl_divergence(p_logits=a, q_logits=b), argnums=(0, 1))(
        log_p, log_q
    )
    assert all(np.all(np.isfinite(x)) for x in g)
    # Support of p outside the support of q: infinite divergence.
    assert np.isinf(losses.kl_divergence(p_logits=log_q, q_logits=log_p))


@PROPERTY
@given(_logits_strategy(), _logits_strategy())
def test_kl_divergence_extremes_finite_nonnegative(zp, zq):
    ours = np.asarray(_kl(zp, zq))
    lp, lq = _np_log_softmax(zp), _np_log_softmax(zq)
    ref = np.sum(np.exp(lp) * (lp - lq), axis=-1)
    scale = np.max(np.abs(zp)) + np.max(np.abs(zq))
    atol = K * 1e-6 * (1 + scale)
    assert np.all(np.isfinite(ours)) and np.all(ours >= -atol)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=atol)
    np.testing.assert_allclose(_kl(zp, zp), 0.0, atol=1e-7 * (1 + np.max(np.abs(zp))))
    assert all(np.all(np.isfinite(g)) for g in _kl_grad(zp, zq))


def test_gaussian_kl_matches_torch_distributions():
    m, lv = RNG.normal(size=(6, 3)), RNG.normal(size=(6, 3))
    pm, plv = RNG.normal(size=(6, 3)), RNG.normal(size=(6, 3))
    ours = losses.gaussian_kl(
        mean=np.float32(m),
        logvar=np.float32(lv),
        prior_mean=np.float32(pm),
        prior_logvar=np.float32(plv),
        reduce=False,
    )
    q = torch.distributions.Normal(_t(m), _t(np.exp(0.5 * lv)))
    p = torch.distributions.Normal(_t(pm), _t(np.exp(0.5 * plv)))
    ref = torch.distributions.kl_divergence(q, p).sum(-1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_gaussian_kl_standard_prior_and_monte_carlo():
    m = np.array([[0.3, -1.2]], np.float32)
    lv = np.array([[0.5, -0.7]], np.float32)
    # Kingma & Welling (2014) eq. 10 for the N(0, I) prior.
    closed = -0.5 * np.sum(1 + lv - m.astype(np.float64) ** 2 - np.exp(lv))
    np.testing.assert_allclose(losses.gaussian_kl(mean=m, logvar=lv), closed, rtol=1e-6)
    # Monte Carlo E_q[log q - log p] with 200k draws: standard error about 2e-3.
    std = np.exp(0.5 * lv[0].astype(np.float64))
    x = m[0] + std * RNG.normal(size=(200_000, 2))
    mc = (scipy.stats.norm.logpdf(x, m[0], std) - scipy.stats.norm.logpdf(x)).sum(1)
    assert abs(mc.mean() - closed) < 5 * mc.std() / np.sqrt(len(mc))


# --------------------------------------------------------------------------------------------
# Mask / reduce convention, registry.
# --------------------------------------------------------------------------------------------


def _all_losses_on_batch(b=5, k=4):
    z = RNG.normal(size=(b, k)).astype(np.float32)
    y = RNG.integers(0, k, size=b)
    return {
        "mse": {"predictions": z, "targets": z[::-1].copy()},
        "mae": {"predictions": z, "targets": z[::-1].copy()},
        "huber": {"predictions": z, "targets": z[::-1].copy()},
        "cross_entropy": {"logits": z, "targets": y},
        "binary_cross_entropy_with_logits": {"logits": z, "targets": (z > 0).astype(np.float32)},
        "multiclass_hinge": {"logits": z, "labels": y},
        "perceptron": {"logits": z, "labels": y},
        "kl_divergence": {"p_logits": z, "q_logits": z[::-1].copy()},
        "gaussian_kl": {"mean": z, "logvar": z[::-1].copy()},
    }


@pytest.mark.parametrize("name", sorted(_all_losses_on_batch()))
def test_mask_and_reduce_convention(name):
    fn = losses.get_loss(name)
    kwargs = _all_losses_on_batch()[name]
    per = np.asarray(fn(**kwargs, reduce=False))
    assert per.shape == (5,)
    np.testing.assert_allclose(fn(**kwargs), per.mean(), rtol=1e-6)
    mask = np.array([1, 0, 1, 1, 0])
    np.testing.assert_allclose(fn(**kwargs, mask=mask), (per * mask).sum() / 3, rtol=1e-6)
    np.testing.assert_allclose(
        fn(**kwargs, mask=mask.astype(bool)), (per * mask).sum() / 3, rtol=1e-6
    )
    np.testing.assert_allclose(fn(**kwargs, mask=mask, reduce=False), per * mask, rtol=1e-6)
    np.testing.assert_array_equal(fn(**kwargs, mask=np.zeros(5)), 0.0)  # not NaN
    with pytest.raises(ValueError, match="mask shape"):
        fn(**kwargs, mask=np.ones(4))


def test_masked_padding_with_nan_does_not_leak():
    z = np.array([[1.0, 2.0], [np.nan, np.inf]], np.float32)
    val = losses.cross_entropy(logits=z, targets=np.array([0, 1]), mask=np.array([1, 0]))
    np.testing.assert_allclose(val, -_np_log_softmax(z[:1])[0, 0], rtol=1e-6)


def test_jit_traces_once():
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(z, y):
        return losses.cross_entropy(logits=z, targets=y)

    z = jnp.zeros((3, 4))
    for i in range(3):
        f(z + i, jnp.array([0, 1, 2]))


def test_registry_errors_list_names():
    with pytest.raises(ValueError, match="cross_entropy.*gaussian_kl"):
        losses.get_loss("nope")
    assert losses.get_loss("huber") is losses.huber


@pytest.mark.skipif(
    importlib.util.find_spec("dl.ops.sparsemax") is None, reason="dl.ops.sparsemax not written yet"
)
def test_sparsemax_registry_entry_delegates():
    from dl.ops.sparsemax import sparsemax_loss

    z = RNG.normal(size=(4, 5)).astype(np.float32)
    y = RNG.integers(0, 5, size=4)
    np.testing.assert_allclose(
        losses.get_loss("sparsemax")(logits=z, targets=y, reduce=False),
        sparsemax_loss(logits=z, targets=y, reduce=False),
        rtol=1e-6,
    )
