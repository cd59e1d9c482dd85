"""Sequence classification: mnist (sequential / permuted), mnist1d, japanese_vowels,
basic_motions.

Options: ``max_len`` (longest allowed sequence; a longer one is a ValueError; default the
dataset's longest), ``bucket_window`` (batches sorted together by length, default 8 for
variable-length sets, 0 = off), ``pad_multiple`` (default 8), ``pad_to`` ("batch": the
batch's longest rounded up to ``pad_multiple``, or "max": always ``max_len``),
``standardize`` (UEA sets, per-channel with training statistics, default True),
``validation_fraction`` (carved from train, stratified by class: :mod:`rnnlab.data.splits`;
default 0.1), and for mnist
``mode`` ("pixel": 784 x 1, or "row": 28 x 28), ``permuted`` (bool) and
``permutation_seed`` (default 0).

Padding rows of a finite pass have weight 0 and ``seq_lengths`` 1 (not 0, so that a mean
over valid steps stays finite).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import numpy as np

from rnnlab.data import builders, catalog, pipeline, splits
from rnnlab.data.config import (
    CATALOG_FIELDS,
    cache_key,
    check_split,
    tfds_dir,
)
from rnnlab.data.options import PAD_TO, POSITIVE, Catalog, Common, Pipeline, one_of, opt
from rnnlab.data.registry import Dataset, register

# The options that the memoised reads below depend on.
_FIELDS = (*CATALOG_FIELDS, "mode", "permuted", "permutation_seed")


def _builder(cfg: Any):
    name = cfg["name"]
    if name == "mnist1d":
        return builders.make(builders.Mnist1d, tfds_dir(cfg))
    return builders.make(builders.UeaArchive, tfds_dir(cfg), name)


def _file_split(cfg: Any, split: str):
    if cfg["name"] == "mnist":
        return catalog.data_source(cfg, "mnist", split)
    return _builder(cfg).as_data_source(split=split)


@functools.lru_cache(maxsize=16)
def _stratified(key: str, size: int) -> tuple[Any, Any]:
    """Train and validation indices into the file's train split (``size`` tells mock data
    from real data of the same config)."""
    cfg = json.loads(key)
    src = _file_split(cfg, "train")
    labels = [int(src[i]["label"]) for i in range(len(src))]
    return splits.stratified(labels, float(cfg.get("validation_fraction")))


def _source(cfg: Any, split: str):
    if split == "test":
        return _file_split(cfg, "test")
    full = _file_split(cfg, "train")
    train, validation = _stratified(cache_key(cfg, _FIELDS), len(full))
    return splits.Subset(full, train if split == "train" else validation)


@functools.lru_cache(maxsize=1)
def _permutation(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(784)


def _to_sequence(cfg: Any, example: dict) -> np.ndarray:
    """One example as a float32 ``[time, features]`` array."""
    name = cfg["name"]
    if name == "mnist":
        pixels = np.asarray(example["image"], np.float32).reshape(784) / 255.0
        if cfg.get("permuted"):
            pixels = pixels[_permutation(int(cfg.get("permutation_seed")))]
        if cfg.get("mode") == "row":
            return pixels.reshape(28, 28)
        return pixels.reshape(784, 1)
    seq = np.asarray(example["sequence"], np.float32)
    return seq.reshape(-1, 1) if seq.ndim == 1 else seq


def _stats(key: str) -> dict[str, Any]:
    """Lengths, class names and channel statistics (training split only)."""
    cfg = json.loads(key)
    if cfg["name"] != "mnist":
        return _builder_stats(key)
    # Catalog data is not memoised (mock data and real data may share a config).
    row = cfg.get("mode") == "row"
    length, features = (28, 28) if row else (784, 1)
    return {
        "lengths": None,
        "max_length": length,
        "features": features,
        "classes": [str(i) for i in range(10)],
        "num_examples": {s: len(_source(cfg, s)) for s in ("train", "validation", "test")},
    }


@functools.lru_cache(maxsize=16)
def _builder_stats(key: str) -> dict[str, Any]:
    cfg = json.loads(key)
    name = cfg["name"]
    builder_info = _builder(cfg).info
    lengths, train, labels = {}, [], {}
    for split in ("train", "validation", "test"):
        src = _source(cfg, split)
        seqs = [_to_sequence(cfg, src[i]) for i in range(len(src))]
        lengths[split] = [len(s) for s in seqs]
        labels[split] = [int(src[i]["label"]) for i in range(len(src))]
        if split == "train":
            train = seqs
    if not train:
        raise ValueError(f"{name} split 'train' is empty: expected at least one example")
    stacked = np.concatenate(train, axis=0)
    std = stacked.std(axis=0)
    return {
        "lengths": lengths,
        "max_length": max(max(v, default=0) for v in lengths.values()),
        "features": int(stacked.shape[1]),
        "classes": list(builder_info.features["label"].names),
        "num_examples": {s: len(v) for s, v in lengths.items()},
        "labels": {s: labels[s] for s in ("train", "validation")},
        "mean": stacked.mean(axis=0).tolist(),
        "std": np.where(std > 0, std, 1.0).tolist(),
    }


def _info(cfg: Any) -> dict[str, Any]:
    stats = _stats(cache_key(cfg, _FIELDS))
    max_len = cfg.get("max_len") or stats["max_length"]
    if stats["lengths"] is not None:
        for split, lengths in stats["lengths"].items():
            too_long = [i for i, n in enumerate(lengths) if n > max_len]
            if too_long:
                i = too_long[0]
                raise ValueError(
                    f"max_len is {max_len} but {cfg['name']} split {split!r} has "
                    f"{len(too_long)} longer sequences (example {i}: length {lengths[i]})"
                )
    if "labels" in stats:
        labels = stats["labels"]
        splits.check_coverage(cfg["name"], labels["train"], labels["validation"], stats["classes"])
    out = {
        "task": "classification",
        "num_classes": len(stats["classes"]),
        "class_names": stats["classes"],
        "input_features": stats["features"],
        "seq_len": max_len,
        "variable_length": stats["lengths"] is not None
        and len({n for v in stats["lengths"].values() for n in v}) > 1,
        "num_examples": stats["num_examples"],
    }
    if "mean" in stats:
        out["mean"], out["std"] = stats["mean"], stats["std"]
    return out


def collate(examples, *, max_len: int, pad_multiple: int, fixed: bool, features: int):
    """Pads a list of ``(sequence, label)`` (None = padding) into a classification batch."""
    lengths = [0 if e is None else len(e[0]) for e in examples]
    T = pipeline.padded_length(lengths, max_len=max_len, pad_multiple=pad_multiple, fixed=fixed)
    seqs = [None if e is None else e[0] for e in examples]
    inputs = pipeline.pad_stack(seqs, T, np.float32)
    if inputs.ndim == 2:  # only padding rows: give them the feature axis
        inputs = np.zeros((len(examples), T, features), np.float32)
    return {
        "inputs": inputs,
        "seq_lengths": np.array([max(n, 1) for n in lengths], np.int32),
        "labels": np.array([0 if e is None else e[1] for e in examples], np.int32),
        "weights": np.array([e is not None for e in examples], np.float32),
    }


def _load(cfg, info, *, split, **shard):
    src = _source(cfg, check_split(split))
    standardize = cfg["name"] in builders.UEA_SETS and cfg.get("standardize")
    mean = np.asarray(info.get("mean", 0.0), np.float32)
    std = np.asarray(info.get("std", 1.0), np.float32)

    def fetch(index):
        if index < 0:
            return None
        example = src[int(index)]
        seq = _to_sequence(cfg, example)
        if standardize:
            seq = (seq - mean) / std
        return seq, int(example["label"])

    what = f"{cfg['name']} split {split!r}"
    return pipeline.sequence_batches(
        len(src), fetch, collate, cfg, info, split=split, what=what, **shard
    )


@dataclasses.dataclass(frozen=True)
class Sequences(Common, Pipeline):
    max_len: Any = opt(None, "longest sequence kept (None: the longest in the data)", POSITIVE)
    bucket_window: Any = opt(None, "batches sorted by length together (None: 8 if lengths vary)")
    pad_to: str = opt("batch", '"batch" (the longest in the batch) or "max" (max_len)', PAD_TO)
    pad_multiple: int = opt(8, "padded lengths are a multiple of this", POSITIVE)
    validation_fraction: float = opt(0.1, "share of train held out when there is no validation")


@dataclasses.dataclass(frozen=True)
class Mnist(Sequences, Catalog):
    mode: str = opt(
        "pixel", '"pixel" (784 steps of 1) or "row" (28 steps of 28)', one_of("pixel", "row")
    )
    permuted: bool = opt(False, "a fixed permutation of the pixels (pMNIST)")
    permutation_seed: int = opt(0, "seed of that permutation")


@dataclasses.dataclass(frozen=True)
class Standardized(Sequences):
    standardize: bool = opt(True, "per-channel z-scores")


OPTIONS = {
    "mnist": Mnist,
    "mnist1d": Sequences,
    "japanese_vowels": Standardized,
    "basic_motions": Standardized,
}
for _name, _what in {
    "mnist": "TFDS mnist as a sequence (pixel or row), optionally permuted",
    "mnist1d": "MNIST-1D (Greydanus 2020), generated locally",
    "japanese_vowels": "UEA JapaneseVowels: 9 speakers, 12 LPC channels, lengths 7-29",
    "basic_motions": "UEA BasicMotions: 4 activities, 6 channels, length 100",
}.items():
    register(Dataset(_name, "classification", _info, _load, _what, OPTIONS[_name]))
