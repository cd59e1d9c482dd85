"""The dataset registry: name -> how to describe it (``info``) and how to load it."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

TASKS = (
    "lm", "classification", "regression", "copy", "forecast", "seq2seq", "ctc", "video",
    "tagging",
)  # fmt: skip
_MODULES = (
    "rnnlab.data.text",
    "rnnlab.data.classification",
    "rnnlab.data.forecast",
    "rnnlab.data.synthetic",
    "rnnlab.data.seq2seq",
    "rnnlab.data.speech",
    "rnnlab.data.spoken_digits",
    "rnnlab.data.generated",
    "rnnlab.data.own",
    "rnnlab.data.pairs",
    "rnnlab.data.tfds_sequences",
    "rnnlab.data.audio_folder",
)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A registered dataset.

    ``info(cfg) -> dict`` describes shapes and vocabularies; ``load(cfg, info, *, split,
    batch_size, seed, shard_index, shard_count, repeat) -> DataIterator`` builds the pipeline.
    ``options``: the dataset's group, a frozen dataclass of every config key the two read,
    with its default and help (see :mod:`rnnlab.data.options`); both receive the config as
    that group. ``None`` (datasets registered outside rnnlab) passes the config through.
    """

    name: str
    task: str
    info: Callable[[Any], dict[str, Any]]
    load: Callable[..., Any]
    description: str = ""
    options: type | None = None


_REGISTRY: dict[str, Dataset] = {}


def register(dataset: Dataset) -> Dataset:
    """Adds a dataset under its name (a later registration with the same name replaces it)."""
    if dataset.task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, received {dataset.task!r}")
    _REGISTRY[dataset.name] = dataset
    return dataset


def _load_modules() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def names() -> list[str]:
    """The registered dataset names, sorted."""
    _load_modules()
    return sorted(_REGISTRY)


def get(name: Any) -> Dataset:
    """The dataset registered as ``name``; a ValueError lists the valid names otherwise."""
    _load_modules()
    if name not in _REGISTRY:
        raise ValueError(f"name must be one of {sorted(_REGISTRY)}, received {name!r}")
    return _REGISTRY[name]
