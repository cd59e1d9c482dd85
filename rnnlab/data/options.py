"""Each dataset's options: one frozen dataclass per dataset, declared next to the code that
reads it, every field with its default and one-line help (:func:`rnnlab.options.opt`)::

    @dataclasses.dataclass(frozen=True)
    class Adding(Generated):
        seq_len: int = opt(200, "sequence length T")

    register(Dataset("adding", "regression", _info, _load, "adding", Adding))

The groups below are the shared parts datasets inherit. :func:`rnnlab.data.info` and
:func:`rnnlab.data.load` hand the dataset's code its group (:func:`resolve`), read as
``cfg["seq_len"]`` or ``cfg.seq_len``, never with a default of its own. A default of
``None`` means "derived" (the help says from what); the reader computes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rnnlab.options import COUNT, POSITIVE, SHARES, Check, Group, build, one_of, opt

# The field helpers that the datasets' groups are written with, and the shared groups.
__all__ = ["COUNT", "PAD_TO", "POSITIVE", "SHARES", "Catalog", "Check", "Common", "Group"]
__all__ += ["Pipeline", "Threads", "one_of", "opt", "resolve"]
PAD_TO = one_of("batch", "max")  # padded to the batch's longest or to the split's


@dataclasses.dataclass(frozen=True)
class Common(Group):
    """Read for every dataset (rnnlab.data.config): the name and where the data lives."""

    name: str = opt("", "dataset name, one of rnnlab.data.names()")
    data_dir: Any = opt(None, "root data directory (None: $RNNLAB_DATA_DIR, else ./data)")
    tfds_data_dir: Any = opt(None, "where TFDS datasets are prepared (None: <data_dir>/tfds)")


@dataclasses.dataclass(frozen=True)
class Threads(Group):
    """Read by every grain pipeline (rnnlab.data.pipeline)."""

    num_threads: int = opt(2, "threads reading and transforming examples")
    prefetch: int = opt(4, "batches prefetched ahead of the trainer")


@dataclasses.dataclass(frozen=True)
class Pipeline(Threads):
    shuffle: Any = opt(None, "shuffle the examples (None: the train split only)")

    def shuffled(self, split: str) -> bool:
        """Whether ``split`` is read in a shuffled order."""
        return split == "train" if self.shuffle is None else bool(self.shuffle)


@dataclasses.dataclass(frozen=True)
class Catalog(Group):
    """Read by every TFDS catalog dataset (rnnlab.data.catalog)."""

    download: bool = opt(True, "download and prepare the TFDS dataset when it is missing")
    download_retries: int = opt(2, "download attempts before giving up")
    validation_fraction: float = opt(0.1, "share of train held out when there is no validation")


def resolve(cfg: Any, group: type, dataset: str = "", prefix: str = "") -> Any:
    """``cfg`` (a dict, ConfigDict or group) as the dataset's ``group``: missing options
    (and ``None`` values of options whose default is not ``None``) take their default, and
    every key and value is checked against the fields (:func:`rnnlab.options.build`).

    Raises:
      ConfigError: a key the group lacks (naming the closest option) or a value its field
        refuses, naming ``prefix + key``.
    """
    items = dict(cfg.items()) if isinstance(cfg, Mapping) or hasattr(cfg, "items") else vars(cfg)
    values = {k: v for k, v in items.items() if v is not None}
    return build(group, values, prefix, f"data {dataset!r}")
