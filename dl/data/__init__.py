"""Datasets as host-memory arrays, and deterministic, resumable, fixed-shape batching."""

from dl.data.pipeline import ArrayData, Loader, eval_batches
from dl.data.registry import DATASETS, load
from dl.data.roots import DataError, data_roots
from dl.data.synthetic import sawtooth, separable, tent, two_spirals, xor

__all__ = [
    "DATASETS",
    "ArrayData",
    "DataError",
    "Loader",
    "data_roots",
    "eval_batches",
    "load",
    "sawtooth",
    "separable",
    "tent",
    "two_spirals",
    "xor",
]
