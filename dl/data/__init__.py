"""Datasets as host-memory arrays, and deterministic, resumable, fixed-shape batching."""

from dl.data.pipeline import ArrayData, Loader, eval_batches
from dl.data.registry import DATASETS, load
from dl.data.sources import DataError
from dl.data.synthetic import separable, two_spirals, xor

__all__ = [
    "ArrayData",
    "DATASETS",
    "DataError",
    "Loader",
    "eval_batches",
    "load",
    "separable",
    "two_spirals",
    "xor",
]
