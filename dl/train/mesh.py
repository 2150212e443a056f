"""Data parallelism over a `jax.sharding.Mesh` with one `data` axis.

Parameters and optimizer state are replicated; batches are split along their leading axis. The
same code runs on 1 CPU, on `XLA_FLAGS=--xla_force_host_platform_device_count=8`, on one GPU, or on
a pod after `jax.distributed.initialize()`; XLA inserts the cross-device reductions.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def replicate(tree: Any, mesh: Mesh) -> Any:
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Places a host batch with its leading axis split over the mesh's `data` axis."""
    n = mesh.shape["data"]
    for k, v in batch.items():
        if v.shape[0] % n:
            raise ValueError(
                f"batch field {k!r} has {v.shape[0]} rows, not divisible by the {n} "
                f"devices of the mesh; choose a batch size that is a multiple of {n}"
            )
    sharding = NamedSharding(mesh, P("data"))
    return {k: jax.device_put(v, sharding) for k, v in batch.items()}
