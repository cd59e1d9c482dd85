"""Forecasts out of ``rnnlab predict``: a forecasting run on a series file, with quantiles.

The input is a series in the run's own format (:func:`rnnlab.data.forecast.read_series_file`:
a ``.csv`` with an optional header, ``.npy`` or ``.npz``, the run's ``data.columns``, gaps
filled by the run's ``data.fill_gaps``). Its values are standardised with the training
statistics of ``dataset_info.json``; the model reads the ``seq_len`` rows up to an origin
and forecasts the ``horizon`` rows after it, in the series' own units. Origins are counted
in data rows (1-based, the header not counted): origin ``t`` has read rows ``t - L + 1 ..
t`` and step ``h`` forecasts row ``t + h``. ``origins="last"`` forecasts once, from the end
of the file (the future); ``"all"`` from every origin with a full lookback, a backtest
over the file.

Quantiles at levels ``q`` (decision 100 in docs/decisions.md), by the forecaster's head:

- ``quantile``: the head's own levels (pinball-trained; Wen et al. 2017);
- ``gaussian``: the predictive distribution, ``mu + sigma * Phi^{-1}(q)`` (DeepAR, Salinas
  et al. 2020);
- ``point``: empirical residual quantiles of the run's validation windows: per step ahead
  ``h`` and series ``k``, ``y_hat + Q_q(y - y_hat)`` over those windows, ``Q_q`` NumPy's
  default (linear) quantile. The run's data must still be readable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_LEVELS = (0.1, 0.5, 0.9)
ORIGINS = ("last", "all")


def read_series(path: str, data: Any, info: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """``(values [T, F] in the series' units, column names)`` of ``path``, read and gap-filled
    as the run's data was."""
    from rnnlab.data.forecast import fill_gaps, read_series_file

    values, names = read_series_file(Path(path).expanduser(), data.get("columns"))
    features = int(info["input_features"])
    if values.shape[1] != features:
        raise ValueError(
            f"{path}: holds {values.shape[1]} series {names}, the model was trained on {features}"
        )
    how = data.get("fill_gaps") or ("interpolate" if data.get("name") == "co2" else "error")
    values = fill_gaps(values, how, f"series file {path!r}")
    lookback = int(info["seq_len"])
    if len(values) < lookback:
        raise ValueError(
            f"{path}: holds {len(values)} rows, fewer than the run's lookback of {lookback} rows"
        )
    return values, names


def levels_of(model, quantiles: Sequence[float] | None) -> tuple[float, ...]:
    """The quantile levels written: the quantile head's own, else ``quantiles`` (default
    0.1, 0.5, 0.9)."""
    if quantiles is not None:
        bad = [q for q in quantiles if not 0.0 < float(q) < 1.0]
        if bad or not quantiles:
            raise ValueError(f"--quantiles must be levels in (0, 1), received {list(quantiles)}")
    if model.head_type == "quantile":
        own = tuple(float(q) for q in model.quantiles)
        if quantiles is not None and tuple(float(q) for q in quantiles) != own:
            raise ValueError(
                f"the run's quantile head forecasts the levels {list(own)}; --quantiles must be "
                f"left out or equal them, received {list(quantiles)}"
            )
        return own
    return tuple(float(q) for q in (DEFAULT_LEVELS if quantiles is None else quantiles))


def _forward(model) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    import jax
    from flax import nnx

    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, inputs):
        point, aux = nnx.merge(graphdef, state)({"inputs": inputs}, train=False)
        return {"point": point, **{k: aux[k] for k in ("scale", "quantiles") if k in aux}}

    return lambda inputs: {k: np.asarray(v, np.float64) for k, v in run(state, inputs).items()}


def _bands(model, out: dict[str, np.ndarray], levels, residual_q) -> np.ndarray:
    """Quantiles ``[N, H, K, Q]`` in standardised units (module docstring)."""
    if model.head_type == "quantile":
        return out["quantiles"]
    if model.head_type == "gaussian":
        from scipy.special import ndtri

        z = ndtri(np.asarray(levels, np.float64))
        return out["point"][..., None] + out["scale"][..., None] * z
    return out["point"][..., None] + residual_q


def forecast_windows(model, windows: np.ndarray, batch_size: int, progress=None):
    """Model outputs of standardised ``windows`` ``[N, L, F]`` (``point`` ``[N, H, K]``, and
    ``scale`` or ``quantiles`` where the head has them), in batches of ``batch_size``."""
    forward = _forward(model)
    outs: list[dict[str, np.ndarray]] = []
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        pad = np.zeros((batch_size - len(chunk), *chunk.shape[1:]), np.float32)
        got = forward(np.concatenate([chunk, pad]) if len(pad) else chunk)
        outs.append({k: v[: len(chunk)] for k, v in got.items()})
        if progress is not None:
            progress(len(chunk))
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def validation_residual_quantiles(model, config, levels, batch_size: int) -> np.ndarray:
    """``Q_q(y - y_hat)`` ``[H, K, Q]`` over the run's validation windows (standardised)."""
    from rnnlab import data as data_lib

    residuals = []
    try:
        batches = data_lib.load(
            config.data, split="validation", batch_size=batch_size, seed=int(config.seed),
            repeat=False,
        )  # fmt: skip
        with contextlib.closing(batches):
            for batch in batches:
                inputs = np.asarray(batch["inputs"], np.float32)
                got = forecast_windows(model, inputs, batch_size)
                y = np.asarray(batch["targets"], np.float64).reshape(got["point"].shape)
                keep = np.asarray(batch["weights"]) > 0
                residuals.append((y - got["point"])[keep])
    except (OSError, ValueError) as e:
        raise ValueError(
            "a point forecaster's quantiles are the residual quantiles of its validation "
            f"windows, and the run's data cannot be read: {e}"
        ) from e
    residuals = np.concatenate(residuals)
    if not len(residuals):
        raise ValueError("the run's validation split holds no windows: no residual quantiles")
    return np.moveaxis(np.quantile(residuals, levels, axis=0), 0, -1)


def predict_series(model, minfo, values: np.ndarray, *, origins: str, quantiles, batch_size,
                   progress) -> dict[str, np.ndarray]:  # fmt: skip
    """Forecasts of ``values`` (module docstring): ``origins [N]``, ``forecasts [N, H, K]``,
    ``quantiles [N, H, K, Q]`` and ``levels [Q]``, in the series' units."""
    if origins not in ORIGINS:
        raise ValueError(f"--origins must be one of {list(ORIGINS)}, received {origins!r}")
    info, config = minfo.dataset, minfo.config
    lookback, k = int(info["seq_len"]), int(info.get("output_features") or values.shape[1])
    mean, std = np.asarray(info["mean"], np.float64), np.asarray(info["std"], np.float64)
    levels = levels_of(model, quantiles)
    z = ((values - mean) / std).astype(np.float32)
    ends = np.arange(lookback, len(values) + 1) if origins == "all" else np.array([len(values)])
    windows = np.stack([z[t - lookback : t] for t in ends])
    residual_q = (
        validation_residual_quantiles(model, config, levels, batch_size)
        if model.head_type == "point"
        else None
    )
    out = forecast_windows(model, windows, batch_size, progress)
    bands = _bands(model, out, levels, residual_q)
    m, s = mean[:k], std[:k]
    return {
        "origins": ends,
        "forecasts": m + s * out["point"],
        "quantiles": m[:, None] + s[:, None] * bands,
        "levels": np.asarray(levels),
    }


def outputs(result: dict[str, np.ndarray], names: list[str]):
    """``(columns, arrays)`` of the output file: a row per origin and step ahead (``origin``,
    ``step``, each target series by name and ``<name>_q<level>`` per level) for ``.csv``;
    the arrays of :func:`predict_series` and ``series`` for ``.npz``."""
    point, bands = result["forecasts"], result["quantiles"]
    n, horizon, k = point.shape
    names = [str(c) for c in names[:k]]
    columns = {
        "origin": np.repeat(result["origins"], horizon),
        "step": np.tile(np.arange(1, horizon + 1), n),
    }
    for j, name in enumerate(names):
        columns[name] = point[..., j].reshape(-1)
        for i, q in enumerate(result["levels"]):
            columns[f"{name}_q{q:g}"] = bands[..., j, i].reshape(-1)
    return columns, {**result, "series": np.asarray(names)}
