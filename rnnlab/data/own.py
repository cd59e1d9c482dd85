"""A user's own labelled sequences: ``sequence_classification`` and ``sequence_regression``
from files, and :class:`ArraySource` from arrays or a grain ``MapDataSource`` in memory.

Files are read by :mod:`rnnlab.data.sequence_files` (``.npz``/``.npy`` arrays, long
``.csv``/``.parquet`` tables). ``path`` is the training file; ``validation_path`` and
``test_path`` name the other splits, and a split without a file is carved from the training
file: a permutation of its records drawn with ``split_seed`` gives the last
``validation_fraction`` to validation and the ``test_fraction`` before them to test. Batches,
shuffling, host sharding and resumable iterators are those of every dataset
(:mod:`rnnlab.data.pipeline`); batches are the built-in classification batches (``inputs``,
``seq_lengths``, ``weights`` and ``labels``, or ``targets`` for regression).

Classes are ``classes`` (a list of names, or a count for ids 0..C-1) or, by default, the
sorted distinct labels of the training split; a label outside them is an error naming the
file and record.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from rnnlab.data import pipeline, sequence_files
from rnnlab.data import splits as split_lib
from rnnlab.data.config import check_split
from rnnlab.data.options import PAD_TO, POSITIVE, Common, Group, Pipeline, opt
from rnnlab.data.registry import Dataset, register

TASKS = ("classification", "regression", "tagging")


def table_columns(cfg: Any) -> dict[str, Any]:
    """The long table's column names from the config."""
    features = cfg.get("feature_columns")
    return {
        "id_column": cfg.get("id_column"),
        "time_column": cfg.get("time_column"),
        "label_column": cfg.get("label_column"),
        "feature_columns": list(features) if features else None,
    }


def _classes(cfg: Any, train: sequence_files.Records) -> list[str]:
    given = cfg.get("classes")
    if given is None:
        labels = train.labels
        if labels.dtype == object:  # per-step labels: one array per record
            labels = np.concatenate(list(labels)) if len(labels) else np.array([])
        return [str(c) for c in sorted(set(labels.tolist()))]
    if isinstance(given, int):
        return [str(c) for c in range(given)]
    return [str(c) for c in given]


def _label_key(label: Any) -> str:
    if isinstance(label, float) and float(label).is_integer():
        return str(int(label))
    return str(label)


def _label_ids(records: sequence_files.Records, classes: list[str]) -> Any:
    """Class ids of the records' labels (names or ids; per-step labels give an array per
    record); one outside ``classes`` is an error naming the record (and time step)."""
    index = {name: i for i, name in enumerate(classes)}
    shown = classes if len(classes) <= 10 else classes[:10] + ["..."]
    per_step = records.labels.dtype == object
    out = []
    for i, label in enumerate(records.labels.tolist()):
        values = list(np.asarray(label).tolist()) if per_step else [label]
        ids = []
        for t, value in enumerate(values):
            key = _label_key(value)
            if key not in index:
                at = f" at time {t}" if per_step else ""
                raise ValueError(
                    f"{records.where}: record {records.ids[i]!r}: label {value!r}{at} is "
                    f"outside the classes {shown}"
                )
            ids.append(index[key])
        out.append(np.asarray(ids, np.int32) if per_step else ids[0])
    return out if per_step else np.asarray(out, np.int32)


def _targets(records: sequence_files.Records) -> np.ndarray:
    try:
        y = np.asarray(records.labels, np.float64)
    except ValueError as e:
        raise ValueError(f"{records.where}: regression labels must be numbers ({e})") from e
    y = y.reshape(len(records), -1)
    bad = np.argwhere(~np.isfinite(y))
    if bad.size:
        i = bad[0][0]
        raise ValueError(f"{records.where}: record {records.ids[i]!r}: label {y[i]} is not finite")
    return y.astype(np.float32)


def _subset(records: sequence_files.Records, index: np.ndarray, where: str):
    return sequence_files.Records(
        [records.sequences[i] for i in index],
        None if records.labels is None else records.labels[index],
        [records.ids[i] for i in index],
        where,
    )


def carve(n: int, cfg: Any, missing: list[str], classes: Any = None) -> dict[str, np.ndarray]:
    """Indices of the ``train`` records kept and of each ``missing`` split carved from them:
    a permutation drawn with ``split_seed`` gives its last ``validation_fraction`` to
    validation and the ``test_fraction`` before that to test. With ``classes`` (the class
    labels of the ``n`` records) each carved split takes that fraction of every class
    (:func:`rnnlab.data.splits.stratified` over the permuted records), so a file sorted by
    class still gives a validation split that holds every class."""
    order = np.random.default_rng(int(cfg.get("split_seed"))).permutation(n)
    labels = None if classes is None else np.asarray(classes)
    out, keep = {}, order
    for split in ("validation", "test"):
        if split not in missing:
            continue
        fraction = float(cfg.get(f"{split}_fraction"))
        if labels is None:
            size = int(round(n * fraction))
            out[split], keep = keep[len(keep) - size :], keep[: len(keep) - size]
        else:
            # The fraction of the whole file, taken from what is left of it.
            rest, held = split_lib.stratified(labels[keep], min(fraction * n / len(keep), 0.99))
            out[split], keep = keep[held], keep[rest]
    out["train"] = np.sort(keep)
    return out


def split_records(
    cfg: Any, given: Mapping[str, Any], stratify: bool = False
) -> dict[str, sequence_files.Records]:
    """The three splits: the given ones, the others carved from train (:func:`carve`; by
    class when ``stratify``)."""
    train = given["train"]
    missing = [s for s in ("validation", "test") if given.get(s) is None]
    if not missing:
        return dict(given)
    index = carve(len(train), cfg, missing, train.labels if stratify else None)
    out = {s: given[s] for s in ("validation", "test") if s not in missing}
    for split, rows in index.items():
        where = train.where if split == "train" else f"{train.where} [{split}]"
        out[split] = _subset(train, rows, where)
    return out


class Prepared:
    """Checked splits of one dataset: sequences, class ids or targets, and the description."""

    def __init__(self, task: str, cfg: Any, splits: Mapping[str, sequence_files.Records]):
        if task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, received {task!r}")
        self.task = task
        self.splits = split_records(cfg, splits, stratify=task == "classification")
        for split, records in self.splits.items():
            if not len(records):
                raise ValueError(f"{records.where}: split {split!r} is empty")
        train = self.splits["train"]
        features = {r.sequences[0].shape[1] for r in self.splits.values()}
        if len(features) > 1:
            raise ValueError(
                f"{train.where}: the splits have different feature counts {sorted(features)}"
            )
        self.seqs = {
            s: [np.asarray(x, np.float32) for x in r.sequences] for s, r in self.splits.items()
        }
        if task in ("classification", "tagging"):
            self.classes = _classes(cfg, train)
            self.labels = {s: _label_ids(r, self.classes) for s, r in self.splits.items()}
            if task == "classification":
                split_lib.check_coverage(
                    train.where, self.labels["train"], self.labels["validation"], self.classes
                )
            outputs = {"num_classes": len(self.classes), "class_names": self.classes}
        else:
            self.labels = {s: _targets(r) for s, r in self.splits.items()}
            widths = {y.shape[1] for y in self.labels.values()}
            if len(widths) > 1:
                raise ValueError(f"{train.where}: the splits have different target widths {widths}")
            outputs = {"output_features": widths.pop()}
        lengths = [len(x) for r in self.seqs.values() for x in r]
        stacked = np.concatenate(self.seqs["train"], axis=0)
        std = stacked.std(axis=0)
        self.info = {
            "task": task,
            **outputs,
            "input_features": int(stacked.shape[1]),
            "seq_len": max(lengths),
            "variable_length": len(set(lengths)) > 1,
            "num_examples": {s: len(r) for s, r in self.seqs.items()},
            "mean": stacked.mean(axis=0).tolist(),
            "std": np.where(std > 0, std, 1.0).tolist(),
        }


def collate(examples, *, max_len: int, pad_multiple: int, fixed: bool, features: int, task: str):
    """Pads ``(sequence, label)`` pairs (None = padding) into a classification batch
    (``labels``), a tagging batch (``labels`` ``[B, T]``, ``weights`` ``[B, T]`` 1 on the
    valid steps) or a regression batch (``targets`` ``[B, K]``)."""
    lengths = [0 if e is None else len(e[0]) for e in examples]
    T = pipeline.padded_length(lengths, max_len=max_len, pad_multiple=pad_multiple, fixed=fixed)
    inputs = np.zeros((len(examples), T, features), np.float32)
    for row, e in enumerate(examples):
        if e is not None:
            inputs[row, : len(e[0])] = e[0]
    batch = {
        "inputs": inputs,
        "seq_lengths": np.array([max(n, 1) for n in lengths], np.int32),
        "weights": np.array([e is not None for e in examples], np.float32),
    }
    if task == "classification":
        batch["labels"] = np.array([0 if e is None else e[1] for e in examples], np.int32)
    elif task == "tagging":
        batch["labels"] = pipeline.pad_stack(
            [None if e is None else e[1] for e in examples], T, np.int32
        )
        batch["weights"] = (np.arange(T)[None, :] < np.array(lengths)[:, None]).astype(np.float32)
    else:
        width = next(len(e[1]) for e in examples if e is not None) if any(examples) else 1
        batch["targets"] = np.stack(
            [np.zeros(width, np.float32) if e is None else e[1] for e in examples]
        )
    return batch


def load_prepared(prepared: Prepared, cfg: Any, info: Mapping[str, Any], *, split: str, **shard):
    """The grain pipeline of one split of ``prepared`` (the registry's ``load`` contract)."""
    seqs, labels = prepared.seqs[check_split(split)], prepared.labels[split]
    examples = _Pairs(seqs, labels)
    return load_examples(prepared.task, examples, cfg, info, split=split, **shard)


class _Pairs:
    def __init__(self, seqs, labels):
        self._seqs, self._labels = seqs, labels

    def __len__(self) -> int:
        return len(self._seqs)

    def __getitem__(self, i: int):
        return self._seqs[i], self._labels[i]


def load_examples(task: str, examples, cfg: Any, info: Mapping[str, Any], *, split: str, **shard):
    """The grain pipeline over ``examples`` (``len`` and ``[i] -> (sequence [T, F],
    label)``), one split: order, sharding, batches, prefetch (see :mod:`pipeline`)."""
    standardize = bool(cfg.get("standardize"))
    mean = np.asarray(info["mean"], np.float32)
    std = np.asarray(info["std"], np.float32)

    def fetch(index):
        if index < 0:
            return None
        seq, label = examples[int(index)]
        return ((seq - mean) / std if standardize else seq), label

    return pipeline.sequence_batches(
        len(examples),
        fetch,
        functools.partial(collate, task=task),
        cfg,
        info,
        split=split,
        what=f"split {split!r}",
        **shard,
    )


# ------------------------------------------------------------------------ from files
_FILE_FIELDS = (
    "path", "validation_path", "test_path", "validation_fraction", "test_fraction",
    "split_seed", "classes", "id_column", "time_column", "label_column", "feature_columns",
)  # fmt: skip


@functools.lru_cache(maxsize=4)
def _prepared(task: str, key: str) -> Prepared:
    cfg = json.loads(key)
    if not cfg.get("path"):
        raise ValueError("path must name the training file (.npz, .npy, .csv or .parquet)")
    columns = table_columns(cfg)
    splits = {
        split: sequence_files.read(cfg[field], columns, per_step=task == "tagging")
        if cfg.get(field)
        else None
        for split, field in (
            ("train", "path"),
            ("validation", "validation_path"),
            ("test", "test_path"),
        )
    }
    return Prepared(task, cfg, splits)


def files_key(cfg: Any, fields: tuple[str, ...], paths: tuple[str, ...]) -> str:
    """A JSON key of the options in ``fields`` and of the size and modification time of the
    files the options in ``paths`` name: memoised reads see a rewritten file again."""
    values = {f: cfg.get(f) for f in fields}
    for f in paths:
        p = values.get(f) and os.path.expanduser(str(values[f]))
        if p and os.path.isfile(p):
            st = os.stat(p)
            values[f + "_stamp"] = [st.st_size, st.st_mtime_ns]
    return json.dumps(values, sort_keys=True, default=str)


def _file_key(cfg: Any) -> str:
    return files_key(cfg, _FILE_FIELDS, ("path", "validation_path", "test_path"))


def _file_dataset(task: str) -> tuple[Any, Any]:
    def info(cfg):
        return dict(_prepared(task, _file_key(cfg)).info)

    def load(cfg, info, **kw):
        return load_prepared(_prepared(task, _file_key(cfg)), cfg, info, **kw)

    return info, load


@dataclasses.dataclass(frozen=True)
class SequenceBase(Pipeline):
    """Options of own labelled sequences that do not carve splits themselves."""

    classes: Any = opt(None, "class names, or their count (None: the training labels)")
    standardize: bool = opt(False, "per-feature z-scores with training statistics")
    bucket_window: Any = opt(None, "batches sorted by length together (None: 8 if lengths vary)")
    pad_to: str = opt("batch", '"batch" (the longest in the batch) or "max" (the longest)', PAD_TO)
    pad_multiple: int = opt(8, "padded lengths are a multiple of this", POSITIVE)
    validation_fraction: float = opt(0.1, "share of train held out without validation_path")


@dataclasses.dataclass(frozen=True)
class Carved(Group):
    """Splits carved from the training file when their own files are not given."""

    validation_fraction: float = opt(0.1, "share of train held out without validation_path")
    test_fraction: float = opt(0.1, "share of train held out without test_path")
    split_seed: int = opt(0, "seed of the permutation that carves those splits")


@dataclasses.dataclass(frozen=True)
class Sequences(SequenceBase, Carved):
    pass


@dataclasses.dataclass(frozen=True)
class SequenceFiles(Common, Sequences):
    path: str = opt("", "training file: .npz/.npy arrays or a long .csv/.parquet table")
    validation_path: Any = opt(None, "validation file (None: carved from path)")
    test_path: Any = opt(None, "test file (None: carved from path)")
    id_column: str = opt("id", "table column naming the sequence of a row")
    time_column: str = opt("time", "table column ordering the rows of a sequence")
    label_column: str = opt("label", "table column with the sequence's label")
    feature_columns: Any = opt(None, "table feature columns (None: all the others)")


for _task in TASKS:
    register(
        Dataset(
            f"sequence_{_task}",
            _task,
            *_file_dataset(_task),
            f"your own labelled sequences ({_task}) from .npz/.npy/.csv/.parquet files",
            SequenceFiles,
        )
    )
