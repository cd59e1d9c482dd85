"""Each host of a real TPU slice gets a distinct, complete share of every global batch.

On a slice, ``jax.make_mesh`` lays the data axis along the torus, so a host's chips are not
neighbours on it (v5e 4x4: host 0 holds batch shards 0, 1, 6 and 15). The reference is
JAX's own placement of a batch with the run's sharding (``devices_indices_map``) and the
host libtpu gives each chip, against which the rows that the data flow gives each host
(:func:`rnnlab.parallel.process_rows`, the shard each host reads) are checked. Before
per-host batches followed the device order, :func:`rnnlab.parallel.process_data_shard`
refused every multi-host v5e, v5p and v4 slice here.
"""

from __future__ import annotations

import pytest

from rnnlab import parallel
from rnnlab.parallel import topology
from rnnlab.train import config as cfg_lib
from rnnlab.train import sharding

SLICES = [("v5e-16", 1, 4), ("v5p-32", 1, 4), ("v4-32", 1, 4), ("v5e-16", 2, 8), ("v6e-8", 1, 1)]


def reference_rows(mesh, batch: int) -> dict[int, set[int]]:
    """Rows of a global batch on each host, from JAX's placement of the data sharding."""
    placement = parallel.data_sharding(mesh).devices_indices_map((batch,))
    rows: dict[int, set[int]] = {}
    for device, (index,) in placement.items():
        rows.setdefault(device.process_index, set()).update(range(batch)[index])
    return rows


@pytest.mark.parametrize("name, slices, hosts", SLICES)
def test_each_host_reads_a_distinct_complete_share(name, slices, hosts):
    devices = topology.devices(name, slices)
    config = cfg_lib.load("experiments/charlm.py:tpu")  # mesh data=-1, as every TPU recipe
    mesh = sharding.mesh_from_config(config, devices)
    batch = 4 * len(devices)
    want = reference_rows(mesh, batch)
    assert len(want) == hosts
    # As process 0 of the slice calls it at start-up (the call that refused these slices).
    assert parallel.process_data_shard(mesh)[1] == hosts
    shards = {p: parallel.process_data_shard(mesh, process=p) for p in want}
    assert sorted(index for index, _ in shards.values()) == list(range(hosts))
    assert {count for _, count in shards.values()} == {hosts}
    seen: list[int] = []
    for p, rows in want.items():
        got = parallel.process_rows(mesh, batch, process=p).tolist()
        assert set(got) == rows and len(got) == batch // hosts
        seen += got
    assert sorted(seen) == list(range(batch))


def test_two_slices_split_the_data_axis_across_slices_first():
    devices = topology.devices("v5e-16", 2)
    mesh = parallel.make_mesh({"data": -1}, devices)
    order = [d.slice_index for d in mesh.devices.flat]
    # The first half of the data axis is slice 0: only that split crosses the DCN.
    assert order == [0] * 16 + [1] * 16
