"""dl.models.language_model.RNNLM: shapes, tying, and one-step decoding = the full pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.models.language_model import RNNLM, cell_builder, step_fn, zero_carry


def _init(model, batch=3, time=7):
    tokens = jax.random.randint(jax.random.PRNGKey(1), (batch, time), 0, model.vocab_size)
    params = model.init(jax.random.PRNGKey(0), tokens, zero_carry(model, (batch,)))["params"]
    return params, tokens


@pytest.mark.parametrize("cell", ["lstm", "gru", "lstm:NP", "lstm:FGR"])
def test_step_by_step_equals_the_full_sequence(cell):
    model = RNNLM(vocab_size=11, embed=6, hidden=5, num_layers=2, cell=cell)
    params, tokens = _init(model)
    full, final = model.apply({"params": params}, tokens, zero_carry(model, (3,)))
    step = jax.jit(step_fn(model))
    carry, outs = zero_carry(model, (3,)), []
    for t in range(tokens.shape[1]):
        logits, carry = step(params, tokens[:, t], carry)
        outs.append(logits)
    np.testing.assert_allclose(np.stack(outs, 1), full, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), carry, final)


def test_tied_logits_are_h_times_the_embedding_transposed():
    model = RNNLM(vocab_size=13, embed=8, hidden=8, num_layers=1, tie=True)
    params, tokens = _init(model)
    assert "out" not in params and params["out_bias"].shape == (13,)
    logits, _ = model.apply({"params": params}, tokens, zero_carry(model, (3,)))
    untied = RNNLM(vocab_size=13, embed=8, hidden=8, num_layers=1)
    p2 = {k: v for k, v in params.items() if k != "out_bias"}
    p2["out"] = {"kernel": params["embedding"]["embedding"].T, "bias": params["out_bias"]}
    np.testing.assert_allclose(
        logits, untied.apply({"params": p2}, tokens, zero_carry(untied, (3,)))[0], rtol=1e-6
    )


def test_dropout_only_when_training():
    model = RNNLM(
        vocab_size=9, embed=4, hidden=4, dropout=0.5, variational=True, recurrent_dropout=0.3
    )
    params, tokens = _init(model)
    c = zero_carry(model, (3,))
    a = model.apply({"params": params}, tokens, c)[0]
    b = model.apply(
        {"params": params}, tokens, c, train=True, rngs={"dropout": jax.random.PRNGKey(2)}
    )[0]
    assert np.all(np.isfinite(b)) and not np.allclose(a, b)
    np.testing.assert_array_equal(a, model.apply({"params": params}, tokens, c)[0])


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="embed == hidden"):
        _init(RNNLM(vocab_size=9, embed=4, hidden=5, tie=True))
    with pytest.raises(ValueError, match="variational"):
        _init(RNNLM(vocab_size=9, embed=4, hidden=4, recurrent_dropout=0.2))
    with pytest.raises(ValueError, match="cell must be"):
        cell_builder("rnn")
    assert jnp.shape(zero_carry(RNNLM(9, 4, 4, num_layers=3, cell="gru"), (2,))[2]) == (2, 4)
