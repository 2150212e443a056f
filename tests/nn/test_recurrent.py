"""Elman, LSTM and GRU cells against torch.nn.RNN/LSTM/GRU (outputs, final states, gradients
wrt inputs, initial states and every weight, torch's two biases mapped onto ours), finite
differences in float64, the Greff et al. LSTM variants against their equations and against
vanilla with a gate forced, exact parameter counts, and the initializations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.nn import GRU, LSTM, LSTM_VARIANTS, RNN, Elman
from dl.ops.gradcheck import assert_gradcheck

torch = pytest.importorskip("torch")

B, T, I, H = 3, 5, 4, 6


def _normal(seed, shape, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def _params(model, x, scale=0.4):
    """Numpy-drawn parameters at the shapes `init` would give (no jax.random to compile)."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
    leaves, tree = jax.tree.flatten(shapes)
    return tree.unflatten(
        [jnp.asarray(_normal(k + 10, a.shape, scale)) for k, a in enumerate(leaves)]
    )


def _count(params):
    return sum(a.size for a in jax.tree.leaves(params))


def _close(a, b, what, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol, err_msg=what)


TORCH_CASES = {
    # name: (our cell, torch module)
    "elman_tanh": (Elman(H), lambda: torch.nn.RNN(I, H, batch_first=True)),
    "elman_relu": (
        Elman(H, activation="relu"),
        lambda: torch.nn.RNN(I, H, nonlinearity="relu", batch_first=True),
    ),
    "lstm_np": (LSTM(H, variant="NP"), lambda: torch.nn.LSTM(I, H, batch_first=True)),
    "gru": (GRU(H), lambda: torch.nn.GRU(I, H, batch_first=True)),
}


@pytest.mark.parametrize("name", list(TORCH_CASES))
def test_cell_equals_torch_values_and_gradients(name):
    cell, make_ref = TORCH_CASES[name]
    torch.manual_seed(0)
    ref = make_ref()
    w_ih, w_hh = ref.weight_ih_l0, ref.weight_hh_l0
    b_ih, b_hh = ref.bias_ih_l0.detach().numpy(), ref.bias_hh_l0.detach().numpy()
    bias = b_ih + b_hh
    params = {
        "input": {"kernel": w_ih.detach().numpy().T, "bias": bias},
        "recurrent_kernel": w_hh.detach().numpy().T,
    }
    if name == "gru":  # b_hn sits inside the reset product: kept apart
        params["input"]["bias"] = b_ih + np.concatenate([b_hh[: 2 * H], np.zeros(H, np.float32)])
        params["recurrent_bias_n"] = b_hh[2 * H :]
    params = {"cell": jax.tree.map(jnp.asarray, params)}
    lstm = name.startswith("lstm")
    x = _normal(0, (B, T, I))
    h0, c0 = _normal(1, (B, H), 0.5), _normal(2, (B, H), 0.5)
    cot_y, cot_h, cot_c = _normal(3, (B, T, H)), _normal(4, (B, H)), _normal(5, (B, H))

    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0[None], requires_grad=True)
    c0t = torch.tensor(c0[None], requires_grad=True)
    yt, state = ref(xt, (h0t, c0t) if lstm else h0t)
    ht, ct = state if lstm else (state, None)
    loss = (yt * torch.tensor(cot_y)).sum() + (ht[0] * torch.tensor(cot_h)).sum()
    if lstm:
        loss = loss + (ct[0] * torch.tensor(cot_c)).sum()
    loss.backward()

    model = RNN(cell)

    def f(params, x, carry):
        y, final = model.apply({"params": params}, x, initial_carry=carry)
        h, c = final if lstm else (final, None)
        out = jnp.vdot(y, cot_y) + jnp.vdot(h, cot_h)
        return (out + jnp.vdot(c, cot_c) if lstm else out), (y, final)

    carry = (jnp.asarray(h0), jnp.asarray(c0)) if lstm else jnp.asarray(h0)
    grads, (y, final) = jax.jit(jax.grad(f, (0, 1, 2), has_aux=True))(params, x, carry)
    gp, gx, gc = grads
    gp = gp["cell"]
    _close(y, yt.detach().numpy(), "outputs")
    _close(final[0] if lstm else final, ht[0].detach().numpy(), "final h")
    _close(gx, xt.grad.numpy(), "input gradient")
    _close(gc[0] if lstm else gc, h0t.grad[0].numpy(), "h0 gradient")
    if lstm:
        _close(final[1], ct[0].detach().numpy(), "final c")
        _close(gc[1], c0t.grad[0].numpy(), "c0 gradient")
    _close(gp["input"]["kernel"], w_ih.grad.numpy().T, "input kernel gradient")
    _close(gp["recurrent_kernel"], w_hh.grad.numpy().T, "recurrent kernel gradient")
    _close(gp["input"]["bias"], ref.bias_ih_l0.grad.numpy(), "bias gradient vs b_ih")
    if name == "gru":
        gb_hh = ref.bias_hh_l0.grad.numpy()
        _close(gp["input"]["bias"][: 2 * H], gb_hh[: 2 * H], "bias gradient vs b_hh (r, z)")
        _close(gp["recurrent_bias_n"], gb_hh[2 * H :], "b_hn gradient")
    else:
        _close(gp["input"]["bias"], ref.bias_hh_l0.grad.numpy(), "bias gradient vs b_hh")


GRADCHECK_CELLS = {
    "elman_tanh": Elman(3),
    "lstm_vanilla_peepholes": LSTM(3),
    "lstm_cifg": LSTM(3, variant="CIFG"),
    "lstm_fgr": LSTM(3, variant="FGR"),
    "gru": GRU(3),
}


@pytest.mark.parametrize("name", list(GRADCHECK_CELLS))
def test_gradcheck_float64(name):
    model = RNN(GRADCHECK_CELLS[name])
    x = _normal(0, (2, 3, 2))
    lengths = jnp.array([3, 2])
    params = _params(model, x, scale=0.6)
    cot = _normal(1, (2, 3, 3))

    def f(params, x, cot):
        y, carry = model.apply({"params": params}, x, lengths)
        return jnp.vdot(y, cot) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree.leaves(carry))

    assert_gradcheck(f, params, x, cot, tol=1e-6)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _greff_reference(params, x, variant):
    """Greff et al. 2015 sec. 2-3, one gate at a time, in float64 numpy: ((h, c), y)."""
    flags = set(variant.split("+")) - {"vanilla"}
    drop = {"i": "NIG" in flags, "f": bool(flags & {"NFG", "CIFG"}), "o": "NOG" in flags}
    gates = [g for g in "ifgo" if not drop.get(g, False)]
    sig = [g for g in gates if g != "g"]
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    block = {g: slice(k * H, (k + 1) * H) for k, g in enumerate(gates)}
    wx = {g: p["input"]["kernel"][:, block[g]] for g in gates}
    wh = {g: p["recurrent_kernel"][:, block[g]] for g in gates}
    b = {g: p["input"]["bias"][block[g]] for g in gates}
    peep = {g: p.get(f"peephole_{g}", np.zeros(H)) for g in sig}
    r = {}  # R[source gate][target gate], Greff's 9 matrices for FGR
    for k, src in enumerate(sig):
        for m, dst in enumerate(sig):
            gk = p.get("gate_kernel", np.zeros((len(sig) * H,) * 2))
            r[src, dst] = gk[k * H : (k + 1) * H, m * H : (m + 1) * H]
    h = c = np.zeros((x.shape[0], H))
    prev = {g: np.zeros_like(h) for g in sig}
    ys = []
    for t in range(x.shape[1]):
        z = {g: x[:, t] @ wx[g] + h @ wh[g] + b[g] for g in gates}
        if "FGR" in flags:
            for dst in sig:
                z[dst] = z[dst] + sum(prev[src] @ r[src, dst] for src in sig)
        i = _sigmoid(z["i"] + peep["i"] * c) if "i" in gates else 1.0
        if "CIFG" in flags:
            f = 1.0 - i
        else:
            f = _sigmoid(z["f"] + peep["f"] * c) if "f" in gates else 1.0
        g = z["g"] if "NIAF" in flags else np.tanh(z["g"])
        c = f * c + i * g
        o = _sigmoid(z["o"] + peep["o"] * c) if "o" in gates else 1.0
        h = o * (c if "NOAF" in flags else np.tanh(c))
        prev = {"i": i, "f": f, "o": o}
        ys.append(h)
    return (h, c), np.stack(ys, 1)


# Parameters for I = 4, H = 6: G gate blocks of H (I + H + 1), plus H per peephole, plus
# (S H)^2 for FGR's gate recurrence.
VARIANT_COUNTS = {
    "vanilla": 4 * 66 + 18,
    "NIG": 3 * 66 + 12,
    "NFG": 3 * 66 + 12,
    "NOG": 3 * 66 + 12,
    "NIAF": 4 * 66 + 18,
    "NOAF": 4 * 66 + 18,
    "NP": 4 * 66,
    "CIFG": 3 * 66 + 12,
    "FGR": 4 * 66 + 18 + 18**2,
    "NP+CIFG": 3 * 66,
}


def test_variant_table_lists_every_variant():
    assert set(VARIANT_COUNTS) - {"NP+CIFG"} == set(LSTM_VARIANTS)
    with pytest.raises(ValueError, match="unknown"):
        LSTM(H, variant="NOPE").init(
            jax.random.PRNGKey(0), LSTM(H).initialize_carry((1,)), jnp.ones((1, I))
        )


@functools.partial(jax.jit, static_argnums=0)
def _run_lstm(variant, params, x):
    """One compile per variant, shared by the tests below."""
    return RNN(LSTM(H, variant=variant)).apply({"params": {"cell": params}}, x)


@pytest.mark.parametrize("variant", list(VARIANT_COUNTS))
def test_lstm_variant_equals_greff_equations_and_parameter_count(variant):
    model = RNN(LSTM(H, variant=variant))
    x = _normal(0, (B, T, I))
    params = _params(model, x)
    assert _count(params) == VARIANT_COUNTS[variant]
    if "NP" in variant:
        assert not any(k.startswith("peephole") for k in params["cell"])
    y, (h, c, *_) = _run_lstm(variant, params["cell"], x)
    (h_ref, c_ref), y_ref = _greff_reference(params["cell"], x.astype(np.float64), variant)
    _close(y, y_ref, "outputs")
    _close(h, h_ref, "final h")
    _close(c, c_ref, "final c")


def _vanilla_forcing(params, gate, value):
    """Vanilla LSTM params whose `gate` is exactly 1 (sigmoid of 1e4)."""
    k = "ifgo".index(gate)
    p = jax.tree.map(np.array, params)
    p["input"]["kernel"][:, k * H : (k + 1) * H] = 0.0
    p["recurrent_kernel"][:, k * H : (k + 1) * H] = 0.0
    p["input"]["bias"][k * H : (k + 1) * H] = value
    p[f"peephole_{gate}"][:] = 0.0
    return p


def _insert_block(params, k, kernel, recurrent, bias, peephole=None, gate=None):
    """Vanilla-shaped params from a 3-gate variant's, with gate block k inserted."""
    p = jax.tree.map(np.array, params)

    def ins(a, new, axis):
        parts = np.split(a, 3, axis=axis)
        parts.insert(k, new)
        return np.concatenate(parts, axis=axis)

    out = {
        "input": {
            "kernel": ins(p["input"]["kernel"], kernel, 1),
            "bias": ins(p["input"]["bias"], bias, 0),
        },
        "recurrent_kernel": ins(p["recurrent_kernel"], recurrent, 1),
    }
    for g in "ifo":
        out[f"peephole_{g}"] = peephole if g == gate else p.get(f"peephole_{g}")
    return out


@pytest.mark.parametrize("variant, gate", [("NIG", "i"), ("NFG", "f"), ("NOG", "o"), ("CIFG", "f")])
def test_removed_gate_equals_vanilla_with_gate_forced(variant, gate):
    """NIG/NFG/NOG: vanilla with that gate's sigmoid at exactly 1. CIFG: vanilla whose forget
    pre-activation is minus the input gate's, since sigmoid(-z) = 1 - sigmoid(z)."""
    x = _normal(0, (B, T, I))
    small = _params(RNN(LSTM(H, variant=variant)), x)["cell"]
    k = "ifgo".index(gate)
    if variant == "CIFG":  # blocks i, g, o: f = -i
        p = jax.tree.map(np.array, small)
        big = _insert_block(
            small,
            k,
            -p["input"]["kernel"][:, :H],
            -p["recurrent_kernel"][:, :H],
            -p["input"]["bias"][:H],
            -p["peephole_i"],
            gate,
        )
    else:
        zeros = np.zeros(H, np.float32)
        big = _insert_block(small, k, np.zeros((I, H)), np.zeros((H, H)), zeros + 1e4, zeros, gate)
    y_small, _ = _run_lstm(variant, small, x)
    y_big, _ = _run_lstm("vanilla", jax.tree.map(jnp.asarray, big), x)
    _close(y_small, y_big, f"{variant} vs vanilla with {gate} forced")


def test_initializations():
    cells = {
        "irnn": Elman(H, activation="relu", irnn=True),
        "lstm": LSTM(H, variant="NP"),
        "gru": GRU(H),
        "cifg": LSTM(H, variant="CIFG"),
    }

    @jax.jit
    def init_all(key):  # one compile; the rbg generator compiles faster than threefry
        x = jnp.ones((1, I))
        return {k: m.init(key, m.initialize_carry((1,)), x)["params"] for k, m in cells.items()}

    p = init_all(jax.random.key(0, impl="rbg"))
    np.testing.assert_array_equal(p["irnn"]["recurrent_kernel"], np.eye(H))
    np.testing.assert_array_equal(p["irnn"]["input"]["bias"], np.zeros(H))
    assert 0 < np.std(p["irnn"]["input"]["kernel"]) < 0.01
    bias = np.asarray(p["lstm"]["input"]["bias"])
    np.testing.assert_array_equal(bias[H : 2 * H], np.ones(H))  # forget block (i, f, g, o)
    bound = 1 / np.sqrt(H)  # torch's U(-1/sqrt(H), 1/sqrt(H)) elsewhere
    assert np.all(np.abs(np.delete(bias, np.s_[H : 2 * H])) <= bound)
    for kernel in (p["lstm"]["recurrent_kernel"], p["lstm"]["input"]["kernel"]):
        assert np.all(np.abs(kernel) <= bound)
    np.testing.assert_array_equal(p["gru"]["input"]["bias"][H : 2 * H], np.ones(H))  # update z
    assert np.all(np.abs(p["cifg"]["input"]["bias"]) <= bound)  # no forget gate: torch's draw


def test_lstm_zero_carry_can_be_donated():
    # A carry kept in the engine's donated train state: h and c must be two buffers, or XLA
    # refuses to donate the same buffer twice.
    carry = LSTM(4).initialize_carry((2,))
    step = jax.jit(lambda c: jax.tree.map(lambda a: a + 1.0, c), donate_argnums=0)
    h, c = step(carry)
    np.testing.assert_array_equal(np.asarray(h), np.ones((2, 4), np.float32))
    np.testing.assert_array_equal(np.asarray(c), np.ones((2, 4), np.float32))
