"""Sequence layers: padding invariance (outputs, masked losses and their gradients, final
carries), the backward direction of Bidirectional against the reversed unpadded sequence,
truncated BPTT, the masks of variational (Gal & Ghahramani) and per-step (Zaremba) dropout,
vmap, and no recompilation across batches of one shape."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.nn import (
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    Elman,
    SequenceDropout,
    StackedRNN,
    detach_carry,
    reverse_padded,
)

B, T, I, H = 3, 4, 3, 5
LENGTHS = np.array([4, 2, 0], np.int32)


def _normal(seed, shape, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def _params(model, *args, scale=0.5):
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), *args)["params"]
    leaves, tree = jax.tree.flatten(shapes)
    return tree.unflatten(
        [jnp.asarray(_normal(k + 10, a.shape, scale)) for k, a in enumerate(leaves)]
    )


def _close(a, b, what, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol, err_msg=what)


CELLS = {"elman": Elman(H), "lstm": LSTM(H), "gru": GRU(H)}


@pytest.mark.parametrize("name", list(CELLS))
def test_padding_changes_nothing_and_final_carry_is_last_real_step(name):
    model = RNN(CELLS[name])
    x = _normal(0, (B, T, I))
    params = _params(model, x)
    cot = _normal(1, (B, T + 3, H))

    @jax.jit
    def run(params, x, lengths):
        def loss(params, x):
            y, carry = model.apply({"params": params}, x, lengths)
            return jnp.vdot(y, cot[:, : x.shape[1]]), (y, carry)

        return jax.grad(loss, (0, 1), has_aux=True)(params, x)

    (gp, gx), (y, carry) = run(params, x, LENGTHS)
    for extra in (3,):  # any junk in the padding: it must not matter
        xp = np.concatenate([x, _normal(extra, (B, extra, I), 10.0)], axis=1)
        xp[1, 2:] = 10.0 * _normal(7, (T + extra - 2, I))
        (gp2, gx2), (y2, carry2) = run(params, xp, LENGTHS)
        _close(y2[:, :T], y, f"outputs, padded by {extra}")
        np.testing.assert_array_equal(y2[:, T:], 0.0)
        jax.tree.map(lambda a, b: _close(a, b, "final carry"), carry2, carry)
        jax.tree.map(lambda a, b: _close(a, b, "masked-loss parameter gradient"), gp2, gp)
        _close(gx2[:, :T], gx, "input gradient")
        np.testing.assert_array_equal(gx2[1, 2:], 0.0)
    np.testing.assert_array_equal(y[1, 2:], 0.0)
    # The cell stepped by hand over the unpadded steps: every carry on the way, one compile.
    cell = CELLS[name]

    @jax.jit
    def by_hand(params, x):
        carry, ys, carries = cell.initialize_carry((B,)), [], []
        for t in range(T):
            carry, y_t = cell.apply({"params": params["cell"]}, carry, x[:, t])
            ys.append(y_t)
            carries.append(carry)
        return jnp.stack(ys, 1), carries

    ys, carries = by_hand(params, x)
    for b, n in enumerate(LENGTHS):
        _close(y[b, :n], ys[b, :n], f"sequence {b}'s real steps")
        last = cell.initialize_carry((B,)) if n == 0 else carries[n - 1]
        for a, c in zip(jax.tree.leaves(carry), jax.tree.leaves(last), strict=True):
            _close(a[b], c[b], f"final carry of sequence {b} (length {n})")


def test_reverse_padded():
    x = jnp.arange(2 * 4, dtype=jnp.float32).reshape(2, 4, 1)
    y = reverse_padded(x, jnp.array([3, 0], jnp.int32))
    np.testing.assert_array_equal(y[..., 0], [[2, 1, 0, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(reverse_padded(y, jnp.array([3, 0], jnp.int32)), x)
    np.testing.assert_array_equal(reverse_padded(x, None), x[:, ::-1])


def test_bidirectional_backward_is_the_reversed_unpadded_sequence():
    model = Bidirectional(GRU(H), LSTM(H, variant="NP"))
    x = _normal(0, (B, T + 2, I))
    params = _params(model, x, LENGTHS)
    y, (fwd, bwd) = jax.jit(model.apply)({"params": params}, x, LENGTHS)
    assert y.shape == (B, T + 2, 2 * H)
    np.testing.assert_array_equal(y[1, 2:], 0.0)
    for b, n in enumerate(LENGTHS[:2]):
        yf, cf = jax.jit(RNN(GRU(H)).apply)(
            {"params": {"cell": params["forward_cell"]}}, x[b : b + 1, :n]
        )
        back = RNN(LSTM(H, variant="NP"))
        yb, cb = jax.jit(back.apply)(
            {"params": {"cell": params["backward_cell"]}}, x[b : b + 1, :n][:, ::-1]
        )
        _close(y[b, :n, :H], yf[0], "forward outputs")
        _close(y[b, :n, H:], yb[0, ::-1], "backward outputs")
        _close(fwd[b], cf[0], "forward final carry")
        for a, c in zip(jax.tree.leaves(bwd), jax.tree.leaves(cb), strict=True):
            _close(a[b], c[0], "backward final carry")


def test_truncated_bptt_carries_state_and_stops_its_gradient():
    model = RNN(LSTM(H, variant="NP"))
    x = _normal(0, (B, 2 * T, I))
    params = _params(model, x)
    apply = jax.jit(model.apply)
    y, _ = apply({"params": params}, x)
    y1, carry = apply({"params": params}, x[:, :T])
    y2, _ = apply({"params": params}, x[:, T:], None, detach_carry(carry))
    _close(jnp.concatenate([y1, y2], 1), y, "two halves with the carry passed on")

    def second_half(x_first):
        _, carry = model.apply({"params": params}, x_first)
        y2, _ = model.apply({"params": params}, x[:, T:], None, detach_carry(carry))
        return jnp.sum(y2)

    np.testing.assert_array_equal(jax.jit(jax.grad(second_half))(x[:, :T]), 0.0)


def _drop(model, x, seed):
    return model.apply({}, x, train=True, rngs={"dropout": jax.random.PRNGKey(seed)})


def test_variational_dropout_one_mask_per_sequence():
    x = jnp.ones((8, 6, 16))
    model = SequenceDropout(0.5, variational=True)
    y = _drop(model, x, 0)
    np.testing.assert_array_equal(y, jnp.broadcast_to(y[:, :1], y.shape))  # same at every step
    assert len({tuple(np.asarray(row)) for row in y[:, 0]}) == 8  # a new mask per sequence
    assert set(np.unique(y)) == {0.0, 2.0}
    np.testing.assert_array_equal(model.apply({}, x, train=False), x)


def test_zaremba_dropout_fresh_mask_per_step():
    x = jnp.ones((2, 6, 16))
    y = _drop(SequenceDropout(0.5), x, 0)
    assert all(not np.array_equal(y[0, t], y[0, t + 1]) for t in range(5))
    assert set(np.unique(y)) == {0.0, 2.0}
    np.testing.assert_array_equal(SequenceDropout(0.5).apply({}, x, train=False), x)


def test_recurrent_dropout_mask_is_fixed_over_time():
    """Elman with W_x = 0, b = 0, W_h = I and h0 = 1: h_t = relu(m * h_{t-1}) = m^t, which
    is (1 / (1 - rate))^t where m is kept and 0 from step 1 on where it is dropped, only if the
    mask m is the same at every step."""
    cell = Elman(H * 4, activation="relu")
    model = RNN(cell, recurrent_dropout=0.5)
    params = {
        "cell": {
            "input": {"kernel": jnp.zeros((I, 4 * H)), "bias": jnp.zeros(4 * H)},
            "recurrent_kernel": jnp.eye(4 * H),
        }
    }
    h0 = jnp.ones((B, 4 * H))
    x = jnp.ones((B, T, I))
    rngs = {"dropout": jax.random.PRNGKey(0)}
    y, _ = model.apply({"params": params}, x, None, h0, train=True, rngs=rngs)
    kept = np.asarray(y[:, 0] > 0)
    expected = np.where(kept[:, None], 2.0 ** np.arange(1, T + 1)[:, None], 0.0)
    _close(y, expected, "h_t = m^t")
    assert 0 < kept.mean() < 1 and not np.array_equal(kept[0], kept[1])
    y_eval, _ = model.apply({"params": params}, x, None, h0)
    np.testing.assert_array_equal(y_eval, 1.0)


def test_stacked_rnn_shapes_parameters_and_dropout_modes():
    model = StackedRNN(
        H,
        num_layers=2,
        cell=functools.partial(LSTM, variant="NP"),
        bidirectional=True,
        dropout=0.5,
        input_dropout=0.2,
        output_dropout=0.2,
        recurrent_dropout=0.3,
        variational=True,
    )
    x = _normal(0, (B, T, I))
    params = _params(model, x, LENGTHS)
    # Layer 1: 2 directions x 4H (I + H + 1); layer 2 reads 2H features.
    count = 2 * 4 * H * (I + H + 1) + 2 * 4 * H * (2 * H + H + 1)
    assert sum(a.size for a in jax.tree.leaves(params)) == count
    assert set(params) == {"layer_0", "layer_0_backward", "layer_1", "layer_1_backward"}

    @functools.partial(jax.jit, static_argnames="train")
    def run(params, x, seed, train):
        rngs = {"dropout": jax.random.PRNGKey(seed)}
        return model.apply({"params": params}, x, LENGTHS, train=train, rngs=rngs)

    y, carries = run(params, x, 0, False)
    assert y.shape == (B, T, 2 * H) and len(carries) == 2
    np.testing.assert_array_equal(run(params, x, 5, False)[0], y)  # no rng used in eval
    y_a, _ = run(params, x, 1, True)
    y_b, _ = run(params, x, 1, True)
    y_c, _ = run(params, x, 2, True)
    np.testing.assert_array_equal(y_a, y_b)
    assert not np.allclose(y_a, y_c) and not np.allclose(y_a, y)
    np.testing.assert_array_equal(y_a[1, 2:], 0.0)


def test_vmap_and_jit_compile_once():
    model = RNN(GRU(H))
    x = _normal(0, (2, B, T, I))
    lengths = jnp.asarray(np.stack([LENGTHS, LENGTHS[::-1]]))
    params = _params(model, x[0], lengths[0])
    traces = []

    @jax.jit
    def batched(params, x, lengths):
        traces.append(None)
        return jax.vmap(lambda x, n: model.apply({"params": params}, x, n))(x, lengths)

    y, carry = batched(params, x, lengths)
    y_direct, carry_direct = jax.jit(model.apply)({"params": params}, x, lengths)  # [2, B, ...]
    _close(y, y_direct, "vmap over an extra axis == a leading batch axis")
    _close(carry, carry_direct, "final carries")
    batched(params, x + 1.0, lengths[::-1])
    assert len(traces) == 1
