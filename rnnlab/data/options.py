"""Each dataset's options: one declared schema (default and one-line help per key).

A registered :class:`~rnnlab.data.registry.Dataset` lists its options in ``options``, a
dict built in the dataset's own module next to the code that reads them::

    OPTIONS = {
        **options.COMMON,
        "seq_len": Option(200, "time steps per example"),
    }
    register(Dataset("adding", "regression", _info, _load, "adding", options=OPTIONS))

:func:`rnnlab.data.info` and :func:`rnnlab.data.load` resolve a config against it first
(:func:`resolve`): missing keys take their default, an unknown key is a ValueError naming
the closest option. The dataset's code then reads every key from the resolved config
(``cfg["seq_len"]``, ``positive_int(cfg, "seq_len")``), never with a default of its own. A
default of ``None`` means "derived" (the help says from what, e.g. ``shuffle``: the train
split only); the reader computes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rnnlab.options import Option, closest

# Read for every dataset (rnnlab.data.config): the name and where the data lives.
COMMON: dict[str, Option] = {
    "name": Option("", "dataset name, one of rnnlab.data.names()"),
    "data_dir": Option(None, "root data directory (None: $RNNLAB_DATA_DIR, else ./data)"),
    "tfds_data_dir": Option(None, "where TFDS datasets are prepared (None: <data_dir>/tfds)"),
}

# Read by every grain pipeline (rnnlab.data.pipeline).
PIPELINE: dict[str, Option] = {
    "num_threads": Option(2, "threads reading and transforming examples"),
    "prefetch": Option(4, "batches prefetched ahead of the trainer"),
    "shuffle": Option(None, "shuffle the examples (None: the train split only)"),
}

# Read by every TFDS catalog dataset (rnnlab.data.catalog).
CATALOG: dict[str, Option] = {
    "download": Option(True, "download and prepare the TFDS dataset when it is missing"),
    "download_retries": Option(2, "download attempts before giving up"),
    "validation_fraction": Option(0.1, "share of train held out when there is no validation"),
}


def resolve(cfg: Any, schema: Mapping[str, Option], dataset: str = "") -> dict[str, Any]:
    """``cfg`` (a dict or ConfigDict) as a plain dict with every option of ``schema``:
    missing ones (and ``None`` values of options whose default is not ``None``) take their
    default.

    Raises:
      ValueError: a key the schema lacks; the message starts with the key and names the
        closest option.
    """
    items = dict(cfg.items()) if hasattr(cfg, "items") else dict(vars(cfg))
    for key in items:
        if key not in schema:
            near = closest(key, schema)
            hint = f"; did you mean {near!r}?" if near else ""
            raise ValueError(f"{key} is not an option of dataset {dataset!r}{hint}")
    out = {key: option.default for key, option in schema.items()}
    out.update({k: v for k, v in items.items() if v is not None})
    return out
