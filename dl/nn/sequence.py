"""Recurrent layers over padded batches of sequences, [*batch, time, features], batch first.

* `run_cell`: a cell of `dl.nn.recurrent` over time with `lax.scan`: the inputs of all steps
  are projected in one matmul before the scan, whose body is `cell.step` (one recurrent matmul
  plus elementwise ops), unrolled `unroll` steps per loop iteration. With `lengths`, padded
  steps (t >= length) freeze the carry and output zeros, so the final carry is the carry after
  each sequence's last real step and nothing depends on how far the batch is padded.
* `RNN`: one cell, forward or backward (`reverse`), with variational recurrent dropout.
* `Bidirectional`: forward and backward cells, outputs concatenated (Schuster & Paliwal 1997);
  the backward cell reads each sequence reversed within its own length (`reverse_padded`).
* `StackedRNN`: `num_layers` of them (optionally bidirectional) with dropout on the
  non-recurrent connections: fresh masks per step and unit (Zaremba, Sutskever & Vinyals 2014,
  "Recurrent neural network regularization") or, with `variational=True`, one mask per
  sequence reused at every step on the inputs, outputs and between layers, together with
  `recurrent_dropout` on h before the recurrent matmul (Gal & Ghahramani 2016, "A theoretically
  grounded application of dropout in recurrent neural networks").
* `SequenceDropout`: the two kinds of dropout masks on [*batch, time, features].
* `detach_carry`: stop gradients through a carry passed between batches (truncated BPTT:
  `y, carry = layer(x, initial_carry=detach_carry(carry))`).

Dropout needs the flax "dropout" rng when `train=True` and is the identity otherwise. All work
under `jit` and `vmap`; `lengths` is traced, so batches of one shape never recompile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from dl.nn.recurrent import LSTM, Carry


def reverse_padded(x: jax.Array, lengths: jax.Array | None) -> jax.Array:
    """x: [*batch, time, F], lengths: [*batch] -> each sequence's first `length` steps reversed.

    y[..., t, :] = x[..., length - 1 - t, :] for t < length and x[..., t, :] after it (padding
    stays in place), so reverse_padded(reverse_padded(x)) == x. lengths=None: flip all of time.
    """
    if lengths is None:
        return jnp.flip(x, axis=-2)
    steps = jnp.arange(x.shape[-2], dtype=lengths.dtype)
    lengths = lengths[..., None]
    index = jnp.where(steps < lengths, lengths - 1 - steps, steps)
    return jnp.take_along_axis(x, index[..., None], axis=-2)


def detach_carry(carry: Carry) -> Carry:
    """The carry with its gradient stopped (truncated backpropagation through time)."""
    return jax.tree.map(lax.stop_gradient, carry)


def dropout_mask(key: jax.Array, rate: float, shape: Sequence[int], dtype=jnp.float32):
    """Inverted-dropout mask: 0 with probability `rate`, else 1 / (1 - rate)."""
    keep = jax.random.bernoulli(key, 1.0 - rate, tuple(shape))
    return keep.astype(dtype) / jnp.asarray(1.0 - rate, dtype)


def run_cell(
    cell: nn.Module,
    x: jax.Array,
    lengths: jax.Array | None = None,
    initial_carry: Carry | None = None,
    *,
    h_mask: jax.Array | None = None,
    reverse: bool = False,
    unroll: int = 1,
) -> tuple[jax.Array, Carry]:
    """Run a bound cell over x: [*batch, time, in] -> (y [*batch, time, H], final carry).

    Call it from a module's compact method with a cell bound there (a submodule). lengths:
    [*batch] ints in [0, time], or None for full sequences; initial_carry: as
    `cell.initialize_carry(batch)` (zeros by default); h_mask: [*batch, H] multiplied into h
    before the recurrent matmul at every step; reverse: read each sequence from its last real
    step to its first (outputs are returned in the input's order).
    """
    batch = x.shape[:-2]
    if lengths is not None and lengths.shape != batch:
        raise ValueError(f"lengths must have the batch shape {batch}, got {lengths.shape}")
    if reverse:
        x = reverse_padded(x, lengths)
    # Time-major for the scan; moving the (smaller) input rather than the projection.
    xp = cell.project(jnp.moveaxis(x, -2, 0))  # [time, *batch, G*H], all steps in one matmul
    carry = cell.initialize_carry(batch, xp.dtype) if initial_carry is None else initial_carry

    if lengths is None:

        def body(carry, xp_t):
            return cell.step(carry, xp_t, h_mask)

        carry, ys = lax.scan(body, carry, xp, unroll=unroll)
    else:
        steps = jnp.arange(x.shape[-2], dtype=lengths.dtype).reshape((-1,) + (1,) * len(batch))
        keep = (steps < lengths)[..., None]  # [time, *batch, 1]

        def body(carry, inputs):
            xp_t, keep_t = inputs
            new, y = cell.step(carry, xp_t, h_mask)
            new = jax.tree.map(lambda n, o: jnp.where(keep_t, n, o), new, carry)
            return new, jnp.where(keep_t, y, jnp.zeros((), y.dtype))

        carry, ys = lax.scan(body, carry, (xp, keep), unroll=unroll)
    ys = jnp.moveaxis(ys, 0, -2)
    if reverse:
        ys = reverse_padded(ys, lengths)
    return ys, carry


def _recurrent_mask(module: nn.Module, rate: float, train: bool, batch, features, dtype):
    if not train or rate == 0.0:
        return None
    return dropout_mask(module.make_rng("dropout"), rate, (*batch, features), dtype)


class RNN(nn.Module):
    """(x: [*batch, time, in], lengths: [*batch] | None, initial_carry) -> (y: [*batch, time,
    H], final carry); see `run_cell`.

    Attributes:
      cell: an `Elman`, `LSTM` or `GRU` (any module with project/step/initialize_carry).
      reverse: run each sequence backward within its length.
      recurrent_dropout: rate of the variational mask on h before the recurrent matmul, drawn
        once per sequence (Gal & Ghahramani 2016), when `train`.
      unroll: steps per scan iteration (a speed knob; results are the same).
    """

    cell: nn.Module
    reverse: bool = False
    recurrent_dropout: float = 0.0
    unroll: int = 1

    @nn.compact
    def __call__(self, x, lengths=None, initial_carry=None, *, train: bool = False):
        mask = _recurrent_mask(
            self, self.recurrent_dropout, train, x.shape[:-2], self.cell.features, x.dtype
        )
        return run_cell(
            self.cell,
            x,
            lengths,
            initial_carry,
            h_mask=mask,
            reverse=self.reverse,
            unroll=self.unroll,
        )


class Bidirectional(nn.Module):
    """(x: [*batch, time, in], lengths, initial_carry: (forward, backward) | None) ->
    (y: [*batch, time, H_f + H_b], (forward carry, backward carry)).

    y[..., t, :] = [forward output at t, backward output at t]; the backward cell starts at
    each sequence's last real step, so its outputs and final carry are those of the cell run
    on the unpadded sequence reversed (its final carry is the one after step 0).

    Attributes:
      forward_cell, backward_cell: two cells (distinct instances).
      recurrent_dropout, unroll: as in `RNN` (one mask per direction).
    """

    forward_cell: nn.Module
    backward_cell: nn.Module
    recurrent_dropout: float = 0.0
    unroll: int = 1

    @nn.compact
    def __call__(self, x, lengths=None, initial_carry=None, *, train: bool = False):
        carries = (None, None) if initial_carry is None else initial_carry
        ys, finals = [], []
        for cell, carry, reverse in zip(
            (self.forward_cell, self.backward_cell), carries, (False, True), strict=True
        ):
            mask = _recurrent_mask(
                self, self.recurrent_dropout, train, x.shape[:-2], cell.features, x.dtype
            )
            y, final = run_cell(
                cell, x, lengths, carry, h_mask=mask, reverse=reverse, unroll=self.unroll
            )
            ys.append(y)
            finals.append(final)
        return jnp.concatenate(ys, axis=-1), tuple(finals)


class SequenceDropout(nn.Module):
    """x: [*batch, time, F] -> x * mask / (1 - rate) while `train`, identity otherwise.

    variational=False: a fresh mask per step and unit (plain dropout; Zaremba et al. 2014);
    True: one mask per sequence [*batch, 1, F], the same at every step (Gal & Ghahramani 2016;
    the "locked dropout" of Merity, Keskar & Socher 2018). Needs a "dropout" rng when `train`.
    """

    rate: float
    variational: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if not train or self.rate == 0.0:
            return x
        shape = (*x.shape[:-2], 1, x.shape[-1]) if self.variational else x.shape
        return x * dropout_mask(self.make_rng("dropout"), self.rate, shape, x.dtype)


class StackedRNN(nn.Module):
    """(x: [*batch, time, in], lengths, initial_carry) -> (y: [*batch, time, D * features],
    carries: one per layer, each a (forward, backward) pair if bidirectional), D = 2 if
    bidirectional else 1.

    input_dropout -> layer 1 -> dropout -> layer 2 ... -> layer L -> output_dropout, as in
    Zaremba et al. 2014 (fig. 2: dropout only on the non-recurrent connections, a fresh mask
    per step) or, with `variational`, Gal & Ghahramani 2016 (sec. 4: the same masks at every
    step, plus `recurrent_dropout` on h in each layer). Parameters: layer_{k} (and
    layer_{k}_backward) hold each layer's cell.

    Attributes:
      features: H of every layer.
      num_layers: L.
      cell: builds a cell from H, e.g. `LSTM`, `GRU`, `functools.partial(LSTM, variant="NP")`.
      bidirectional: each layer a `Bidirectional` of two cells.
      dropout: rate between layers; input_dropout, output_dropout: before the first and after
        the last layer.
      recurrent_dropout: variational rate on h before each layer's recurrent matmul.
      variational: one mask per sequence (Gal) instead of per step (Zaremba) for the above.
      unroll: as in `RNN`.
    """

    features: int
    num_layers: int = 1
    cell: Callable[..., nn.Module] = LSTM
    bidirectional: bool = False
    dropout: float = 0.0
    input_dropout: float = 0.0
    output_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    variational: bool = False
    unroll: int = 1

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        lengths: jax.Array | None = None,
        initial_carry: Sequence[Any] | None = None,
        *,
        train: bool = False,
    ) -> tuple[jax.Array, tuple[Any, ...]]:
        if initial_carry is not None and len(initial_carry) != self.num_layers:
            raise ValueError(f"initial_carry needs {self.num_layers} entries, one per layer")
        drop = lambda rate, y: SequenceDropout(rate, self.variational)(y, train=train)
        y = drop(self.input_dropout, x)
        carries = []
        for k in range(self.num_layers):
            if k:
                y = drop(self.dropout, y)
            carry = None if initial_carry is None else initial_carry[k]
            if self.bidirectional:
                layer = Bidirectional(
                    self.cell(self.features, name=f"layer_{k}"),
                    self.cell(self.features, name=f"layer_{k}_backward"),
                    recurrent_dropout=self.recurrent_dropout,
                    unroll=self.unroll,
                    name=f"bidirectional_{k}",
                )
                y, carry = layer(y, lengths, carry, train=train)
            else:
                cell = self.cell(self.features, name=f"layer_{k}")
                mask = _recurrent_mask(
                    self, self.recurrent_dropout, train, x.shape[:-2], self.features, x.dtype
                )
                y, carry = run_cell(cell, y, lengths, carry, h_mask=mask, unroll=self.unroll)
            carries.append(carry)
        return drop(self.output_dropout, y), tuple(carries)
