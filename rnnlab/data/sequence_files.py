"""Reading a user's labelled sequences from files, and checking them record by record.

Two layouts, chosen by the file's extension:

- arrays (``.npz``): ``inputs`` ``[N, T, F]`` (or ``[N, T]``, one feature) padded, with an
  optional ``lengths`` ``[N]``; or ragged, ``inputs`` ``[sum(lengths), F]`` with
  ``lengths`` ``[N]`` (the sequences one after another, like a ragged tensor's values and
  row lengths); ``labels`` ``[N]`` (class ids or names) or, for regression, ``[N]`` /
  ``[N, K]`` floats. A ``.npy`` holds ``inputs`` alone (what ``rnnlab predict`` reads).
- a long table (``.csv``, ``.parquet``): one row per time step with the columns ``id``,
  ``time``, the features and ``label`` (names configurable). The rows of one id, sorted by
  time, are one sequence; its label must be the same on all of them.

Every check raises a one-line ``ValueError`` that names the file, the record (or row) and
what is wrong, before anything is written anywhere.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

ARRAY_FORMATS = (".npz", ".npy")
TABLE_FORMATS = (".csv", ".parquet")


@dataclasses.dataclass
class Records:
    """Sequences read from one file: ``sequences[i]`` ``[T_i, F]`` float32, ``labels``
    (``None`` when the file has none), ``ids`` (row ids of a table, else record numbers)
    and ``where``, the file, for messages."""

    sequences: list[np.ndarray]
    labels: np.ndarray | None
    ids: list[Any]
    where: str

    def __len__(self) -> int:
        return len(self.sequences)


def _fail(where: str, what: str) -> ValueError:
    return ValueError(f"{where}: {what}")


def ragged(where: str, inputs: np.ndarray, lengths: np.ndarray | None) -> list[np.ndarray]:
    """The sequences of a padded ``[N, T, F]`` / ``[N, T]`` or flat ragged array."""
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
            raise _fail(where, f"lengths must be a 1-D integer array, received {lengths.dtype}")
        bad = np.flatnonzero(lengths < 1)
        if bad.size:
            raise _fail(where, f"record {bad[0]}: length {lengths[bad[0]]} must be >= 1")
    if inputs.ndim == 3 or (inputs.ndim == 2 and lengths is None):
        padded = inputs if inputs.ndim == 3 else inputs[..., None]
        if lengths is None:
            return list(padded)
        if len(lengths) != len(padded):
            raise _fail(
                where,
                f"mismatched lengths: {len(lengths)} lengths for {len(padded)} records of inputs",
            )
        long = np.flatnonzero(lengths > padded.shape[1])
        if long.size:
            i = long[0]
            raise _fail(
                where,
                f"record {i}: length {lengths[i]} exceeds the {padded.shape[1]} time steps "
                "of inputs",
            )
        return [padded[i, : lengths[i]] for i in range(len(padded))]
    if inputs.ndim == 2:  # flat ragged values [sum(lengths), F]
        if int(lengths.sum()) != len(inputs):
            raise _fail(
                where,
                f"mismatched lengths: they sum to {int(lengths.sum())} but ragged inputs "
                f"have {len(inputs)} rows",
            )
        cuts = np.cumsum(lengths)[:-1]
        return list(np.split(inputs, cuts))
    raise _fail(
        where,
        f"inputs must be [N, T, F], [N, T] or ragged [sum(lengths), F], received shape "
        f"{list(inputs.shape)}",
    )


def read_arrays(path: str, *, per_step: bool = False) -> Records:
    """``.npz`` (``inputs``, optional ``lengths`` and ``labels``) or ``.npy`` (inputs)."""
    try:
        if path.endswith(".npy"):
            data = {"inputs": np.load(path, allow_pickle=False)}
        else:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise _fail(path, f"cannot be read as NumPy arrays ({e})") from e
    return array_records(path, data, per_step=per_step)


def array_records(where: str, data: dict[str, Any], *, per_step: bool = False) -> Records:
    """Records of arrays ``inputs``, optional ``lengths`` and ``labels`` (module docstring);
    ``per_step``: ``labels`` has one label per time step, laid out as ``inputs`` is
    (``[N, T]`` padded, or ``[sum(lengths)]`` ragged)."""
    if "inputs" not in data:
        raise _fail(where, f"has no 'inputs' array (arrays: {sorted(data)})")
    inputs = np.asarray(data["inputs"])
    if not np.issubdtype(inputs.dtype, np.number):
        raise _fail(where, f"inputs must be numbers, received dtype {inputs.dtype}")
    lengths = data.get("lengths")
    seqs = ragged(where, inputs, lengths)
    labels = data.get("labels")
    if labels is None:
        return Records(seqs, None, list(range(len(seqs))), where)
    labels = np.asarray(labels)
    if per_step:
        flat = inputs.ndim == 2 and lengths is not None
        want = (int(np.sum(lengths)),) if flat else inputs.shape[:2]
        if labels.shape != tuple(want):
            raise _fail(
                where,
                f"mismatched lengths: per-step labels have shape {list(labels.shape)}, the "
                f"inputs need {list(want)}",
            )
        steps = ragged(where, labels[..., None], lengths)
        out = np.empty(len(seqs), object)
        out[:] = [x[: len(seq), 0] for x, seq in zip(steps, seqs, strict=True)]
        return Records(seqs, out, list(range(len(seqs))), where)
    if len(labels) != len(seqs):
        raise _fail(
            where, f"mismatched lengths: {len(labels)} labels for {len(seqs)} records of inputs"
        )
    return Records(seqs, labels, list(range(len(seqs))), where)


def _read_table(path: str):
    import pandas as pd

    try:
        if path.endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as e:  # noqa: BLE001 - pandas and pyarrow raise many types
        raise _fail(path, f"cannot be read as a table ({type(e).__name__}: {e})") from e


def read_table(
    path: str,
    *,
    id_column: str,
    time_column: str,
    label_column: str,
    feature_columns: Sequence[str] | None,
    need_labels: bool = True,
    per_step: bool = False,
) -> Records:
    """A long-format table: one row per (id, time) step, features and a per-id label (a
    label per row with ``per_step``)."""
    frame = _read_table(path)
    has_labels = need_labels and label_column in frame.columns  # else ignored
    required = [id_column, time_column] + ([label_column] if need_labels else [])
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise _fail(path, f"missing column(s) {missing} (columns: {list(frame.columns)})")
    skip = {id_column, time_column, label_column}
    features = (
        list(feature_columns) if feature_columns else [c for c in frame.columns if c not in skip]
    )
    absent = [c for c in features if c not in frame.columns]
    if absent or not features:
        raise _fail(path, f"feature column(s) {absent or '[]'} not in {list(frame.columns)}")
    for c in features:
        if not np.issubdtype(frame[c].dtype, np.number):
            row = int(np.flatnonzero(~frame[c].map(_is_number).to_numpy())[0])
            raise _fail(
                path, f"row {row + 2}: column {c!r} value {frame[c][row]!r} is not a number"
            )
    values = frame[features].to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise _fail(path, f"row {r + 2}: column {features[c]!r} value {values[r, c]} is not finite")
    # Row numbers as a spreadsheet shows them: the header is row 1.
    frame = frame.assign(_row=np.arange(len(frame)) + 2)
    dup = frame.duplicated([id_column, time_column])
    if dup.any():
        row = int(frame["_row"][dup].iloc[0])
        raise _fail(path, f"row {row}: repeats the (id, time) of an earlier row")
    frame = frame.sort_values([id_column, time_column], kind="stable")
    seqs, labels, ids = [], [], []
    for key, group in frame.groupby(id_column, sort=False):
        key = key.item() if isinstance(key, np.generic) else key
        seqs.append(group[features].to_numpy(np.float64))
        ids.append(key)
        if has_labels and per_step:
            labels.append(group[label_column].to_numpy())
        elif has_labels:
            values = group[label_column].tolist()
            other = [j for j, v in enumerate(values) if v != values[0]]
            if other:
                row = int(group["_row"].to_numpy()[other[0]])
                raise _fail(
                    path,
                    f"row {row}: id {key!r} has label {values[other[0]]!r} but "
                    f"{values[0]!r} on its earlier rows; a sequence has one label",
                )
            labels.append(values[0])
    if has_labels and per_step:
        out = np.empty(len(labels), object)
        out[:] = labels
        return Records(seqs, out, ids, path)
    return Records(seqs, np.asarray(labels) if has_labels else None, ids, path)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def read(
    path: str, table: dict[str, Any], *, need_labels: bool = True, per_step: bool = False
) -> Records:
    """Reads ``path`` by its extension (module docstring); ``table``: the column names."""
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext in ARRAY_FORMATS:
        records = read_arrays(path, per_step=per_step)
    elif ext in TABLE_FORMATS:
        records = read_table(path, need_labels=need_labels, per_step=per_step, **table)
    else:
        raise _fail(
            path, f"unknown format {ext!r}: expected one of {ARRAY_FORMATS + TABLE_FORMATS}"
        )
    if need_labels and records.labels is None:
        raise _fail(path, "has no labels ('labels' array or label column)")
    check_values(records)
    return records


def check_values(records: Records) -> None:
    """Every sequence ``[T, F]`` with the same ``F`` and finite values."""
    if not len(records):
        return
    features = records.sequences[0].shape[1]
    for i, seq in enumerate(records.sequences):
        name = (
            f"record {records.ids[i]!r}" if not isinstance(records.ids[i], int) else f"record {i}"
        )
        if seq.ndim != 2 or seq.shape[1] != features:
            raise _fail(
                records.where,
                f"{name}: wrong shape {list(seq.shape)}, expected [time, {features}]",
            )
        finite = np.isfinite(seq)
        if not finite.all():
            t, f = np.argwhere(~finite)[0]
            raise _fail(
                records.where, f"{name}: value {seq[t, f]} at time {t}, feature {f} is not finite"
            )
