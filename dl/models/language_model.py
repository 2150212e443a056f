"""Recurrent language models: embedding -> `StackedRNN` -> softmax over the vocabulary.

The word-level LM of Zaremba, Sutskever & Vinyals 2014 ("Recurrent neural network
regularization", sec. 4.1) and of Gal & Ghahramani 2016 (variational dropout, sec. 5.1), with the
tied input/output embedding of Press & Wolf 2017 ("Using the output embedding to improve
language models") and Inan et al. 2017: the logits are ``h E^T + b`` with E the input embedding,
so the output layer adds only a bias.

    logits, carries = model.apply(variables, tokens, initial_carry=carries, train=...)

tokens: [*batch, time] int; logits: [*batch, time, vocab]; carries: one per layer (see
`StackedRNN`), which truncated BPTT passes from one chunk to the next (`detach_carry`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.nn.recurrent import GRU, LSTM
from dl.nn.sequence import StackedRNN


def cell_builder(cell: str):
    """'lstm' (Greff et al.'s vanilla, with peepholes), 'lstm:<variant>' (any of
    `dl.nn.recurrent.LSTM_VARIANTS`) or 'gru' -> a callable H -> cell module."""
    if cell == "gru":
        return GRU
    if cell == "lstm":
        return LSTM
    if cell.startswith("lstm:"):
        return functools.partial(LSTM, variant=cell.removeprefix("lstm:"))
    raise ValueError(f"cell must be 'lstm', 'lstm:<variant>' or 'gru', got {cell!r}")


class RNNLM(nn.Module):
    """tokens [*batch, time] -> (logits [*batch, time, vocab_size], carries).

    Attributes:
      vocab_size: V (softmax size = embedding rows).
      embed: E, the embedding width; with `tie` it must equal `hidden`.
      hidden: H of every recurrent layer.
      num_layers: recurrent layers.
      cell: see `cell_builder`.
      dropout: rate on the embedding output, between layers and before the softmax (Zaremba et
        al.'s placement: every non-recurrent connection).
      recurrent_dropout: variational rate on h before each recurrent matmul (Gal's; only with
        `variational`).
      variational: one mask per sequence (Gal & Ghahramani) instead of per step (Zaremba).
      tie: logits = h E^T + b (Press & Wolf 2017).
      init_scale: embedding (and untied output kernel) init U(-s, s), Zaremba's 0.05/0.1.
      unroll: scan steps per loop iteration (speed only).
    """

    vocab_size: int
    embed: int
    hidden: int
    num_layers: int = 2
    cell: str = "lstm"
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    variational: bool = False
    tie: bool = False
    init_scale: float = 0.1
    unroll: int = 1

    def setup(self):
        if self.tie and self.embed != self.hidden:
            raise ValueError(
                f"tied embeddings need embed == hidden, got {self.embed}, {self.hidden}"
            )
        if self.recurrent_dropout and not self.variational:
            raise ValueError("recurrent_dropout is variational dropout: set variational=True")
        s = self.init_scale
        uniform = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -s, s)
        self.embedding = nn.Embed(self.vocab_size, self.embed, embedding_init=uniform)
        self.rnn = StackedRNN(
            self.hidden,
            self.num_layers,
            cell=cell_builder(self.cell),
            dropout=self.dropout,
            input_dropout=self.dropout,
            output_dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            variational=self.variational,
            unroll=self.unroll,
        )
        if self.tie:
            self.out_bias = self.param("out_bias", nn.initializers.zeros, (self.vocab_size,))
        else:
            self.out = nn.Dense(self.vocab_size, kernel_init=uniform)

    def __call__(
        self,
        tokens: jax.Array,
        initial_carry: Sequence[Any] | None = None,
        *,
        train: bool = False,
    ) -> tuple[jax.Array, tuple[Any, ...]]:
        x = self.embedding(tokens)
        y, carries = self.rnn(x, None, initial_carry, train=train)
        if self.tie:
            return self.embedding.attend(y) + self.out_bias, carries
        return self.out(y), carries


def zero_carry(model: RNNLM, batch_shape: Sequence[int]) -> tuple[Any, ...]:
    """Zero carries for every layer of `model` (an unbound module): a pytree of arrays."""
    cell = cell_builder(model.cell)(model.hidden)
    return tuple(cell.initialize_carry(tuple(batch_shape)) for _ in range(model.num_layers))


def step_fn(model: RNNLM):
    """`(params, tokens [B], carries) -> (logits [B, V], carries)`: one step of the model, the
    step function of `dl.decode.sampling` (evaluation mode, no dropout)."""

    def step(params, tokens, carries):
        logits, carries = model.apply({"params": params}, tokens[:, None], carries, train=False)
        return logits[:, 0], carries

    return step
