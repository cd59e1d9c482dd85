"""The engine's side of the data contract: dataset info, per-process iterators and global
batches on the mesh.

The data module (``rnnlab.data`` by default; tests may pass another object with the same two
functions) provides ``info(cfg) -> dict`` and ``load(cfg, *, split, batch_size, seed,
shard_index, shard_count, repeat) -> iterator`` of local numpy batches with
``get_state()``/``set_state()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from jax.sharding import Mesh

from rnnlab import parallel
from rnnlab.tasks import names as task_names
from rnnlab.train.config import ConfigDict, ConfigError


def default_source() -> Any:
    return importlib.import_module("rnnlab.data")


def dataset_info(source: Any, config: ConfigDict) -> dict[str, Any]:
    """``source.info(config.data)``; a missing or unknown dataset names ``data.name``."""
    try:
        info = dict(source.info(config.data))
    except (ValueError, FileNotFoundError, KeyError, OSError) as e:
        text = str(e)
        key = "data.name"
        for k in config.data.keys():
            if k != "name" and text.startswith(f"{k} "):
                key = f"data.{k}"
        raise ConfigError(key, f"dataset {config.data.get('name')!r} unavailable: {text}") from e
    if info.get("task") not in task_names():
        raise ConfigError(
            "data.name",
            f"dataset task {info.get('task')!r} has no loss in rnnlab.tasks "
            f"(known: {task_names()})",
        )
    return info


def iterator(
    source: Any,
    config: ConfigDict,
    mesh: Mesh,
    *,
    split: str,
    global_batch_size: int,
    repeat: bool,
) -> Iterator[Mapping[str, np.ndarray]]:
    """This process's iterator of local batches for ``split``."""
    shard_index, shard_count = parallel.process_data_shard(mesh)
    local = parallel.local_batch_size(global_batch_size, mesh)
    return source.load(
        config.data,
        split=split,
        batch_size=local,
        seed=int(config.seed),
        shard_index=shard_index,
        shard_count=shard_count,
        repeat=repeat,
    )


def to_global(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, Any]:
    """Local numpy batch -> global arrays sharded over the mesh's data axes."""
    return parallel.global_batch(dict(batch), mesh)


def tokens_in(batch: Mapping[str, np.ndarray], processes: int) -> int:
    """Time steps processed in a global batch (``B * T`` of the inputs, all processes)."""
    x = np.shape(batch["inputs"])
    per = x[0] * (x[1] if len(x) > 1 else 1)
    return int(per * processes)
