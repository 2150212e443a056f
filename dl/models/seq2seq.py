"""Recurrent encoder-decoder with optional attention and input feeding, over padded batches.

    model = Seq2Seq(src_vocab, tgt_vocab, embed=64, hidden=128, cell="gru", attention="additive")
    logits = model.apply(variables, src, src_lengths, tgt_in, train=False)   # teacher forcing
    # src [B, S] int, src_lengths [B] int, tgt_in [B, T] int (BOS, y_1 .. y_{T-1}); logits
    # [B, T, tgt_vocab] predict y_1 .. y_T.

Encoder: source embedding -> `dl.nn.StackedRNN` of `num_layers`, bidirectional by default
(Bahdanau et al. 2015, sec. 3.2), over each row's first `src_lengths` steps (padding touches
nothing). Each direction has `encoder_hidden` units (default hidden // 2, as OpenNMT's "brnn"),
so the memory h_i = [forward_i; backward_i] has width M = 2 * encoder_hidden (M = hidden by
default, which "dot" attention needs). summary = [forward final state; backward final state]
(the backward one is the state after reading position 0); unidirectional: the final state.

Decoder (Luong, Pham & Manning 2015, sec. 3 and 3.3, "global attention" with input feeding),
per target step t with the embedded previous token x_t:

    s_t = RNN(s_{t-1}, [x_t; a_{t-1}])              # input feeding: a_{t-1} fed back
    c_t = attention(s_t, h_1..h_S, mask)            # no attention: c_t = summary, every step
    a_t = tanh(W_c [c_t; s_t])                      # the "attentional vector", [B, hidden]
    logits_t = W_o dropout(a_t) + b_o

`attention=None` is the RNN encoder-decoder of Cho et al. 2014 / Sutskever et al. 2014 (a fixed
summary of the source; `bidirectional=False` for Sutskever's reader), with the same decoder
otherwise, so the two differ only by attention. Attention queries the current state s_t
(Luong); Bahdanau et al. query s_{t-1} before the update, a reordering of the same step.
`input_feeding=False` drops a_{t-1} from the RNN input. Initial decoder state of every layer:
h = tanh(W_init summary + b) (Bahdanau et al. app. A.2.2: s_0 = tanh(W_s h_1^<-)); an LSTM's
cell starts at 0; a_0 = 0. Attention weights are sown as intermediates
``{"attention": {"attention": ([B, T, S],)}}`` (the `nn.scan` stacks the steps on axis 1).

Decoding (`dl.decode`): ``state = model.apply(v, src, lengths, method="start")`` encodes and
initializes; ``logits, state = model.apply(v, state, tokens, method="decode_step")`` takes one
step; `step_fn(model)` wraps the latter as `(params, tokens [B], state) -> (logits [B, V],
state)` and `start_fn(model)` the former. Every leaf of the state has the batch on axis 0
(beam search reorders the memory with the decoder state). Feeding the teacher-forcing inputs
token by token gives the teacher-forced logits (the step is the same scanned module, run for one
step).

Dropout (`dropout`, fresh masks per step when `train`, needs a "dropout" rng): on both
embeddings, between stacked layers, on the encoder output and on a_t before the softmax.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.nn.attention import Attention
from dl.nn.recurrent import GRU, LSTM
from dl.nn.sequence import StackedRNN

CELLS = {"gru": GRU, "lstm": functools.partial(LSTM, variant="NP")}  # NP: torch.nn.LSTM's cell
ATTENTIONS = (None, "additive", "dot", "general")


def _top_state(carry) -> jax.Array:
    """h of a cell's carry: the GRU's h, or the LSTM's (h, c)[0]."""
    return carry[0] if isinstance(carry, tuple) else carry


class DecoderStep(nn.Module):
    """One decoder step (module docstring), scanned over time by `Seq2Seq`.

    (state, x_t [B, E], memory, train) -> (state, logits_t [B, V]); state = (carries: one per
    layer, feed a_{t-1} [B, hidden]); memory: from `Seq2Seq.encode`.
    """

    tgt_vocab: int
    hidden: int
    cell: str
    num_layers: int
    attention: nn.Module | None
    input_feeding: bool
    dropout: float

    @nn.compact
    def __call__(self, state, x_t, memory, train: bool):
        carries, feed = state
        inp = jnp.concatenate([x_t, feed], axis=-1) if self.input_feeding else x_t
        new_carries = []
        for k in range(self.num_layers):
            if k:
                inp = nn.Dropout(self.dropout, deterministic=not train)(inp)
            carry, inp = CELLS[self.cell](self.hidden, name=f"layer_{k}")(carries[k], inp)
            new_carries.append(carry)
        if self.attention is None:
            context = memory["summary"]
        else:
            context, _ = self.attention(
                inp, memory["keys"], memory["mask"], memory.get("projected")
            )
        attentional = jnp.tanh(
            nn.Dense(self.hidden, use_bias=False, name="combine")(
                jnp.concatenate([context, inp], axis=-1)
            )
        )
        dropped = nn.Dropout(self.dropout, deterministic=not train)(attentional)
        logits = nn.Dense(self.tgt_vocab, name="out")(dropped)
        return (tuple(new_carries), attentional), logits


class Seq2Seq(nn.Module):
    """(src [B, S], src_lengths [B], tgt_in [B, T]) -> logits [B, T, tgt_vocab].

    Attributes:
      src_vocab, tgt_vocab: vocabulary sizes (embedding rows; softmax size).
      embed: embedding width (source and target, separate tables).
      hidden: decoder units per layer, and the width of a_t.
      cell: "gru" (PyTorch's GRU) or "lstm" (PyTorch's LSTM cell, no peepholes).
      attention: None (encoder-decoder), "additive" (Bahdanau), "dot" or "general" (Luong).
      normalize: "softmax" or "sparsemax" attention weights.
      input_feeding: feed a_{t-1} to the decoder RNN (Luong et al. sec. 3.3).
      num_layers: encoder and decoder layers.
      dropout: rate (see module docstring).
      bidirectional: bidirectional encoder (else a forward reader, as Sutskever et al.).
      encoder_hidden: units per encoder direction (None: hidden // 2 if bidirectional, else
        hidden).
      attention_features: additive attention's scoring width A (None: hidden).
      unroll: encoder and decoder scan steps per loop iteration (speed only; same results).
    """

    src_vocab: int
    tgt_vocab: int
    embed: int
    hidden: int
    cell: str = "gru"
    attention: str | None = None
    normalize: str = "softmax"
    input_feeding: bool = True
    num_layers: int = 1
    dropout: float = 0.0
    bidirectional: bool = True
    encoder_hidden: int | None = None
    attention_features: int | None = None
    unroll: int = 1

    def setup(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {tuple(CELLS)}, got {self.cell!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        enc = self.encoder_hidden
        if enc is None:
            enc = self.hidden // 2 if self.bidirectional else self.hidden
        memory_width = enc * (2 if self.bidirectional else 1)
        if self.attention == "dot" and memory_width != self.hidden:
            raise ValueError(f"dot attention needs memory width {memory_width} == hidden")
        self.drop = nn.Dropout(self.dropout)
        self.src_embed = nn.Embed(self.src_vocab, self.embed)
        self.tgt_embed = nn.Embed(self.tgt_vocab, self.embed)
        self.encoder = StackedRNN(
            enc,
            self.num_layers,
            cell=CELLS[self.cell],
            bidirectional=self.bidirectional,
            dropout=self.dropout,
            unroll=self.unroll,
        )
        self.bridge = [nn.Dense(self.hidden, name=f"bridge_{k}") for k in range(self.num_layers)]
        self.attend = None
        if self.attention is not None:
            features = self.hidden if self.attention == "general" else self.attention_features
            self.attend = Attention(
                self.attention, self.normalize, features=features or self.hidden
            )
        self.decoder = nn.scan(
            DecoderStep,
            variable_broadcast="params",
            split_rngs={"params": False, "dropout": True},
            variable_axes={"intermediates": 1},
            in_axes=(1, nn.broadcast, nn.broadcast),
            out_axes=1,
            unroll=self.unroll,
        )(
            self.tgt_vocab,
            self.hidden,
            self.cell,
            self.num_layers,
            self.attend,
            self.input_feeding,
            self.dropout,
        )

    def encode(self, src: jax.Array, src_lengths: jax.Array, train: bool = False) -> dict:
        """-> memory {"summary": [B, M]} and, with attention, "keys" [B, S, M], "mask" [B, S]
        bool and "projected" (`Attention.project_keys`, absent for dot)."""
        drop = functools.partial(self.drop, deterministic=not train)
        lengths = jnp.asarray(src_lengths, jnp.int32)
        keys, carries = self.encoder(drop(self.src_embed(src)), lengths, train=train)
        top = carries[-1]
        if self.bidirectional:
            summary = jnp.concatenate([_top_state(top[0]), _top_state(top[1])], axis=-1)
        else:
            summary = _top_state(top)
        memory = {"summary": summary}
        if self.attend is not None:
            keys = drop(keys)
            memory["keys"] = keys
            memory["mask"] = jnp.arange(src.shape[1])[None, :] < lengths[:, None]
            projected = self.attend.project_keys(keys)
            if projected is not None:
                memory["projected"] = projected
        return memory

    def init_decoder(self, memory: dict) -> dict:
        """-> the decoding state {"memory": memory, "decoder": (carries, a_0)}."""
        summary = memory["summary"]
        carries = []
        for k in range(self.num_layers):
            h = jnp.tanh(self.bridge[k](summary))
            carries.append((h, jnp.zeros_like(h)) if self.cell == "lstm" else h)
        feed = jnp.zeros((summary.shape[0], self.hidden), summary.dtype)
        return {"memory": memory, "decoder": (tuple(carries), feed)}

    def start(self, src: jax.Array, src_lengths: jax.Array) -> dict:
        """encode + init_decoder (evaluation mode): the state before the first target token."""
        return self.init_decoder(self.encode(src, src_lengths))

    def decode(self, state: dict, tgt_in: jax.Array, train: bool = False):
        """Teacher forcing from `state`: tgt_in [B, T] -> (logits [B, T, V], new state)."""
        x = self.drop(self.tgt_embed(tgt_in), deterministic=not train)
        decoder, logits = self.decoder(state["decoder"], x, state["memory"], train)
        return logits, {"memory": state["memory"], "decoder": decoder}

    def decode_step(self, state: dict, tokens: jax.Array):
        """tokens [B] -> (logits [B, V], new state), evaluation mode."""
        logits, state = self.decode(state, tokens[:, None])
        return logits[:, 0], state

    def __call__(self, src, src_lengths, tgt_in, train: bool = False) -> jax.Array:
        state = self.init_decoder(self.encode(src, src_lengths, train=train))
        return self.decode(state, tgt_in, train=train)[0]


def start_fn(model: Seq2Seq) -> Callable[[Any, jax.Array, jax.Array], dict]:
    """`(params, src [B, S], src_lengths [B]) -> state` for `step_fn` (evaluation mode)."""

    def start(params, src, src_lengths):
        return model.apply({"params": params}, src, src_lengths, method="start")

    return start


def step_fn(model: Seq2Seq):
    """`(params, tokens [B], state) -> (logits [B, V], state)`: one decoder step, the step
    function of `dl.decode.sampling` and `dl.decode.beam` (evaluation mode, no dropout)."""

    def step(params, tokens, state):
        return model.apply({"params": params}, state, tokens, method="decode_step")

    return step
