"""Multi-host data flow: each process reads its share, global arrays are built from them.

The global batch of ``G`` examples is split over the data-like mesh axes into ``D`` batch
shards of ``G / D`` consecutive rows. Each process holds the shards of its own devices.
Which shards those are depends on the device order: on a CPU test mesh a process holds a
contiguous block, but on a TPU slice :func:`jax.make_mesh` follows the torus, so a v5e 4x4
slice gives host 0 the shards ``(0, 1, 6, 15)`` and a v5p 2x2x4 slice gives host 0 every
fourth shard. Any order works here, as long as every process holds as many shards as the
others and two processes hold either the same shards (replicas) or none in common.

A data pipeline reads shard ``process_data_shard(mesh)[0]`` of
``process_data_shard(mesh)[1]`` with a local batch of ``local_batch_size(G, mesh)`` rows, and
:func:`global_batch` places them with ``jax.make_array_from_process_local_data``: local row
``j`` becomes global row ``process_rows(mesh, G)[j]`` (the process's shards in increasing
order), without any copy between hosts. The global batch is thus a fixed permutation of the
concatenated per-process batches; losses and metrics are means over all of its rows, so the
order does not change them.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from rnnlab.parallel.mesh import DATA_AXES, data_axes, data_parallel_size, data_sharding


def _batch_blocks(mesh: Mesh, batch_axes: Sequence[str]) -> dict[int, tuple[int, ...]]:
    """For every process, the sorted batch-shard indices of its devices."""
    axes = data_axes(mesh, batch_axes)
    names = list(mesh.axis_names)
    sizes = [mesh.shape[name] for name in axes]
    blocks: dict[int, set[int]] = {}
    for coords in np.ndindex(*mesh.devices.shape):
        device = mesh.devices[coords]
        index = int(np.ravel_multi_index([coords[names.index(a)] for a in axes], sizes))
        blocks.setdefault(device.process_index, set()).add(index)
    return {p: tuple(sorted(s)) for p, s in blocks.items()}


def _shares(mesh: Mesh, batch_axes: Sequence[str]) -> tuple[dict[int, tuple[int, ...]], list]:
    """``(blocks, distinct)``: every process's shards and the distinct blocks in the order
    of their first shard (the data shard index of a block is its position).

    Raises:
      ValueError: processes hold different numbers of shards, or overlapping blocks that
        are not the same (no pipeline can feed such a layout from disjoint reads).
    """
    blocks = _batch_blocks(mesh, batch_axes)
    distinct = sorted(set(blocks.values()))
    width = len(distinct[0])
    seen: dict[int, tuple[int, ...]] = {}
    for p, block in sorted(blocks.items()):
        clash = next((seen[i] for i in block if i in seen and seen[i] != block), None)
        if len(block) != width or clash is not None:
            raise ValueError(
                f"process {p} holds batch shards {block} of mesh {dict(mesh.shape)}; each "
                "process must hold as many batch shards as the others, and processes that "
                "share a shard must hold the same shards"
            )
        seen.update(dict.fromkeys(block, block))
    return blocks, distinct


def process_data_shard(
    mesh: Mesh | None = None, batch_axes: Sequence[str] = DATA_AXES, process: int | None = None
) -> tuple[int, int]:
    """``(shard_index, shard_count)`` of the data process ``process`` (default: this one)
    must read.

    Without a mesh this is ``(process_index, process_count)``. With one, ``shard_count`` is
    the number of distinct sets of batch shards the processes hold (the process count when
    the data axes span the hosts) and ``shard_index`` the position of this process's set,
    whatever the device order (module docstring). Processes holding the same rows (a data
    axis that stays within one host while another axis spans hosts) get the same shard
    index and must read identical data.

    Raises:
      ValueError: a layout no disjoint reads can feed (see :func:`_shares`).
    """
    if mesh is None:
        return jax.process_index(), jax.process_count()
    blocks, distinct = _shares(mesh, batch_axes)
    mine = blocks[jax.process_index() if process is None else process]
    return distinct.index(mine), len(distinct)


def process_rows(
    mesh: Mesh,
    global_batch_size: int,
    process: int | None = None,
    batch_axes: Sequence[str] = DATA_AXES,
) -> np.ndarray:
    """The global rows that the local batch of ``process`` (default: this one) fills, in
    local order: row ``j`` of its local batch is row ``process_rows(...)[j]`` of the global
    batch built by :func:`global_batch`."""
    blocks, _ = _shares(mesh, batch_axes)
    mine = blocks[jax.process_index() if process is None else process]
    per_shard = global_batch_size // data_parallel_size(mesh, batch_axes)
    return np.concatenate([np.arange(i * per_shard, (i + 1) * per_shard) for i in mine])


def local_batch_size(
    global_batch_size: int, mesh: Mesh | None = None, batch_axes: Sequence[str] = DATA_AXES
) -> int:
    """Rows of the global batch this process reads: ``global_batch_size / process_count``
    for the usual meshes.

    Raises:
      ValueError: ``global_batch_size`` is not divisible by the number of processes or the
        number of data-parallel devices (all devices when no mesh is given).
    """
    if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, int | np.integer):
        raise ValueError(f"global_batch_size must be an int, got {global_batch_size!r}")
    if global_batch_size < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
    if mesh is None:
        devices, shards = jax.device_count(), jax.process_count()
        what = f"{devices} devices"
    else:
        devices = data_parallel_size(mesh, batch_axes)
        shards = process_data_shard(mesh, batch_axes)[1]
        what = f"{devices} data-parallel devices (mesh axes {data_axes(mesh, batch_axes)})"
    if global_batch_size % jax.process_count():
        raise ValueError(
            f"global_batch_size must be divisible by the process count "
            f"{jax.process_count()}, got {global_batch_size}"
        )
    if global_batch_size % devices:
        raise ValueError(f"global_batch_size must be divisible by {what}, got {global_batch_size}")
    return int(global_batch_size) // shards


def global_batch(local_batch, mesh: Mesh, batch_axes: Sequence[str] = DATA_AXES):
    """Assembles global ``jax.Array``\\ s from this process's rows of every batch leaf.

    Args:
      local_batch: a pytree (usually a dict) of NumPy arrays whose leading dimension is the
        local batch, as read by this process (see :func:`process_data_shard`).
      mesh: the device mesh; the result is sharded with :func:`data_sharding`.
      batch_axes: mesh axes that split the batch.

    Returns:
      The same pytree of global arrays with leading dimension
      ``local rows x number of data shards``, built with
      ``jax.make_array_from_process_local_data`` (no data crosses hosts).

    Raises:
      ValueError: a leaf is a scalar, or its global leading dimension is not divisible by
        the number of data-parallel devices (the error names the leaf).
    """
    sharding = data_sharding(mesh, batch_axes)
    shards = process_data_shard(mesh, batch_axes)[1]
    devices = data_parallel_size(mesh, batch_axes)

    def one(path, leaf):
        name = jax.tree_util.keystr(path) or "batch"
        x = np.asarray(leaf)
        if x.ndim == 0:
            raise ValueError(f"batch leaf {name} must have a leading batch dimension, got a scalar")
        rows = x.shape[0] * shards
        if rows % devices:
            raise ValueError(
                f"batch leaf {name}: local batch of {x.shape[0]} rows gives a global batch of "
                f"{rows}, which is not divisible by the {devices} data-parallel devices"
            )
        return jax.make_array_from_process_local_data(sharding, x, (rows, *x.shape[1:]))

    return jax.tree_util.tree_map_with_path(one, local_batch)


def to_host(tree):
    """Copies a pytree of (possibly multi-host) arrays to NumPy on every process.

    Fully replicated arrays (metrics after a jitted mean) are read from a local copy;
    arrays sharded across hosts are gathered with ``process_allgather``. Every process must
    call it with the same tree, since the gather is a collective.
    """

    def one(x):
        if not isinstance(x, jax.Array):
            return np.asarray(x)
        if x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, tree)
