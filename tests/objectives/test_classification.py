"""Classification objectives: masked means against numpy, penalties on weights only, exact
dataset means from summed eval batches."""

import jax
import numpy as np
import pytest

from dl.data import ArrayData, eval_batches
from dl.nn.mlp import MLP
from dl.objectives.classification import LABEL_LOSSES, classifier_eval, classifier_loss
from dl.ops.regularizers import l1_penalty, l2_penalty
from dl.train.state import TrainState
from dl.train.step import evaluate


def _setup(n=10):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=n).astype(np.int32)
    model = MLP(hidden=(5,), out=3)
    params = model.init(jax.random.PRNGKey(0), x)["params"]
    return model, params, x, y


def _np_xent(logits, y):
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y]


def test_masked_loss_is_mean_over_valid_rows_plus_weight_penalties():
    model, params, x, y = _setup()
    mask = np.array([1, 1, 1, 0, 1, 1, 0, 1, 1, 1], np.float32)
    fn = classifier_loss(model, l2=0.1, l1=0.01)
    loss, (metrics, _) = fn(params, {}, {"x": x, "y": y, "mask": mask}, jax.random.PRNGKey(0))
    logits = np.asarray(model.apply({"params": params}, x))
    data = _np_xent(logits, y)[mask == 1].mean()
    weights = [np.asarray(params[k]["kernel"]) for k in ("dense_0", "head")]
    l2 = 0.5 * sum((w**2).sum() for w in weights)
    l1 = sum(np.abs(w).sum() for w in weights)
    np.testing.assert_allclose(metrics["data_loss"], data, rtol=1e-5)
    np.testing.assert_allclose(loss, data + 0.1 * l2 + 0.01 * l1, rtol=1e-5)
    np.testing.assert_allclose(l2_penalty(params), l2, rtol=1e-5)
    np.testing.assert_allclose(l1_penalty(params), l1, rtol=1e-5)
    acc = (logits.argmax(1) == y)[mask == 1].mean()
    np.testing.assert_allclose(metrics["accuracy"], acc, rtol=1e-6)


@pytest.mark.parametrize("batch_size", [3, 4, 10, 16])
def test_evaluate_gives_exact_means_for_any_batch_size(batch_size):
    model, params, x, y = _setup(n=10)
    state = TrainState.create(
        apply_fn=model.apply,
        params=params,
        tx=__import__("optax").sgd(0.1),
        rng=jax.random.PRNGKey(0),
    )
    means = evaluate(classifier_eval(model), state, eval_batches(ArrayData(x, y), batch_size))
    logits = np.asarray(model.apply({"params": params}, x))
    np.testing.assert_allclose(means["loss"], _np_xent(logits, y).mean(), rtol=1e-5)
    np.testing.assert_allclose(means["accuracy"], (logits.argmax(1) == y).mean(), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(LABEL_LOSSES))
def test_every_label_loss_trains_through_the_objective(name):
    model, params, x, y = _setup()
    fn = classifier_loss(model, loss=name)
    batch = {"x": x, "y": y, "mask": np.ones(len(y), np.float32)}
    (loss, _), grads = jax.value_and_grad(fn, has_aux=True)(
        params, {}, batch, jax.random.PRNGKey(0)
    )
    assert np.isfinite(loss) and loss >= 0
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    eval_sums = classifier_eval(model, loss=name)(params, {}, batch)
    np.testing.assert_allclose(eval_sums["loss"] / eval_sums["count"], loss, rtol=1e-5)


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ValueError, match="cross_entropy"):
        classifier_loss(MLP(hidden=(), out=2), loss="nope")
