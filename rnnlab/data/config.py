"""Reading dataset options from a config, and where data lives on disk.

A dataset config is an ``ml_collections.ConfigDict`` or a plain dict with at least ``name``;
every other option is declared with its default by the dataset (``rnnlab.data.options``),
and ``rnnlab.data.info``/``load`` hand the readers below a config with every option filled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SPLITS = ("train", "validation", "test")
# The one setting for where data live: raw corpora, vocabulary caches and, under tfds/, the
# prepared TFDS datasets. Without it, TFDS_DATA_DIR (TFDS's own variable) names where the
# TFDS datasets are, so that data prepared with `tfds build` are found without copying them.
DATA_DIR_ENV = "RNNLAB_DATA_DIR"
TFDS_DATA_DIR_ENV = "TFDS_DATA_DIR"


def option(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg[key]`` for a dict, ConfigDict or dataset group, ``default`` when absent or
    None."""
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


# Options of every TFDS catalog read (see rnnlab.data.catalog).
CATALOG_FIELDS = ("name", "download", "download_retries", "validation_fraction")


def cache_key(cfg: Any, fields: Sequence[str]) -> str:
    """A JSON key of the options in ``fields`` (plus the resolved data directory), for
    memoising work that depends on those options only."""
    values = {f: option(cfg, f) for f in fields}
    values["data_dir"] = str(data_dir(cfg))
    # A TFDS directory taken from $TFDS_DATA_DIR is written out: the key is also read back
    # as a config, whose resolved data_dir would otherwise hide the variable.
    resolved = tfds_dir(cfg)
    default = str(data_dir(cfg) / "tfds")
    values["tfds_data_dir"] = option(cfg, "tfds_data_dir") or (
        resolved if resolved != default else None
    )
    return json.dumps(values, sort_keys=True, default=str)


def data_dir(cfg: Any) -> Path:
    """The root data directory: ``cfg.data_dir``, else ``$RNNLAB_DATA_DIR``, else ``./data``."""
    value = option(cfg, "data_dir") or os.environ.get(DATA_DIR_ENV) or "data"
    return Path(os.path.expanduser(str(value))).absolute()


def tfds_dir(cfg: Any) -> str:
    """Where TFDS datasets are prepared: ``cfg.tfds_data_dir``; else ``<data_dir>/tfds``
    when ``cfg.data_dir`` or ``$RNNLAB_DATA_DIR`` is set; else ``$TFDS_DATA_DIR``; else
    ``./data/tfds``.

    Kept as a string because it may be a ``gs://`` path.
    """
    value = option(cfg, "tfds_data_dir")
    if not value and not (option(cfg, "data_dir") or os.environ.get(DATA_DIR_ENV)):
        value = os.environ.get(TFDS_DATA_DIR_ENV, "").strip()
    if not value:
        return str(data_dir(cfg) / "tfds")
    value = str(value)
    return value if "://" in value else os.path.abspath(os.path.expanduser(value))


def positive_int(cfg: Any, key: str, default: int | None = None) -> int:
    """An integer option that must be >= 1."""
    value = option(cfg, key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"{key} must be a positive integer, received {value!r}")
    if value < 1:
        raise ValueError(f"{key} must be a positive integer (>= 1), received {value!r}")
    return int(value)


def choice(cfg: Any, key: str, default: str | None = None, allowed: Sequence[str] = ()) -> str:
    """A string option restricted to ``allowed``."""
    value = option(cfg, key, default)
    if value not in allowed:
        raise ValueError(f"{key} must be one of {list(allowed)}, received {value!r}")
    return value


def fraction(cfg: Any, key: str, default: float | None = None) -> float:
    """A float option in [0, 1)."""
    value = float(option(cfg, key, default))
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{key} must be in [0, 1), received {value!r}")
    return value


def split_fractions(cfg: Any, default: Sequence[float] | None = None) -> tuple[float, float, float]:
    """``cfg.split_fractions``: (train, validation, test) fractions, positive, summing to 1."""
    value = option(cfg, "split_fractions", default)
    if isinstance(value, Mapping):
        value = [value.get(s, 0.0) for s in SPLITS]
    value = tuple(float(v) for v in value)
    if len(value) != 3 or min(value) <= 0 or abs(sum(value) - 1.0) > 1e-6:
        raise ValueError(
            "split_fractions must be three positive fractions (train, validation, test) "
            f"summing to 1, received {value!r}"
        )
    return value  # type: ignore[return-value]


def check_split(split: str) -> str:
    """Validates a split name."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, received {split!r}")
    return split
