"""dl.objectives.language_model: token NLL vs numpy, the stream layout, chunked evaluation with
a carried state = one pass over the whole stream, and the truncated-BPTT loss's carry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.eval.metrics import perplexity
from dl.models.language_model import RNNLM, zero_carry
from dl.objectives.language_model import (
    chunk_nll,
    stream_layout,
    stream_loss,
    stream_nll,
    token_nll,
)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_token_nll_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32) * 3
    targets = rng.integers(0, 7, size=(2, 5))
    mask = (rng.random((2, 5)) > 0.3).astype(np.float32)
    lp = _log_softmax(logits.astype(np.float64))
    nll = -np.take_along_axis(lp, targets[..., None], -1)[..., 0]
    total, count = token_nll(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
    assert float(total) == pytest.approx((nll * mask).sum(), rel=1e-5)
    assert float(count) == mask.sum()
    total, count = token_nll(jnp.asarray(logits), jnp.asarray(targets))
    assert float(total) == pytest.approx(nll.sum(), rel=1e-5) and float(count) == 10


def test_perplexity_of_uniform_logits_is_the_vocabulary_size():
    total, count = token_nll(jnp.zeros((3, 4, 50)), jnp.ones((3, 4), jnp.int32))
    assert perplexity(float(total), float(count)) == pytest.approx(50.0, rel=1e-5)
    assert perplexity(2 * np.log(2.0), 2) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        perplexity(1.0, 0)


@pytest.mark.parametrize("rows,chunk", [(1, 4), (3, 5), (4, 100)])
def test_stream_layout_holds_every_pair_once_in_order(rows, chunk):
    tokens = np.arange(23)
    lay = stream_layout(tokens, rows=rows, chunk=chunk)
    C = lay["inputs"].shape[0]
    assert lay["inputs"].shape == (C, rows, chunk)
    per_row = lambda a: a.transpose(1, 0, 2).reshape(rows, -1)
    m = per_row(lay["mask"]).astype(bool)
    np.testing.assert_array_equal(per_row(lay["inputs"])[m], tokens[:-1])
    np.testing.assert_array_equal(per_row(lay["targets"])[m], tokens[1:])
    assert m.sum() == 22


def test_chunked_stream_nll_equals_one_pass_over_the_stream():
    model = RNNLM(vocab_size=10, embed=6, hidden=6, num_layers=2)
    tokens = np.random.default_rng(1).integers(0, 10, size=41).astype(np.int32)
    params = model.init(
        jax.random.PRNGKey(0), jnp.zeros((1, 3), jnp.int32), zero_carry(model, (1,))
    )["params"]
    total, count = stream_nll(model, params, tokens, zero_carry(model, (1,)), rows=1, chunk=7)
    logits, _ = model.apply({"params": params}, tokens[None, :-1], zero_carry(model, (1,)))
    lp = _log_softmax(np.asarray(logits[0], np.float64))
    expected = -lp[np.arange(40), tokens[1:]].sum()
    assert count == 40 and total == pytest.approx(expected, rel=1e-5)
    # Several rows: each row is its own stream from a zero state.
    total3, count3 = stream_nll(model, params, tokens, zero_carry(model, (3,)), rows=3, chunk=4)
    lay = stream_layout(tokens, rows=3, chunk=4)
    (s, _n), _ = chunk_nll(model)(
        params,
        zero_carry(model, (3,)),
        lay["inputs"].transpose(1, 0, 2).reshape(3, -1),
        lay["targets"].transpose(1, 0, 2).reshape(3, -1),
        lay["mask"].transpose(1, 0, 2).reshape(3, -1),
    )
    assert count3 == 40 and total3 == pytest.approx(float(s), rel=1e-5)


def test_stream_loss_carries_the_state_and_resets_it():
    model = RNNLM(vocab_size=10, embed=4, hidden=4, num_layers=2)
    rng = np.random.default_rng(2)
    x, y = (jnp.asarray(rng.integers(0, 10, size=(2, 5))) for _ in range(2))
    params = model.init(jax.random.PRNGKey(0), x, zero_carry(model, (2,)))["params"]
    carry = jax.tree.map(lambda c: c + 0.5, zero_carry(model, (2,)))
    loss_fn = stream_loss(model)
    for reset, start in ((0.0, carry), (1.0, zero_carry(model, (2,)))):
        batch = {"inputs": x, "targets": y, "reset": jnp.float32(reset)}
        loss, (metrics, extra) = loss_fn(params, {"carry": carry}, batch, jax.random.PRNGKey(1))
        logits, final = model.apply({"params": params}, x, start)
        total, count = token_nll(logits, y)
        assert float(loss) == pytest.approx(float(total / count), rel=1e-6)
        assert float(metrics["perplexity"]) == pytest.approx(float(jnp.exp(loss)), rel=1e-6)
        jax.tree.map(np.testing.assert_allclose, extra["carry"], final)
    # Truncated BPTT: no gradient reaches the incoming carry.
    g = jax.grad(
        lambda c: loss_fn(params, {"carry": c}, batch | {"reset": 0.0}, jax.random.PRNGKey(0))[0]
    )(carry)
    assert all(float(jnp.abs(leaf).max()) == 0.0 for leaf in jax.tree.leaves(g))
