"""Any TFDS dataset by name as labelled sequences: ``tfds_classification``,
``tfds_regression`` and ``tfds_tagging``.

``tfds_name`` names a catalog dataset (``"mnist"``, ``"mnist:3.0.1"``) or a user's own
builder: ``tfds_module`` is imported first, so a ``GeneratorBasedBuilder`` defined there is
registered, and its data is read from ``tfds_data_dir`` (or ``<data_dir>/tfds``) once
prepared with ``tfds build <module>.py --file_format=array_record --data_dir=DIR``.
Reading goes through :func:`rnnlab.data.catalog.data_source` (array_record, random access,
no TensorFlow).

``features`` maps the dataset's features to the task: ``inputs`` (a tensor ``[T]``,
``[T, F]`` or ``[T, ...]``, flattened to ``[T, F]``: an image ``[H, W, C]`` is read as
``H`` steps of ``W * C`` values), ``labels`` (a ``ClassLabel`` or integer for
classification, numbers for regression, a ``Sequence(ClassLabel)`` of one tag per step for
tagging) and optionally ``lengths`` (the valid steps of a padded ``inputs``, which cut the
tags too). Inputs are scaled by ``scale`` (e.g. ``1/255`` for images).
A dataset without a validation split gets ``validation_fraction`` of train: of every class
for classification (:func:`rnnlab.data.splits.stratified`, as the built-in classification
sets), from the end of train for regression.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from rnnlab.data import catalog, own
from rnnlab.data import splits as split_lib
from rnnlab.data.config import CATALOG_FIELDS, cache_key, check_split
from rnnlab.data.options import Catalog, Common, opt
from rnnlab.data.registry import Dataset, register

_FIELDS = (*CATALOG_FIELDS, "tfds_name", "tfds_module", "features", "scale")
DEFAULT_FEATURES = {"inputs": "inputs", "labels": "label", "lengths": None}


def _mapping(cfg: Any) -> dict[str, str | None]:
    given = cfg.get("features") or {}
    given = given.to_dict() if hasattr(given, "to_dict") else dict(given)
    unknown = sorted(set(given) - set(DEFAULT_FEATURES))
    if unknown:
        raise ValueError(
            f"features has unknown keys {unknown}: expected {sorted(DEFAULT_FEATURES)}"
        )
    return {**DEFAULT_FEATURES, **given}


def _name(cfg: Any) -> str:
    module = cfg.get("tfds_module")
    if module:
        try:
            importlib.import_module(str(module))
        except ImportError as e:
            raise ValueError(f"tfds_module {module!r} cannot be imported: {e}") from e
    name = cfg.get("tfds_name")
    if not name:
        raise ValueError("tfds_name must name a TFDS dataset, e.g. 'mnist' or your builder's name")
    return str(name)


def _builder_info(cfg: Any, name: str):
    for directory in catalog.candidate_dirs(cfg):
        try:
            return tfds.builder(name, data_dir=directory).info
        except tfds.core.registered.DatasetNotFoundError as e:
            raise ValueError(f"tfds_name {name!r} is not a TFDS dataset: {e}") from e
        except Exception:  # noqa: BLE001 - try the next directory
            continue
    raise ValueError(f"tfds_name {name!r}: no dataset info found in {catalog.candidate_dirs(cfg)}")


def _source(cfg: Any, split: str, splits: list[str], task: str = "regression"):
    if split == "test" and "test" not in splits:
        raise ValueError(f"tfds_name {cfg.get('tfds_name')!r} has no test split ({splits})")
    if task == "classification" and split != "test" and "validation" not in splits:
        full = catalog.data_source(cfg, _name(cfg), "train")
        keep, held = _stratified(cache_key(cfg, _FIELDS))
        return split_lib.Subset(full, keep if split == "train" else held)
    spec = catalog.split_spec(cfg, split, has_validation="validation" in splits)
    return catalog.data_source(cfg, _name(cfg), spec)


@functools.lru_cache(maxsize=4)
def _stratified(key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` indices of the train split, ``validation_fraction`` of every
    class (one pass over its labels)."""
    cfg = json.loads(key)
    full = catalog.data_source(cfg, _name(cfg), "train")
    field = _mapping(cfg)["labels"]
    labels = [int(full[i][field]) for i in range(len(full))]
    return split_lib.stratified(labels, float(cfg.get("validation_fraction")))


def sequence(example: dict, mapping: dict, scale: float, where: str) -> np.ndarray:
    """The mapped ``inputs`` of one example as float32 ``[T, F]`` (valid steps only)."""
    if mapping["inputs"] not in example:
        raise ValueError(f"{where}: no feature {mapping['inputs']!r} (features: {sorted(example)})")
    x = np.asarray(example[mapping["inputs"]], np.float32) * np.float32(scale)
    x = x.reshape(len(x), -1) if x.ndim >= 2 else x.reshape(-1, 1)
    if mapping["lengths"]:
        x = x[: int(example[mapping["lengths"]])]
    if not np.isfinite(x).all():
        raise ValueError(f"{where}: feature {mapping['inputs']!r} has non-finite values")
    return x


def tags(example: dict, mapping: dict, steps: int, num_classes: int, where: str) -> np.ndarray:
    """The mapped per-step ``labels`` of one tagging example, int32 ``[steps]``, checked."""
    y = np.asarray(example[mapping["labels"]]).reshape(-1)
    if mapping["lengths"]:
        y = y[:steps]
    if len(y) != steps:
        raise ValueError(f"{where}: {len(y)} tags for {steps} steps of {mapping['inputs']!r}")
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        raise ValueError(
            f"{where}: tag {int(y[bad[0]])} at time {int(bad[0])} is outside the "
            f"{num_classes} classes"
        )
    return y.astype(np.int32)


def _class_names(name: str, label: Any, task: str, field: str) -> list[str]:
    """The class names of a ``ClassLabel`` (classification) or of the ``ClassLabel`` inside
    a ``Sequence`` (tagging)."""
    feature = getattr(label, "feature", None) if task == "tagging" else label
    names = getattr(feature, "names", None)
    if not names:
        kind = "a Sequence of ClassLabel" if task == "tagging" else "a ClassLabel"
        raise ValueError(f"{name}: feature {field!r} is not {kind}")
    return list(names)


@functools.lru_cache(maxsize=4)
def _stats(key: str, task: str) -> dict[str, Any]:
    cfg = json.loads(key)
    name, mapping = _name(cfg), _mapping(cfg)
    info = _builder_info(cfg, name)
    splits = list(info.splits.keys()) or ["train", "test"]
    label = info.features[mapping["labels"]] if mapping["labels"] in info.features else None
    if label is None:
        raise ValueError(
            f"{name}: no feature {mapping['labels']!r} for the labels (features: "
            f"{sorted(info.features)}); set data.features.labels"
        )
    scale = float(cfg.get("scale") or 1.0)
    # Shapes, lengths and training statistics from the examples themselves (one pass).
    lengths, train, classes = {}, [], {}
    names = None if task == "regression" else _class_names(name, label, task, mapping["labels"])
    for split in ("train", "validation", "test"):
        src = _source(cfg, split, splits, task)
        if task == "classification":
            classes[split] = [int(src[i][mapping["labels"]]) for i in range(len(src))]
        seqs = [
            sequence(src[i], mapping, scale, f"{name} {split} example {i}") for i in range(len(src))
        ]
        if task == "tagging":  # every tag checked before anything trains
            for i, x in enumerate(seqs):
                tags(src[i], mapping, len(x), len(names), f"{name} {split} example {i}")
        if not seqs:
            raise ValueError(f"{name}: split {split!r} is empty")
        lengths[split] = [len(s) for s in seqs]
        train = seqs if split == "train" else train
    stacked = np.concatenate(train)
    std = stacked.std(axis=0)
    out = {
        "task": task,
        "input_features": int(stacked.shape[1]),
        "seq_len": max(max(v) for v in lengths.values()),
        "variable_length": len({n for v in lengths.values() for n in v}) > 1,
        "num_examples": {s: len(v) for s, v in lengths.items()},
        "mean": stacked.mean(axis=0).tolist(),
        "std": np.where(std > 0, std, 1.0).tolist(),
        "tfds_splits": splits,
    }
    if task != "regression":
        out.update(num_classes=len(names), class_names=names)
    if task == "classification":
        split_lib.check_coverage(name, classes["train"], classes["validation"], names)
    elif task == "regression":
        out["output_features"] = int(np.prod(label.shape)) if label.shape else 1
    return out


def _dataset(task: str):
    def info(cfg):
        return dict(_stats(cache_key(cfg, _FIELDS), task))

    def load(cfg, info, *, split, **shard):
        mapping, scale = _mapping(cfg), float(cfg.get("scale"))
        src = _source(cfg, check_split(split), info["tfds_splits"], task)
        name = cfg.get("tfds_name")

        def label(example, index, steps):
            y = example[mapping["labels"]]
            if task == "tagging":
                where = f"{name} {split} example {index}"
                return tags(example, mapping, steps, info["num_classes"], where)
            if task == "classification":
                c = int(y)
                if not 0 <= c < info["num_classes"]:
                    raise ValueError(
                        f"{name} {split} example {index}: label {c} outside the classes"
                    )
                return c
            return np.asarray(y, np.float32).reshape(-1)

        class _Records:
            def __len__(self):
                return len(src)

            def __getitem__(self, i):
                example = src[i]
                x = sequence(example, mapping, scale, f"{name} {split} example {i}")
                return x, label(example, i, len(x))

        return own.load_examples(task, _Records(), cfg, info, split=split, **shard)

    return info, load


@dataclasses.dataclass(frozen=True)
class TfdsSequences(Common, own.SequenceBase, Catalog):
    tfds_name: str = opt("", "TFDS dataset (catalog name or your builder's name)")
    tfds_module: Any = opt(None, "module imported first: it registers your own builder")
    features: Any = opt(None, "{inputs, labels, lengths}: the dataset's feature names")
    scale: float = opt(1.0, "inputs are multiplied by this (1/255 for images)")


for _task in own.TASKS:
    register(
        Dataset(
            f"tfds_{_task}", _task, *_dataset(_task), f"any TFDS dataset ({_task})", TfdsSequences
        )
    )
