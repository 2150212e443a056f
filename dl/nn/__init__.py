"""Flax Linen layers and the pure layer functions (pooling) that conv nets are built from, and
recurrent cells with the layers that scan them over padded sequences."""

from dl.nn.attention import Attention, masked_normalize
from dl.nn.conv import Conv, ConvTranspose, SequenceConv, sequence_padding
from dl.nn.norm import BatchNorm, SpatialDropout
from dl.nn.pool import avg_pool, max_pool, max_pool_with_argmax, max_unpool, unpool_size
from dl.nn.recurrent import CELLS, GRU, LSTM, LSTM_VARIANTS, Elman, lstm_variant_flags
from dl.nn.sequence import (
    RNN,
    Bidirectional,
    SequenceDropout,
    StackedRNN,
    detach_carry,
    dropout_mask,
    reverse_padded,
    run_cell,
)

__all__ = [
    "CELLS",
    "GRU",
    "LSTM",
    "LSTM_VARIANTS",
    "RNN",
    "Attention",
    "BatchNorm",
    "Bidirectional",
    "Conv",
    "ConvTranspose",
    "Elman",
    "SequenceConv",
    "SequenceDropout",
    "SpatialDropout",
    "StackedRNN",
    "avg_pool",
    "detach_carry",
    "dropout_mask",
    "lstm_variant_flags",
    "masked_normalize",
    "max_pool",
    "max_pool_with_argmax",
    "max_unpool",
    "reverse_padded",
    "run_cell",
    "sequence_padding",
    "unpool_size",
]
