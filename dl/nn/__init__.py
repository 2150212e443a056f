"""Flax Linen layers and the pure layer functions (pooling) that conv nets are built from."""

from dl.nn.conv import Conv, ConvTranspose, SequenceConv, sequence_padding
from dl.nn.norm import BatchNorm, SpatialDropout
from dl.nn.pool import avg_pool, max_pool, max_pool_with_argmax, max_unpool, unpool_size

__all__ = [
    "BatchNorm",
    "Conv",
    "ConvTranspose",
    "SequenceConv",
    "SpatialDropout",
    "avg_pool",
    "max_pool",
    "max_pool_with_argmax",
    "max_unpool",
    "sequence_padding",
    "unpool_size",
]
