"""rnnlab.data: datasets for recurrent networks on TFDS data sources and grain pipelines.

Two calls serve the trainer::

    spec = rnnlab.data.info(cfg)            # task, shapes, vocabulary, normalisation
    it = rnnlab.data.load(cfg, split="train", batch_size=32, seed=0,
                          shard_index=jax.process_index(), shard_count=jax.process_count())
    batch = next(it)                        # dict of numpy arrays, local batch
    state = it.get_state(); it.set_state(state)

``cfg`` is an ``ml_collections.ConfigDict`` or dict with ``name`` (one of ``names()``) and
the dataset's options (see ``docs/data.md``). Nothing here imports TensorFlow.
"""

from __future__ import annotations

from typing import Any

from rnnlab.data import options as _options
from rnnlab.data.config import SPLITS, check_split, option_value
from rnnlab.data.pipeline import DataIterator
from rnnlab.data.registry import names
from rnnlab.logs import absl_quiet
from rnnlab.options import Option, table

__all__ = ["SPLITS", "DataIterator", "Option", "info", "load", "names", "options", "resolve"]


def _dataset(cfg: Any):
    from rnnlab.data import registry

    return registry.get(option_value(cfg, "name"))


def options(name: str) -> dict[str, Option]:
    """``{key: Option(default, help)}`` of the dataset ``name`` (ValueError if unknown); an
    empty dict for a dataset registered without a schema."""
    from rnnlab.data import registry

    group = registry.get(name).options
    return table(group) if group is not None else {}


def resolve(cfg: Any, prefix: str = "") -> Any:
    """``cfg`` as its dataset's group (:mod:`rnnlab.data.options`), every option filled in
    and checked (a key it lacks, naming the closest option, or a value its field refuses
    is a ``ConfigError``, a ValueError, naming ``prefix + key``); unchanged for a dataset
    registered without one."""
    dataset = _dataset(cfg)
    if dataset.options is None:
        return cfg
    return _options.resolve(cfg, dataset.options, dataset.name, prefix)


def info(cfg: Any) -> dict[str, Any]:
    """Describes the dataset named by ``cfg.name``: a dict with ``name``, ``task`` (one of
    "lm", "classification", "regression", "copy", "forecast", "seq2seq") and the shapes a
    model needs (``vocab_size``, ``num_classes``, ``input_features``, ``output_features``,
    ``horizon``, ``seq_len``, ``vocab``, ...; see ``docs/data.md``)."""
    dataset = _dataset(cfg)
    cfg = resolve(cfg)
    with absl_quiet():  # TFDS's "Using custom data configuration" (rnnlab.logs)
        out = dataset.info(cfg)
    return {"name": dataset.name, **out, "task": dataset.task}


def load(
    cfg: Any,
    *,
    split: str,
    batch_size: int,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
    repeat: bool = True,
) -> DataIterator:
    """An iterator of local batches (dicts of numpy arrays) of ``split``.

    ``batch_size`` is this process's share (global batch / ``shard_count``); process
    ``shard_index`` of ``shard_count`` reads a disjoint shard. ``repeat=True`` is infinite
    (training); ``repeat=False`` is one pass, padded to the same number of batches on every
    process, with ``weights`` 0 on the padding.
    """
    check_split(split)
    for arg, value, low in (("batch_size", batch_size, 1), ("shard_count", shard_count, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{arg} must be an integer >= {low}, received {value!r}")
    if not isinstance(shard_index, int) or not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index must be in [0, {shard_count}), received {shard_index!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, received {seed!r}")
    dataset = _dataset(cfg)
    cfg = resolve(cfg)
    spec = info(cfg)
    with absl_quiet():  # the builders again (rnnlab.logs)
        ds, num_batches = dataset.load(
            cfg,
            spec,
            split=split,
            batch_size=batch_size,
            seed=seed,
            shard_index=shard_index,
            shard_count=shard_count,
            repeat=bool(repeat),
        )
    meta = {
        "name": dataset.name,
        "split": split,
        "batch_size": batch_size,
        "seed": seed,
        "shard_index": shard_index,
        "shard_count": shard_count,
        "repeat": bool(repeat),
    }
    return DataIterator(ds, meta=meta, num_batches=num_batches)
