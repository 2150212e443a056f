"""dl.models.seq2seq: step-by-step decoding reproduces teacher forcing exactly, padding of the
source changes nothing, the sown attention weights are a masked distribution per step, and the
parameter count is the one the architecture implies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.models.seq2seq import Seq2Seq, start_fn, step_fn

SRC = np.array([[3, 4, 5, 6, 0, 0], [1, 2, 3, 4, 5, 6], [7, 0, 0, 0, 0, 0]], np.int32)
LENGTHS = np.array([4, 6, 1], np.int32)
TGT_IN = np.array([[1, 5, 6, 2], [1, 7, 8, 9], [1, 3, 0, 0]], np.int32)


def random_params(model, seed=0):
    """Parameters of the init's shapes drawn in numpy: jitting `model.init` compiles every
    initializer's threefry (~5 CPU s per model); the tests only need some parameters."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), SRC, LENGTHS, TGT_IN)
    rng = np.random.default_rng(seed)
    draw = lambda s: (0.5 * rng.normal(size=s.shape)).astype(s.dtype)
    return jax.tree.map(draw, shapes)


def _run_both(model):
    """(teacher-forced logits, step-by-step logits, sown attention or None)."""
    v = random_params(model)

    @jax.jit
    def both(params):
        logits, inter = model.apply(
            {"params": params}, SRC, LENGTHS, TGT_IN, mutable=["intermediates"]
        )
        state = start_fn(model)(params, SRC, LENGTHS)
        step = step_fn(model)

        def body(state, tokens):
            out, state = step(params, tokens, state)
            return state, out

        _, stepped = jax.lax.scan(body, state, TGT_IN.T)
        return logits, jnp.moveaxis(stepped, 0, 1), inter

    logits, stepped, inter = both(v["params"])
    weights = inter.get("intermediates", {}).get("attend", {}).get("attention")
    return v["params"], np.asarray(logits), np.asarray(stepped), weights


@pytest.mark.parametrize(
    "kw",
    [
        {"cell": "gru", "attention": "additive", "num_layers": 2},
        {"cell": "lstm", "attention": "general", "normalize": "sparsemax"},
        {"cell": "gru", "attention": None, "input_feeding": False},
    ],
)
def test_decode_steps_equal_teacher_forcing(kw):
    model = Seq2Seq(10, 11, embed=5, hidden=8, **kw)
    _params, logits, stepped, weights = _run_both(model)
    assert logits.shape == (3, 4, 11)
    np.testing.assert_array_equal(stepped, logits)
    if kw["attention"] is None:
        assert weights is None
        return
    w = np.asarray(weights[0])
    assert w.shape == (3, 4, 6)  # [B, T, S]
    mask = np.arange(6)[None, :] < LENGTHS[:, None]
    assert np.all(w[~np.broadcast_to(mask[:, None, :], w.shape)] == 0.0)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)


def test_source_padding_changes_nothing_and_param_count():
    model = Seq2Seq(10, 11, embed=5, hidden=8, cell="gru", attention="additive")
    v = random_params(model, 1)
    wider = np.concatenate([SRC, np.full((3, 3), 9, np.int32)], axis=1)  # junk past lengths
    apply = jax.jit(model.apply)
    np.testing.assert_allclose(
        apply(v, wider, LENGTHS, TGT_IN), apply(v, SRC, LENGTHS, TGT_IN), atol=1e-6
    )
    e, h, enc, a, vs, vt = 5, 8, 4, 8, 10, 11
    gru = lambda i, u: i * 3 * u + 3 * u + u * 3 * u + u  # input/kernel+bias, W_h, b_hn
    expected = (
        vs * e
        + vt * e
        + 2 * gru(e, enc)  # bidirectional encoder
        + (2 * enc) * h
        + h  # bridge
        + (2 * enc) * a
        + a
        + h * a
        + a  # attention W, b, U, v
        + gru(e + h, h)  # decoder cell with input feeding
        + (2 * enc + h) * h  # combine W_c
        + h * vt
        + vt  # output layer
    )
    assert sum(x.size for x in jax.tree.leaves(v["params"])) == expected


def test_bad_configs_raise():
    init = lambda m: m.init(jax.random.PRNGKey(0), SRC, LENGTHS, TGT_IN)
    with pytest.raises(ValueError, match="cell must be"):
        init(Seq2Seq(10, 11, 5, 8, cell="rnn"))
    with pytest.raises(ValueError, match="attention must be"):
        init(Seq2Seq(10, 11, 5, 8, attention="local"))
    with pytest.raises(ValueError, match="dot attention needs"):
        init(Seq2Seq(10, 11, 5, 8, attention="dot", encoder_hidden=3))
