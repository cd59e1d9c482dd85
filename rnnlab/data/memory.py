"""Data from Python: arrays in memory or a grain ``MapDataSource``, for
``rnnlab.train.train(config, workdir, source=ArraySource(...))``.

The records go through the same checks, splits, batches and resumable pipeline as the
``sequence_classification`` / ``sequence_regression`` files (:mod:`rnnlab.data.own`); the
config's ``data`` group takes their options (``validation_fraction``, ``classes``,
``standardize``, ...) and a ``name`` of the user's choice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from rnnlab.data import own, sequence_files
from rnnlab.data.options import opt
from rnnlab.data.options import resolve as resolve_options
from rnnlab.data.pipeline import DataIterator


@dataclasses.dataclass(frozen=True)
class Arrays(own.Sequences):
    name: str = opt("arrays", "a name for the data (recorded with the run)")


def _records(data: Any, where: str, per_step: bool) -> sequence_files.Records:
    """Records of a dict of arrays (``inputs``, ``labels``, optional ``lengths``) or of a
    random-access source (``len`` and ``[i]``, e.g. ``grain.MapDataSource``) of dicts with
    ``inputs`` ``[T, F]`` and ``label`` (``[T]`` labels with ``per_step``)."""
    if isinstance(data, Mapping):
        if "inputs" not in data or "labels" not in data:
            raise ValueError(f"{where}: expected arrays 'inputs' and 'labels', got {sorted(data)}")
        records = sequence_files.array_records(where, dict(data), per_step=per_step)
        sequence_files.check_values(records)
        return records
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        seqs, labels = [], []
        for i in range(len(data)):
            record = data[i]
            if not isinstance(record, Mapping) or "inputs" not in record or "label" not in record:
                raise ValueError(f"{where}: record {i} must be a dict with 'inputs' and 'label'")
            x = np.asarray(record["inputs"], np.float64)
            seqs.append(x[:, None] if x.ndim == 1 else x)
            labels.append(np.asarray(record["label"]) if per_step else record["label"])
        if per_step:
            bad = [i for i, (x, y) in enumerate(zip(seqs, labels, strict=True)) if len(y) != len(x)]
            if bad:
                raise ValueError(f"{where}: record {bad[0]}: one label per time step expected")
            out = np.empty(len(labels), object)
            out[:] = labels
            labels = out
        else:
            labels = np.asarray(labels)
    else:
        raise ValueError(f"{where}: expected a dict of arrays or a MapDataSource, got {type(data)}")
    records = sequence_files.Records(seqs, labels, list(range(len(seqs))), where)
    sequence_files.check_values(records)
    return records


class ArraySource:
    """A data source (``info``/``load``, as ``rnnlab.data``) over records held in memory.

    Args:
      train, validation, test: each a dict of arrays (``inputs`` ``[N, T, F]`` or ragged with
        ``lengths``, and ``labels``) or a random-access source of ``{"inputs", "label"}``
        records; missing splits are carved from ``train`` (``validation_fraction``,
        ``test_fraction`` in the config's ``data`` group).
      task: ``"classification"``, ``"regression"`` or ``"tagging"`` (a label per step).

    Example::

        source = ArraySource({"inputs": x, "labels": y})
        config.data.name = "my_arrays"
        rnnlab.train.train(config, "workdirs/mine", source=source)
    """

    def __init__(self, train: Any, *, validation: Any = None, test: Any = None, task: str):
        if task not in own.TASKS:
            raise ValueError(f"task must be one of {list(own.TASKS)}, received {task!r}")
        self.task = task
        self._splits = {
            split: None if data is None else _records(data, f"{split} data", task == "tagging")
            for split, data in (("train", train), ("validation", validation), ("test", test))
        }
        self._cache: dict[str, own.Prepared] = {}

    def _prepared(self, cfg: Any) -> tuple[dict[str, Any], own.Prepared]:
        resolved = resolve_options(cfg, Arrays, "in-memory arrays")
        key = repr(sorted(resolved.items()))
        if key not in self._cache:
            self._cache = {key: own.Prepared(self.task, resolved, self._splits)}
        return resolved, self._cache[key]

    def info(self, cfg: Any) -> dict[str, Any]:
        """The description the model is built from (as ``rnnlab.data.info``)."""
        resolved, prepared = self._prepared(cfg)
        return {"name": resolved["name"], **prepared.info}

    def load(self, cfg: Any, *, split, batch_size, seed, shard_index=0, shard_count=1, repeat=True):
        """An iterator of local batches of ``split`` (as ``rnnlab.data.load``)."""
        resolved, prepared = self._prepared(cfg)
        shard = {
            "batch_size": batch_size,
            "seed": seed,
            "shard_index": shard_index,
            "shard_count": shard_count,
            "repeat": bool(repeat),
        }
        ds, num_batches = own.load_prepared(
            prepared, resolved, self.info(cfg), split=split, **shard
        )
        meta = {"name": resolved["name"], "split": split, **shard}
        return DataIterator(ds, meta=meta, num_batches=num_batches)
