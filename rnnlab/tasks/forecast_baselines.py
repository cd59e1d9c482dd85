"""Classical forecasting baselines on the same windows as the recurrent forecaster.

For a windowed series (``rnnlab.data`` forecast datasets) this fits, on the training part
only, a seasonal ARIMA (``statsmodels`` SARIMAX) and an additive-error exponential
smoothing model (``statsmodels`` ETSModel, Hyndman et al. 2008), then runs each over the
whole series with the fitted parameters and forecasts ``horizon`` steps from the origin of
every evaluation window: the rolling-origin evaluation a recurrent forecaster gets, with no
refitting. The seasonal-naive forecast comes with them. Errors are in original units;
MASE divides the MAE by the training series' in-sample seasonal-naive MAE
(``info["mase_scale"]``, Hyndman & Koehler 2006).

This module belongs to the harness (it reads data through :mod:`rnnlab.data` and needs
``statsmodels``, in the ``train`` extra); the core never imports it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rnnlab.models.forecaster import seasonal_naive


def windows(data_cfg: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All windows of ``split`` in time order with stride 1: ``(inputs [N, L, F], targets
    [N, H, F])``, standardised as the model sees them."""
    import rnnlab.data

    cfg = dict(_as_dict(data_cfg), shuffle=False, window_stride=1)
    xs, ys = [], []
    for batch in rnnlab.data.load(cfg, split=split, batch_size=64, seed=0, repeat=False):
        keep = np.asarray(batch["weights"]) > 0
        xs.append(np.asarray(batch["inputs"])[keep])
        ys.append(np.asarray(batch["targets"])[keep])
    return np.concatenate(xs), np.concatenate(ys)


def _as_dict(cfg: Any) -> dict[str, Any]:
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def series_from_windows(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The series ``[T, F]`` that consecutive stride-1 windows of consecutive splits were cut
    from. Each split's first window starts where the previous split's data ends (its
    lookback may reach back into it); the overlaps are checked to agree."""
    series = None
    for inputs, targets in parts:
        span = np.concatenate([inputs[0], targets[:, 0], targets[-1, 1:]])
        if series is None:
            series = span
            continue
        lookback = inputs.shape[1]
        overlap = series[len(series) - lookback :]
        if not np.allclose(span[:lookback], overlap):
            raise ValueError(
                "windows of consecutive splits must continue one series (window_stride 1, "
                "no shuffling); the lookback of a split's first window does not match the end "
                "of the previous split"
            )
        series = np.concatenate([series, span[lookback:]])
    return series


def fourier_terms(num_steps: int, period: int, harmonics: int) -> np.ndarray | None:
    """``[sin(2 pi k t / m), cos(2 pi k t / m)]`` for ``k = 1..harmonics``: ``[T, 2K]``."""
    if harmonics <= 0:
        return None
    angle = 2 * np.pi * np.arange(num_steps)[:, None] * np.arange(1, harmonics + 1) / period
    return np.concatenate([np.sin(angle), np.cos(angle)], axis=1)


def arima_forecasts(
    train: np.ndarray,
    full: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    order,
    seasonal_order=(0, 0, 0, 0),
    *,
    period: int = 1,
    harmonics: int = 0,
) -> np.ndarray:
    """(S)ARIMA fitted on ``train`` (1-D), then ``horizon``-step forecasts ``[N, H]`` of
    ``full`` from each origin (index of the first forecast step), conditioning on all
    observations before it; computed from the Kalman filter's predicted states,
    ``y_{s+h} = Z T^h x_{s|s-1} + d_{s+h}``.

    ``harmonics > 0`` adds ``harmonics`` Fourier pairs of ``period`` as regressors
    (dynamic harmonic regression, the usual ARIMA for long seasons such as 52 weeks, where
    a seasonal ARIMA's state grows with the period).
    """
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    exog = fourier_terms(len(full), period, harmonics)
    spec = dict(order=tuple(order), seasonal_order=tuple(seasonal_order))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_exog = None if exog is None else exog[: len(train)]
        fit = SARIMAX(train, exog=train_exog, **spec).fit(disp=False)
        res = SARIMAX(full, exog=exog, **spec).filter(fit.params)
    fr = res.filter_results
    Z, T = fr.design[..., 0], fr.transition[..., 0]
    d, c = fr.obs_intercept, fr.state_intercept[:, 0]  # d: [1, 1] or [1, T] with regressors
    x = fr.predicted_state[:, origins]  # [k, N]
    out = np.empty((len(origins), horizon))
    for h in range(horizon):
        intercept = d[0, 0] if d.shape[1] == 1 else d[0, np.minimum(origins + h, d.shape[1] - 1)]
        out[:, h] = (Z @ x)[0] + intercept
        x = T @ x + c[:, None]
    return out


def ets_forecasts(
    train: np.ndarray,
    full: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    *,
    trend: str | None,
    seasonal: str | None,
    period: int,
    damped: bool = False,
) -> np.ndarray:
    """Additive-error ETS fitted on ``train``, run over ``full`` with those parameters, and
    ``horizon``-step forecasts ``[N, H]`` from each origin:
    ``y_{t+h|t} = l_t + (phi + ... + phi^h) b_t + s_{t+h-m(k+1)}``, ``k = floor((h-1)/m)``
    (Hyndman et al. 2008), for trend and seasonality ``"add"`` or ``None``."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    for name, value in (("trend", trend), ("seasonal", seasonal)):
        if value not in (None, "add"):
            raise ValueError(f"{name} must be 'add' or None for these forecasts, got {value!r}")
    kw = dict(
        error="add",
        trend=trend,
        damped_trend=bool(damped and trend),
        seasonal=seasonal,
        seasonal_periods=period if seasonal else None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ETSModel(train, initialization_method="heuristic", **kw).fit(disp=False)
        res = ETSModel(full, initialization_method="heuristic", **kw).smooth(fit.params)
    states = np.asarray(res.states)  # row t: the states after observing y_t
    names = list(fit.param_names)
    phi = float(fit.params[names.index("damping_trend")]) if kw["damped_trend"] else 1.0
    t = origins - 1
    level = states[t, 0]
    out = np.repeat(level[:, None], horizon, axis=1)
    if trend:
        damp = np.cumsum(phi ** np.arange(1, horizon + 1))
        out += damp[None, :] * states[t, 1][:, None]
    if seasonal:
        h = np.arange(1, horizon + 1)
        lag = period * ((h - 1) // period + 1)
        out += states[t[:, None] + h[None, :] - lag[None, :], -1]
    return out


def errors(y: np.ndarray, pred: np.ndarray, scale: float) -> dict[str, float]:
    """MAE, RMSE and MASE (``MAE / scale``) over all windows and steps."""
    err = np.asarray(pred, np.float64) - np.asarray(y, np.float64)
    mae = float(np.mean(np.abs(err)))
    return {"mae": mae, "rmse": float(np.sqrt(np.mean(err**2))), "mase": mae / float(scale)}


def forecast_baselines(
    data_cfg: Any,
    info: Mapping[str, Any],
    *,
    split: str = "test",
    order: Sequence[int] = (1, 1, 1),
    seasonal_order: Sequence[int] = (0, 0, 0, 0),
    harmonics: int = 0,
    ets_trend: str | None = "add",
    ets_seasonal: str | None = None,
    period: int | None = None,
) -> dict[str, Any]:
    """Seasonal-naive, SARIMA and ETS errors (original units) on ``split``'s windows of the
    first series; returns ``{"seasonal_naive": {...}, "arima": {...}, "ets": {...},
    "windows": N, "forecasts": {...}}`` (forecasts ``[N, H]`` for plots)."""
    from rnnlab.data.config import SPLITS

    m = int(period or info.get("seasonal_period") or 1)
    mean, std = float(info["mean"][0]), float(info["std"][0])
    scale = float(info["mase_scale"][0])
    parts = {s: windows(data_cfg, s) for s in SPLITS[: SPLITS.index(split) + 1]}
    z = series_from_windows(list(parts.values()))[:, 0].astype(np.float64)
    y_series = mean + std * z
    n_train = int(info["num_steps"]["train"])
    start = sum(int(info["num_steps"][s]) for s in SPLITS[: SPLITS.index(split)])
    inputs, targets = parts[split]
    horizon, lookback = targets.shape[1], inputs.shape[1]
    origins = np.arange(len(targets)) + max(start, lookback)
    truth = mean + std * targets[..., 0].astype(np.float64)
    naive = mean + std * np.asarray(seasonal_naive(inputs, horizon, m))[..., 0]
    arima = arima_forecasts(
        y_series[:n_train],
        y_series,
        origins,
        horizon,
        order,
        seasonal_order,
        period=m,
        harmonics=harmonics,
    )
    ets = ets_forecasts(
        y_series[:n_train],
        y_series,
        origins,
        horizon,
        trend=ets_trend or None,
        seasonal=ets_seasonal or None,
        period=m,
    )
    preds = {"seasonal_naive": naive, "arima": arima, "ets": ets}
    out: dict[str, Any] = {name: errors(truth, p, scale) for name, p in preds.items()}
    out["arima"]["model"] = f"ARIMA{tuple(order)}{tuple(seasonal_order)}" + (
        f" + {harmonics} Fourier pairs of period {m}" if harmonics else ""
    )
    out["ets"]["model"] = f"ETS(A,{'A' if ets_trend else 'N'},{'A' if ets_seasonal else 'N'})"
    out["windows"] = len(truth)
    out["forecasts"] = {"truth": truth, **preds}
    return out
