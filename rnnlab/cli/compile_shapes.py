"""The batches a compile needs, without the data: their shapes and dtypes only.

``rnnlab compile`` builds the run as ``train`` does, so it needs the dataset description
(vocabulary size, classes, features, sequence length) and the layout of one batch. Both
come, in this order of preference, from:

1. the data itself, when it is on this machine (``rnnlab.data``, as ``train`` reads it);
2. a ``dataset_info.json`` the user passes (the file the engine writes into every workdir,
   :data:`rnnlab.train.export.DATASET_INFO_FILE`);
3. the dataset's declared features: TFDS catalog datasets (lm1b, mnist, ...) are read
   through ``tfds.testing.mock_data``, which serves random examples of the declared
   feature shapes, so the real loader produces batches of the real layout. A vocabulary
   counted from random text is not the real one: its size is the one the data options
   declare (``vocab_size``, ``max_vocab``), which caps the vocabulary the loader builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rnnlab.train import files
from rnnlab.train.config import ConfigDict, ConfigError

# Data options that fix the vocabulary size of a word-level corpus (the loader builds a
# vocabulary of at most that many entries from the training text).
VOCAB_OPTIONS = ("vocab_size", "max_vocab")


class DeclaredSource:
    """A data source with the engine's contract (``info``, ``load``) that serves one batch
    layout: ``load`` yields a single all-zero batch of the real keys, dtypes and shapes."""

    def __init__(self, info: Mapping[str, Any], batch: Mapping[str, np.ndarray], origin: str):
        self._info, self._batch, self.origin = dict(info), dict(batch), origin

    def info(self, cfg: Any) -> dict[str, Any]:
        del cfg
        return dict(self._info)

    def load(self, cfg, *, split, batch_size, seed, shard_index, shard_count, repeat):
        del cfg, split, seed, shard_index, shard_count, repeat
        return iter([self.batch(batch_size)])

    def batch(self, rows: int) -> dict[str, np.ndarray]:
        """A zero batch of ``rows`` rows in the recorded layout."""
        return {k: np.zeros((rows, *v.shape[1:]), v.dtype) for k, v in self._batch.items()}

    def layout(self, rows: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """``{key: (shape, dtype)}`` of a batch of ``rows`` rows (nothing allocated)."""
        return {k: ((rows, *v.shape[1:]), v.dtype) for k, v in self._batch.items()}


def _first_batch(data: Any, cfg: Any) -> dict[str, np.ndarray]:
    batches = data.load(cfg, split="train", batch_size=1, seed=0, repeat=True)
    return {k: np.asarray(v) for k, v in next(iter(batches)).items()}


def _declared_vocab(info: dict[str, Any], cfg: Mapping[str, Any]) -> dict[str, Any]:
    for key in VOCAB_OPTIONS:
        if cfg.get(key):
            info = dict(info, vocab_size=int(cfg[key]))
            info.pop("vocab", None)
    return info


def source(config: ConfigDict, dataset_info: str | None = None) -> DeclaredSource:
    """The shapes-only source for ``config`` (module docstring for where they come from).

    Raises:
      ConfigError: ``dataset_info`` does not exist or names another dataset, or the
        dataset is neither on this machine nor a TFDS catalog dataset (key ``data.name``).
    """
    import rnnlab.data as data

    cfg = config.data.to_dict()
    given = None
    if dataset_info:
        if not files.exists(dataset_info):
            raise ConfigError("dataset_info", f"{dataset_info} does not exist")
        given = dict(files.read_json(dataset_info))
        if given.get("name") not in (None, cfg.get("name")):
            raise ConfigError(
                "dataset_info",
                f"{dataset_info} describes dataset {given.get('name')!r}, the config "
                f"reads {cfg.get('name')!r}",
            )
    try:
        info = data.info(cfg)
        return DeclaredSource(given or info, _first_batch(data, cfg), "the data on this machine")
    except (ValueError, FileNotFoundError, OSError) as on_disk:
        missing = on_disk
    try:
        import tensorflow_datasets as tfds

        with tfds.testing.mock_data(num_examples=4):
            info = _declared_vocab(data.info(cfg), cfg)
            batch = _first_batch(data, cfg)
    except Exception as e:  # noqa: BLE001 - any failure means: not a catalog dataset
        raise ConfigError(
            "data.name",
            f"dataset {cfg.get('name')!r} is not on this machine ({missing}) and has no "
            f"declared TFDS features to compile from ({type(e).__name__}: {e}); pass "
            "--dataset-info with a run's dataset_info.json",
        ) from e
    origin = "the dataset's declared features (TFDS, no data read)"
    if given is not None:
        info, origin = given, f"{dataset_info} and the dataset's declared features"
    return DeclaredSource(info, batch, origin)
