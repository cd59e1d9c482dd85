"""Local (per-process) batches -> global ``jax.Array``s on a mesh."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def batch_sharding(mesh: Mesh, axis: str | tuple[str, ...] = "data") -> NamedSharding:
    """Shards the leading (batch) dimension over ``axis`` of ``mesh``, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(axis))


def make_global_batch(
    local_batch: dict[str, np.ndarray],
    mesh: Mesh | None = None,
    sharding: jax.sharding.Sharding | None = None,
    *,
    axis: str | tuple[str, ...] = "data",
) -> dict[str, jax.Array]:
    """Assembles each process's local batch into global arrays.

    Every process passes its own ``[local_batch, ...]`` arrays; the result has global batch
    ``local_batch * process_count`` laid out by ``sharding`` (default: the batch dimension
    over ``axis`` of ``mesh``), through ``jax.make_array_from_process_local_data``.
    """
    if sharding is None:
        if mesh is None:
            raise ValueError("make_global_batch needs mesh or sharding, received neither")
        sharding = batch_sharding(mesh, axis)

    def put(x: Any) -> jax.Array:
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(put, local_batch)
