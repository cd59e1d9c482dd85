"""Where data lives on disk, and the key of work memoised on a dataset's options.

The options themselves are declared, with their defaults and checks, by each dataset's
group (``rnnlab.data.options``); ``rnnlab.data.info``/``load`` hand the readers the group,
every option filled in and checked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SPLITS = ("train", "validation", "test")
# The one setting for where data live: raw corpora, vocabulary caches and, under tfds/, the
# prepared TFDS datasets. Without it, TFDS_DATA_DIR (TFDS's own variable) names where the
# TFDS datasets are, so that data prepared with `tfds build` are found without copying them.
DATA_DIR_ENV = "RNNLAB_DATA_DIR"
TFDS_DATA_DIR_ENV = "TFDS_DATA_DIR"


def option_value(cfg: Any, key: str) -> Any:
    """``cfg[key]`` of a dict, ConfigDict or dataset group; None when absent."""
    return cfg.get(key) if hasattr(cfg, "get") else getattr(cfg, key, None)


# Options of every TFDS catalog read (see rnnlab.data.catalog).
CATALOG_FIELDS = ("name", "download", "download_retries", "validation_fraction")


def cache_key(cfg: Any, fields: Sequence[str]) -> str:
    """A JSON key of the options in ``fields`` (plus the resolved data directory), for
    memoising work that depends on those options only."""
    values = {f: option_value(cfg, f) for f in fields}
    values["data_dir"] = str(data_dir(cfg))
    # A TFDS directory taken from $TFDS_DATA_DIR is written out: the key is also read back
    # as a config, whose resolved data_dir would otherwise hide the variable.
    resolved = tfds_dir(cfg)
    default = str(data_dir(cfg) / "tfds")
    values["tfds_data_dir"] = option_value(cfg, "tfds_data_dir") or (
        resolved if resolved != default else None
    )
    return json.dumps(values, sort_keys=True, default=str)


def data_dir(cfg: Any) -> Path:
    """The root data directory: ``cfg.data_dir``, else ``$RNNLAB_DATA_DIR``, else ``./data``."""
    value = option_value(cfg, "data_dir") or os.environ.get(DATA_DIR_ENV) or "data"
    return Path(os.path.expanduser(str(value))).absolute()


def tfds_dir(cfg: Any) -> str:
    """Where TFDS datasets are prepared: ``cfg.tfds_data_dir``; else ``<data_dir>/tfds``
    when ``cfg.data_dir`` or ``$RNNLAB_DATA_DIR`` is set; else ``$TFDS_DATA_DIR``; else
    ``./data/tfds``.

    Kept as a string because it may be a ``gs://`` path.
    """
    value = option_value(cfg, "tfds_data_dir")
    if not value and not (option_value(cfg, "data_dir") or os.environ.get(DATA_DIR_ENV)):
        value = os.environ.get(TFDS_DATA_DIR_ENV, "").strip()
    if not value:
        return str(data_dir(cfg) / "tfds")
    value = str(value)
    return value if "://" in value else os.path.abspath(os.path.expanduser(value))


def check_split(split: str) -> str:
    """Validates a split name."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, received {split!r}")
    return split
