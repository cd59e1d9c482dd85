"""Forecasting: co2, sunspots, macrodata (statsmodels), csv_series (the user's file),
mackey_glass.

A window has a lookback of ``seq_len`` steps (``inputs [L, F]``) and the next ``horizon``
steps of the first ``K = target_features`` series as target (``targets [H, K]``); the other
``F - K`` series are covariates, seen over the lookback only (past covariates: what is
known at the forecast origin). ``K`` defaults to every series, except for macrodata
(quarterly US, 1959Q2-2009Q3), whose target is the unemployment rate and whose covariates
are inflation, the Treasury bill rate and real GDP growth. Real series are split by time with
``split_fractions`` (default 0.7 / 0.1 / 0.2): a window belongs to the split that holds all
of its target steps (its lookback may reach back into the previous split, as a forecaster
running live would see). Values are standardised with the mean and standard deviation of
the training part only; ``info()`` gives them (``mean``, ``std``) to undo it, the seasonal
period for MASE and ``mase_scale``, the in-sample mean absolute seasonal difference of the
training part (Hyndman & Koehler 2006), per feature, in original units.

Options: ``seq_len`` (64), ``horizon`` (16), ``split_fractions``, ``window_stride`` (1),
``fill_gaps`` ("interpolate" or "error"; co2 defaults to interpolating its 59 weekly gaps,
other series to an error naming the missing values), and for csv_series ``path`` (.csv,
.npy or .npz), ``columns`` (names or indices; default all numeric columns) and
``seasonal_period`` (default 1).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from rnnlab.data import builders, pipeline, synthetic
from rnnlab.data.config import (
    SPLITS,
    cache_key,
    check_split,
    tfds_dir,
)
from rnnlab.data.options import POSITIVE, SHARES, Common, Group, Pipeline, one_of, opt
from rnnlab.data.options import resolve as resolve_options
from rnnlab.data.registry import Dataset, register

SEASONAL_PERIOD = {"co2": 52, "sunspots": 11, "macrodata": 1, "mackey_glass": 1}
# Target series (the leading columns) of a series whose other columns are covariates.
TARGET_FEATURES = {"macrodata": 1}


# The options that the memoised reads below depend on.
_FIELDS = (
    "name",
    "path",
    "columns",
    "fill_gaps",
    "split_fractions",
    "seasonal_period",
    "target_features",
)


def read_series_file(path: Path, columns=None) -> tuple[np.ndarray, list[str]]:
    """A numeric series ``[time, features]`` from .csv (optional header), .npy or .npz."""
    if not path.is_file():
        raise ValueError(f"path must be a .csv, .npy or .npz file, received {str(path)!r}")
    if path.suffix in (".npy", ".npz"):
        data = np.load(path)
        if path.suffix == ".npz":
            data = data[data.files[0]]
        values = np.asarray(data, np.float64)
        values = values[:, None] if values.ndim == 1 else values
        names = [str(i) for i in range(values.shape[1])]
    else:
        values, names = _read_csv(path)
    bad = np.argwhere(np.isinf(values))
    if len(bad):  # NaN is a missing value (fill_gaps); an infinity is not a measurement
        t, j = bad[0]
        raise ValueError(
            f"series file {str(path)!r} row {t + 1}, column {names[j]!r}: {values[t, j]} is "
            "not finite; expected a number, or an empty cell for a missing value"
        )
    if columns is not None:
        wanted = [columns] if isinstance(columns, str | int) else list(columns)
        index = [names.index(str(c)) if str(c) in names else int(c) for c in wanted]
        values, names = values[:, index], [names[i] for i in index]
    if values.size == 0 or values.ndim != 2:
        raise ValueError(f"series file {str(path)!r} has no numeric values (shape {values.shape})")
    return values, names


def _read_csv(path: Path) -> tuple[np.ndarray, list[str]]:
    """``(values [time, features], names)`` of a .csv file (optional header).

    A column none of whose cells is a number (dates, labels) is left out; an empty cell is
    a missing value (NaN). Anything else that is not a number (``N/A``, ``inf``), and a
    row shorter or longer than the first, is a ValueError naming the file, the line and
    the column: dropping the column or the row would forecast other series silently.
    """
    with path.open(newline="") as f:
        reader = csv.reader(f)
        rows = [(reader.line_num, r) for r in reader if r]
    if not rows:
        raise ValueError(f"csv file {str(path)!r} is empty: expected a header or values")

    def number(cell):
        try:
            return float(cell) if cell.strip() else math.nan
        except ValueError:
            return None

    first = rows[0][1]
    header = first if any(number(c) is None for c in first) else None
    body = rows[1:] if header else rows
    names = header or [str(i) for i in range(len(first))]
    for line, r in body:
        if len(r) != len(names):
            raise ValueError(
                f"csv file {str(path)!r} line {line} has {len(r)} cells, expected "
                f"{len(names)} like its first row"
            )
    numeric = [j for j in range(len(names)) if any(number(r[j]) is not None for _, r in body)]
    for j in numeric:
        for line, r in body:
            value = number(r[j])
            if value is None or math.isinf(value):
                raise ValueError(
                    f"csv file {str(path)!r} line {line}, column {names[j]!r}: {r[j]!r} is not "
                    "a finite number; expected a number, or an empty cell for a missing value"
                )
    values = np.array([[number(r[j]) for j in numeric] for _, r in body], np.float64)
    return values.reshape(len(body), len(numeric)), [names[j] for j in numeric]


def _series_builder(cfg: Any):
    name = cfg["name"]
    if name != "csv_series":
        return builders.make(builders.Series, tfds_dir(cfg), name)
    path = cfg.get("path")
    if not path:
        raise ValueError("csv_series needs path: expected a .csv/.npy/.npz file, received None")
    path = Path(path).expanduser()
    columns = cfg.get("columns")
    st = path.stat() if path.exists() else None
    digest = hashlib.sha1(f"{path.resolve()}:{st and st.st_mtime_ns}:{columns}".encode())
    # Read once before the builder prepares anything: a bad cell is named before any file
    # is written.
    read_series_file(path, columns)
    config = builders.SeriesConfig(
        name=f"file-{digest.hexdigest()[:12]}", reader=lambda: read_series_file(path, columns)
    )
    return builders.make(builders.Series, tfds_dir(cfg), config, sources=[path])


def fill_gaps(values: np.ndarray, how: str, what: str) -> np.ndarray:
    """Linear interpolation over NaNs (edges take the nearest value), or a ValueError."""
    missing = np.isnan(values)
    if not missing.any():
        return values
    if how == "error":
        t, f = np.argwhere(missing)[0]
        raise ValueError(
            f"{what} has {int(missing.sum())} missing (NaN) values (first at step {t}, feature "
            f"{f}); expected none, or set fill_gaps='interpolate'"
        )
    out = values.copy()
    steps = np.arange(len(values))
    for j in range(values.shape[1]):
        ok = ~missing[:, j]
        if not ok.any():
            raise ValueError(f"{what} feature {j} has no values: expected at least one number")
        out[:, j] = np.interp(steps, steps[ok], values[ok, j])
    return out


@functools.lru_cache(maxsize=16)
def _series(key: str) -> dict[str, Any]:
    cfg = json.loads(key)
    name = cfg["name"]
    builder = _series_builder(cfg)
    values = np.asarray(builder.as_data_source(split="full")[0]["values"], np.float64)
    default_fill = "interpolate" if name == "co2" else "error"
    how = cfg.get("fill_gaps") or default_fill
    values = fill_gaps(values, how, f"series {name!r}")
    cuts = builders.split_points(len(values), tuple(cfg.get("split_fractions")))
    train = values[: cuts[1]]
    std = train.std(axis=0)
    m = cfg.get("seasonal_period") or SEASONAL_PERIOD.get(name, 1)
    scale = np.abs(train[m:] - train[:-m]).mean(axis=0) if len(train) > m else np.ones(1)
    features = values.shape[1]
    k = cfg.get("target_features")
    k = TARGET_FEATURES.get(name, features) if k is None else k
    if k > features:
        raise ValueError(
            f"target_features must be at most the {features} series of {name!r}, got {k}"
        )
    return {
        "target_features": k,
        "values": values,
        "cuts": cuts,
        "mean": train.mean(axis=0),
        "std": np.where(std > 0, std, 1.0),
        "seasonal_period": m,
        "mase_scale": scale,
        "columns": list(builder.info.metadata.get("columns", [])),
    }


def series_values(cfg: Any) -> tuple[np.ndarray, list[int]]:
    """The whole series of a real forecast dataset ``cfg`` in original units, ``[T, F]``
    (gaps filled as its windows have them), and the split cuts ``[0, a, b, T]``: what a
    multivariate baseline is fitted on (``values[:a]``, the training part)."""
    name = cfg["name"]
    cfg = resolve_options(cfg, CsvSeries if name == "csv_series" else Series, name)
    series = _series(cache_key(cfg, _FIELDS))
    return series["values"].copy(), list(series["cuts"])


def window_starts(cuts, split: str, lookback: int, horizon: int, stride: int) -> np.ndarray:
    """First target step of every window whose targets lie inside ``split``."""
    lo, hi = cuts[SPLITS.index(split)], cuts[SPLITS.index(split) + 1]
    return np.arange(max(lo, lookback), hi - horizon + 1, stride)


def _info(cfg: Any) -> dict[str, Any]:
    series = _series(cache_key(cfg, _FIELDS))
    L, H = cfg.get("seq_len"), cfg.get("horizon")
    stride = cfg.get("window_stride")
    counts = {s: len(window_starts(series["cuts"], s, L, H, stride)) for s in SPLITS}
    return {
        "task": "forecast",
        "input_features": int(series["values"].shape[1]),
        "output_features": int(series["target_features"]),
        "seq_len": L,
        "horizon": H,
        "mean": series["mean"].tolist(),
        "std": series["std"].tolist(),
        "seasonal_period": series["seasonal_period"],
        "mase_scale": np.atleast_1d(series["mase_scale"]).tolist(),
        "num_steps": {s: series["cuts"][i + 1] - series["cuts"][i] for i, s in enumerate(SPLITS)},
        "num_examples": counts,
        "columns": series["columns"],
    }


def _load(cfg, info, *, split, **shard):
    series = _series(cache_key(cfg, _FIELDS))
    L, H = info["seq_len"], info["horizon"]
    starts = window_starts(series["cuts"], check_split(split), L, H, cfg.get("window_stride"))
    if len(starts) == 0:
        raise ValueError(
            f"{cfg['name']} split {split!r} has {info['num_steps'][split]} steps: too short for "
            f"any window of seq_len {L} + horizon {H}; expected a shorter window or more data"
        )
    z = ((series["values"] - series["mean"]) / series["std"]).astype(np.float32)
    k = series["target_features"]

    def collate(indices):
        real = np.array([int(i) >= 0 for i in indices])
        t = starts[np.maximum(np.asarray(indices, np.int64), 0)]
        inputs = np.stack([z[s - L : s] for s in t])
        targets = np.stack([z[s : s + H, :k] for s in t])
        inputs[~real], targets[~real] = 0.0, 0.0
        return {"inputs": inputs, "targets": targets, "weights": real.astype(np.float32)}

    order, num_batches = pipeline.example_order(
        len(starts),
        shuffle=cfg.shuffled(split),
        what=f"{cfg['name']} split {split!r}",
        **shard,
    )
    ds = order.batch(shard["batch_size"], drop_remainder=True, batch_fn=collate)
    return ds.to_iter_dataset(pipeline.read_options(cfg)), num_batches


# ---------------------------------------------------------------------------- Mackey-Glass
@functools.lru_cache(maxsize=1)
def _mackey_glass_stats() -> tuple[float, float, float]:
    """Mean, std and mean |x_t - x_{t-1}| of the attractor, from a fixed reference draw."""
    x = synthetic.mackey_glass_examples(range(16), seed=12345, split="train", length=1000)
    return float(x.mean()), float(x.std()), float(np.abs(np.diff(x, axis=1)).mean())


@functools.lru_cache(maxsize=4)
def _mg_fixed_set(seed: int, split: str, length: int, count: int) -> np.ndarray:
    return synthetic.mackey_glass_examples(range(count), seed=seed, split=split, length=length)


def _mg_info(cfg: Any) -> dict[str, Any]:
    mean, std, scale = _mackey_glass_stats()
    return {
        "task": "forecast",
        "input_features": 1,
        "output_features": 1,
        "seq_len": cfg.get("seq_len"),
        "horizon": cfg.get("horizon"),
        "mean": [mean],
        "std": [std],
        "seasonal_period": 1,
        "mase_scale": [scale],
        "eval_examples": cfg.get("eval_examples"),
    }


def _mg_load(cfg, info, *, split, **shard):
    ds, num_batches, stream_seed = synthetic.index_batches(cfg, split=split, **shard)
    L, H = info["seq_len"], info["horizon"]
    mean, std = info["mean"][0], info["std"][0]

    fixed = (
        None if shard["repeat"] else _mg_fixed_set(stream_seed, split, L + H, info["eval_examples"])
    )

    def collate(indices):
        if fixed is not None:  # the evaluation set, integrated once in one vectorised call
            x = fixed[np.maximum(np.asarray(indices, np.int64), 0)]
        else:
            x = synthetic.mackey_glass_examples(
                indices, seed=stream_seed, split=split, length=L + H
            )
        z = ((x - mean) / std).astype(np.float32)[..., None]
        return {
            "inputs": z[:, :L],
            "targets": z[:, L:],
            "weights": np.array([int(i) >= 0 for i in indices], np.float32),
        }

    ds = ds.batch(shard["batch_size"], drop_remainder=True, batch_fn=collate)
    return ds.to_iter_dataset(pipeline.read_options(cfg)), num_batches


@dataclasses.dataclass(frozen=True)
class Windows(Group):
    seq_len: int = opt(64, "lookback steps L of a window", POSITIVE)
    horizon: int = opt(16, "steps H to forecast", POSITIVE)


@dataclasses.dataclass(frozen=True)
class Series(Common, Pipeline, Windows):
    window_stride: int = opt(1, "steps between the starts of two training windows", POSITIVE)
    fill_gaps: Any = opt(
        None,
        '"interpolate" or "error" on NaN (None: the series\' own)',
        one_of("interpolate", "error"),
    )
    split_fractions: tuple = opt(
        (0.7, 0.1, 0.2), "train, validation, test shares, in time order", SHARES
    )
    seasonal_period: Any = opt(
        None, "season length m of MASE (None: the series' own, else 1)", POSITIVE
    )
    target_features: Any = opt(
        None,
        "leading series forecast, the rest past covariates (None: the series' own)",
        POSITIVE,
    )


@dataclasses.dataclass(frozen=True)
class CsvSeries(Series):
    path: Any = opt(None, "the CSV file (required)")
    columns: Any = opt(None, "columns read (None: every numeric column)")


@dataclasses.dataclass(frozen=True)
class MackeyGlass(synthetic.Generated, Windows):
    pass


for _name, _options in (
    ("co2", Series),
    ("sunspots", Series),
    ("macrodata", Series),
    ("csv_series", CsvSeries),
):
    register(Dataset(_name, "forecast", _info, _load, f"{_name} series windows", _options))
register(
    Dataset(
        "mackey_glass",
        "forecast",
        _mg_info,
        _mg_load,
        "Mackey-Glass tau=17",
        MackeyGlass,
    )
)
