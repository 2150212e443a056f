"""dense_probe: recorded signals against a hand-written numpy forward/backward pass, and the
identities dCost/db = sum_batch dCost/ds and dCost/dW = h^T dCost/ds."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.nn.mlp import MLP
from dl.nn.probe import dense_probe
from dl.ops.losses import cross_entropy


def _setup(activation="tanh", hidden=(6, 5), batch=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, 4)).astype(np.float32)
    y = rng.integers(0, 3, batch).astype(np.int32)
    model = MLP(hidden=hidden, out=3, activation=activation, kernel_init="glorot_uniform")
    variables = jax.jit(model.init)(jax.random.PRNGKey(seed), x)
    # Non-zero biases so that a wrong bias path would show.
    variables = jax.tree.map(lambda p: np.asarray(p) + np.float32(0.1), variables)
    return model, variables, x, y


def _summed_ce(y):
    return lambda logits: cross_entropy(logits=logits, targets=y, reduce=False).sum()


def _probe(model, variables, x, y):
    """dense_probe with the summed cross-entropy, jitted (one compilation instead of one per op)."""
    return jax.jit(lambda v, x, y: dense_probe(model, v, x, _summed_ce(y)))(variables, x, y)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_matches_numpy_backprop(activation):
    model, variables, x, y = _setup(activation)
    cost, layers = _probe(model, variables, x, y)
    assert list(layers) == ["dense_0", "dense_1", "head"]
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    f = np.tanh if activation == "tanh" else (lambda s: 1.0 / (1.0 + np.exp(-s)))
    df = (lambda h: 1.0 - h**2) if activation == "tanh" else (lambda h: h * (1.0 - h))
    # Forward, keeping inputs h and pre-activations s of each layer.
    h, hs, ss = x.astype(np.float64), [], []
    for name in ("dense_0", "dense_1", "head"):
        hs.append(h)
        s = h @ p[name]["kernel"] + p[name]["bias"]
        ss.append(s)
        h = f(s) if name != "head" else s
    logits = ss[-1]
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    want_cost = -np.log(prob[np.arange(len(y)), y]).sum()
    # Backward: softmax-cross-entropy gives p - onehot at the logits; then delta_i =
    # (delta_{i+1} W_{i+1}^T) * f'(s_i).
    delta = prob - np.eye(3)[y]
    deltas = [delta]
    for name, nxt in (("dense_1", "head"), ("dense_0", "dense_1")):
        delta = (delta @ p[nxt]["kernel"].T) * df(f(ss[["dense_0", "dense_1"].index(name)]))
        deltas.insert(0, delta)
    np.testing.assert_allclose(cost, want_cost, rtol=1e-5)
    for k, name in enumerate(("dense_0", "dense_1", "head")):
        np.testing.assert_allclose(layers[name]["input"], hs[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layers[name]["output"], ss[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layers[name]["grad"], deltas[k], rtol=1e-4, atol=1e-6)


def test_bias_and_kernel_gradient_identities():
    model, variables, x, y = _setup(hidden=(8, 8, 8))
    _, layers = _probe(model, variables, x, y)
    grads = jax.jit(jax.grad(lambda p: _summed_ce(y)(model.apply({"params": p}, x))))(
        variables["params"]
    )
    for name, rec in layers.items():
        np.testing.assert_allclose(rec["grad"].sum(0), grads[name]["bias"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            rec["input"].T @ rec["grad"], grads[name]["kernel"], rtol=1e-4, atol=1e-6
        )
    # The last layer's output is the model output.
    # The last layer's output is the model output: the zero perturbations change nothing.
    logits = jax.jit(model.apply)(variables, x)
    np.testing.assert_allclose(layers["head"]["output"], logits, rtol=1e-6)


class _Shared(nn.Module):
    @nn.compact
    def __call__(self, x):
        dense = nn.Dense(4)
        return dense(jnp.tanh(dense(x)))


def test_a_dense_called_twice_is_an_error():
    x = jnp.ones((2, 4))
    model = _Shared()
    variables = model.init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="called twice"):
        dense_probe(model, variables, x, jnp.sum)
