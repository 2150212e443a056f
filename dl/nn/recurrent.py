"""Recurrent cells with the input projection split from the recurrence, [*batch, features].

* `Elman`: the simple RNN h' = act(x W_x + h W_h + b) (Elman 1990), tanh or relu; `irnn=True`
  is the IRNN of Le, Jaitly & Hinton 2015 ("A simple way to initialize recurrent networks of
  rectified linear units"): W_h = identity, b = 0, relu.
* `LSTM`: Hochreiter & Schmidhuber 1997 with the forget gate of Gers, Schmidhuber & Cummins
  2000, the diagonal peepholes of Gers & Schmidhuber 2000, and every variant of Greff et al.
  2015 ("LSTM: a search space odyssey", sec. 3) as one `variant` string (`LSTM_VARIANTS`).
* `GRU`: Cho et al. 2014 in PyTorch's form, the reset gate applied after the recurrent
  product: n = tanh(x W_n + b_n + r * (h W_hn + b_hn)).

Every cell has the same interface, used by `dl.nn.sequence.RNN`:

    xp = cell.project(x)                  # x [..., in] -> [..., G * H], x W_x + b, any shape
    carry, y = cell.step(carry, xp)       # one recurrent step: one [*, H] x [H, G * H] matmul
    carry, y = cell(carry, x)             # the two together (a single step)
    carry = cell.initialize_carry(batch_shape)   # zeros; no parameters needed

so a sequence layer projects the inputs of ALL steps in one matmul before its scan and the scan
body holds only h W_h (all gates' columns concatenated: one matmul per step) and elementwise
ops. `step` takes an optional `h_mask` [*batch, H] multiplied into h before W_h: the recurrent
dropout of Gal & Ghahramani 2016, one mask for all gates (their "tied" weights).

Parameters of a cell with G gate blocks, input size I and H = `features`:
  input/kernel [I, G*H], input/bias [G*H], recurrent_kernel [H, G*H], and per cell:
  GRU recurrent_bias_n [H]; LSTM peephole_{i,f,o} [H] and, for FGR, gate_kernel [S*H, S*H].
Copying PyTorch's single-layer `torch.nn.RNN/LSTM/GRU` (gate order i, f, g, o for the LSTM and
r, z, n for the GRU, the same as ours):
  input/kernel = weight_ih_l0.T, recurrent_kernel = weight_hh_l0.T,
  input/bias = bias_ih_l0 + bias_hh_l0 (Elman, LSTM); for the GRU input/bias =
  bias_ih_l0 + [bias_hh_l0[:2H], 0] and recurrent_bias_n = bias_hh_l0[2H:], since b_hn sits
  inside the reset product. A gradient wrt torch's two biases is our bias' gradient for both
  (and recurrent_bias_n's for bias_hh_l0's n block).
  `LSTM(H, variant="NP", forget_bias_init=None)` is `torch.nn.LSTM`'s cell and init.

Initialization "torch" (the default) is PyTorch's: every weight and bias U(-1/sqrt(H),
1/sqrt(H)); then the LSTM's forget-gate bias and the GRU's update-gate bias are set to
`forget_bias_init`/`update_bias_init` (1.0; None keeps the uniform draw), which makes the cell
remember by default (Gers et al. 2000; Jozefowicz, Zaremba & Sutskever 2015).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Init = str | Callable
Carry = jax.Array | tuple[jax.Array, ...]

# Greff et al. 2015, sec. 3. "vanilla" is THEIR vanilla LSTM, with peepholes; PyTorch's LSTM is
# "NP". Variants combine with "+", e.g. "NP+CIFG".
LSTM_VARIANTS = ("vanilla", "NIG", "NFG", "NOG", "NIAF", "NOAF", "NP", "CIFG", "FGR")


def _torch_uniform(fan: int) -> Callable:
    bound = 1.0 / math.sqrt(fan)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, tuple(shape), dtype, minval=-bound, maxval=bound)

    return init


def _resolve(init: Init, fan: int) -> Callable:
    if callable(init):
        return init
    table = {
        "torch": _torch_uniform(fan),
        "zeros": nn.initializers.zeros,
        "identity": lambda key, shape, dtype=jnp.float32: jnp.eye(*shape, dtype=dtype),
    }
    if init not in table:
        raise ValueError(f"initializer must be a callable or one of {sorted(table)}, got {init!r}")
    return table[init]


def _with_block(init: Callable, block: int, size: int, value: float | None) -> Callable:
    """`init` with entries [block * size, (block + 1) * size) set to `value` (a gate's bias)."""
    if value is None:
        return init

    def new(key, shape, dtype=jnp.float32):
        return init(key, shape, dtype).at[block * size : (block + 1) * size].set(value)

    return new


class _Cell(nn.Module):
    """Shared parts: the fused input projection and the recurrent kernel (see module docstring).

    Subclasses set `_gates` (the gate blocks' names, in column order) in `_layout` and define
    `step` and `initialize_carry`.
    """

    features: int
    kernel_init: Init = "torch"
    recurrent_kernel_init: Init = "torch"
    bias_init: Init = "torch"
    param_dtype: jnp.dtype = jnp.float32

    def _layout(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _bias_init(self) -> Callable:
        return _resolve(self.bias_init, self.features)

    def _kernel_inits(self) -> tuple[Callable, Callable]:
        h = self.features
        return _resolve(self.kernel_init, h), _resolve(self.recurrent_kernel_init, h)

    def setup(self):
        h = self.features
        self.gates = self._layout()
        width = len(self.gates) * h
        kernel_init, recurrent_init = self._kernel_inits()
        # The input size is only known at the first call: a Dense submodule infers it.
        self.input = nn.Dense(
            width,
            kernel_init=kernel_init,
            bias_init=self._bias_init(),
            param_dtype=self.param_dtype,
        )
        self.recurrent_kernel = self.param(
            "recurrent_kernel", recurrent_init, (h, width), self.param_dtype
        )
        self._extra_params()

    def _extra_params(self):
        pass

    def project(self, x: jax.Array) -> jax.Array:
        """x: [..., in] -> [..., G * H], x W_x + b; a sequence layer calls it on all steps."""
        return self.input(x)

    def _recurrent(self, h: jax.Array, h_mask: jax.Array | None) -> jax.Array:
        if h_mask is not None:
            h = h * h_mask
        return h @ self.recurrent_kernel.astype(h.dtype)

    def _block(self, z: jax.Array, name: str) -> jax.Array:
        k = self.gates.index(name)
        return z[..., k * self.features : (k + 1) * self.features]

    def __call__(self, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]:
        """(carry, x: [*batch, in]) -> (new carry, y: [*batch, H]): one step."""
        return self.step(carry, self.project(x))

    @nn.nowrap
    def _zeros(self, batch_shape, dtype) -> jax.Array:
        return jnp.zeros((*tuple(batch_shape), self.features), dtype)


class Elman(_Cell):
    """Simple RNN: h' = act(x W_x + h W_h + b); carry h [*batch, H], y = h'.

    Attributes:
      features: H.
      activation: "tanh" (`torch.nn.RNN`'s default) or "relu".
      irnn: Le, Jaitly & Hinton 2015: W_h = identity, b = 0 and W_x ~ N(0, 0.001^2) (their
        sec. 2 uses a small Gaussian for the other weights); use it with "relu".
      kernel_init, recurrent_kernel_init, bias_init: "torch", "zeros", "identity" or a callable
        `init(key, shape, dtype)`; `irnn` overrides them.
    """

    activation: str = "tanh"
    irnn: bool = False

    def _layout(self):
        if self.activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', got {self.activation!r}")
        return ("h",)

    def _kernel_inits(self):
        if self.irnn:
            return nn.initializers.normal(0.001), _resolve("identity", self.features)
        return super()._kernel_inits()

    def _bias_init(self):
        return nn.initializers.zeros if self.irnn else super()._bias_init()

    def step(self, carry, xp, h_mask=None):
        """(h [*batch, H], xp [*batch, H]) -> (h', h')."""
        z = xp + self._recurrent(carry, h_mask)
        h = jnp.tanh(z) if self.activation == "tanh" else jax.nn.relu(z)
        return h, h

    @nn.nowrap
    def initialize_carry(self, batch_shape, dtype=jnp.float32) -> jax.Array:
        return self._zeros(batch_shape, dtype)


def lstm_variant_flags(variant: str) -> frozenset[str]:
    """The set of Greff et al. modifications in `variant` ("vanilla", one name, or "A+B")."""
    flags = frozenset(v for v in variant.split("+") if v != "vanilla")
    unknown = flags - set(LSTM_VARIANTS)
    if unknown or not variant:
        raise ValueError(f"unknown LSTM variant {variant!r}; combine names of {LSTM_VARIANTS}")
    if "CIFG" in flags and flags & {"NIG", "NFG"}:
        raise ValueError(f"CIFG couples the input and forget gates; {variant!r} removes one")
    return flags


class LSTM(_Cell):
    """LSTM with forget gate, optional peepholes and the variants of Greff et al. 2015.

    Vanilla (Greff et al. sec. 2; the diagonal peepholes p of Gers & Schmidhuber 2000):

        i = sigmoid(z_i + p_i * c),  f = sigmoid(z_f + p_f * c),  g = tanh(z_g),
        c' = f * c + i * g,  o = sigmoid(z_o + p_o * c'),  h' = o * tanh(c'),

    with z = x W_x + h W_h + b split into the blocks i, f, g, o (PyTorch's order). Carry (h, c)
    (PyTorch's (h_n, c_n) order), y = h'. `variant` (names in `LSTM_VARIANTS`, combined with
    "+"): NIG, NFG, NOG drop the input, forget, output gate (fixed to 1, its weights, bias and
    peephole removed); NIAF g = z_g and NOAF h' = o * c' (identity for tanh); NP no peepholes
    (PyTorch's LSTM); CIFG f = 1 - i (no forget-gate weights); FGR adds the previous step's
    gate activations a = [i, f, o] to the gates' pre-activations, z_{i,f,o} += a_prev R with R
    [S*H, S*H] (S sigmoid gates, 3: the 9 H x H matrices of Greff et al.); the carry is then
    (h, c, a) and the step does a second matmul.

    Attributes:
      features: H.
      variant: "vanilla" (WITH peepholes), a name of `LSTM_VARIANTS` or several joined by "+".
      forget_bias_init: value of the forget-gate bias at init (None: as `bias_init`).
      kernel_init, recurrent_kernel_init, bias_init: as in `Elman`; peepholes and R start
        U(-1/sqrt(H), 1/sqrt(H)).
    """

    variant: str = "vanilla"
    forget_bias_init: float | None = 1.0

    def _layout(self):
        flags = lstm_variant_flags(self.variant)
        drop = {"i": "NIG" in flags, "f": bool(flags & {"NFG", "CIFG"}), "o": "NOG" in flags}
        return tuple(g for g in "ifgo" if not drop.get(g, False))

    def _bias_init(self):
        init = super()._bias_init()
        gates = self._layout()
        if "f" not in gates:
            return init
        return _with_block(init, gates.index("f"), self.features, self.forget_bias_init)

    def _extra_params(self):
        flags = lstm_variant_flags(self.variant)
        h = self.features
        self.sigmoid_gates = tuple(g for g in self.gates if g != "g")
        peepholes = {}
        if "NP" not in flags:
            for g in self.sigmoid_gates:
                peepholes[g] = self.param(
                    f"peephole_{g}", _torch_uniform(h), (h,), self.param_dtype
                )
        self.peepholes = peepholes
        self.fgr = "FGR" in flags
        if self.fgr:
            s = len(self.sigmoid_gates) * h
            init = _torch_uniform(h)
            self.gate_kernel = self.param("gate_kernel", init, (s, s), self.param_dtype)

    def _gate(self, z, name, c, extra):
        """sigmoid(z_name + peephole * c + gate recurrence), or None for a removed gate."""
        if name not in self.gates:
            return None
        pre = self._block(z, name)
        if name in self.peepholes:
            pre = pre + self.peepholes[name].astype(c.dtype) * c
        if extra is not None:
            k = self.sigmoid_gates.index(name)
            pre = pre + extra[..., k * self.features : (k + 1) * self.features]
        return jax.nn.sigmoid(pre)

    def step(self, carry, xp, h_mask=None):
        """((h, c[, a]) [*batch, H] each, xp [*batch, G*H]) -> ((h', c'[, a']), h')."""
        h, c = carry[0], carry[1]
        flags = lstm_variant_flags(self.variant)
        z = xp + self._recurrent(h, h_mask)
        extra = carry[2] @ self.gate_kernel.astype(h.dtype) if self.fgr else None
        i = self._gate(z, "i", c, extra)
        f = 1.0 - i if "CIFG" in flags else self._gate(z, "f", c, extra)
        g = self._block(z, "g")
        g = g if "NIAF" in flags else jnp.tanh(g)
        c_new = (c if f is None else f * c) + (g if i is None else i * g)
        o = self._gate(z, "o", c_new, extra)
        out = c_new if "NOAF" in flags else jnp.tanh(c_new)
        h_new = out if o is None else o * out
        if not self.fgr:
            return (h_new, c_new), h_new
        acts = {"i": i, "f": f, "o": o}
        a = jnp.concatenate([acts[name] for name in self.sigmoid_gates], axis=-1)
        return (h_new, c_new, a), h_new

    @nn.nowrap
    def initialize_carry(self, batch_shape, dtype=jnp.float32) -> tuple[jax.Array, ...]:
        # h and c as two arrays, not one twice: a carry kept in a donated train state must not
        # hand XLA the same buffer to donate twice.
        h, c = self._zeros(batch_shape, dtype), self._zeros(batch_shape, dtype)
        if "FGR" not in lstm_variant_flags(self.variant):
            return h, c
        s = len([g for g in self._layout() if g != "g"])
        return h, c, jnp.zeros((*tuple(batch_shape), s * self.features), dtype)


class GRU(_Cell):
    """GRU (Cho et al. 2014, eqs. 5-8) in PyTorch's form (`torch.nn.GRU`):

        r = sigmoid(z_r),  u = sigmoid(z_u),  n = tanh(x W_n + b_n + r * (h W_hn + b_hn)),
        h' = (1 - u) * n + u * h,

    z = x W_x + h W_h + b for the r and u (PyTorch's z) blocks. Cho et al. put r on h before
    the product, (r * h) W_hn; PyTorch's (and cuDNN's) form lets one matmul h W_h serve all
    three blocks, which is why b_hn is a separate parameter (recurrent_bias_n). Carry h, y = h'.

    Attributes:
      features: H.
      update_bias_init: value of the update-gate (u) bias at init; 1.0 leans towards keeping
        h, like the LSTM's forget bias (None: as `bias_init`).
      kernel_init, recurrent_kernel_init, bias_init: as in `Elman`.
    """

    update_bias_init: float | None = 1.0

    def _layout(self):
        return ("r", "u", "n")

    def _bias_init(self):
        return _with_block(super()._bias_init(), 1, self.features, self.update_bias_init)

    def _extra_params(self):
        init = _resolve(self.bias_init, self.features)
        self.recurrent_bias_n = self.param(
            "recurrent_bias_n", init, (self.features,), self.param_dtype
        )

    def step(self, carry, xp, h_mask=None):
        """(h [*batch, H], xp [*batch, 3H]) -> (h', h')."""
        hp = self._recurrent(carry, h_mask)
        r = jax.nn.sigmoid(self._block(xp, "r") + self._block(hp, "r"))
        u = jax.nn.sigmoid(self._block(xp, "u") + self._block(hp, "u"))
        hn = self._block(hp, "n") + self.recurrent_bias_n.astype(hp.dtype)
        n = jnp.tanh(self._block(xp, "n") + r * hn)
        h = n + u * (carry - n)  # (1 - u) n + u h
        return h, h

    @nn.nowrap
    def initialize_carry(self, batch_shape, dtype=jnp.float32) -> jax.Array:
        return self._zeros(batch_shape, dtype)


CELLS = {"elman": Elman, "lstm": LSTM, "gru": GRU}
