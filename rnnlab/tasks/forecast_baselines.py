"""Standard forecasting baselines on the same windows as the recurrent forecaster.

For a windowed series (``rnnlab.data`` forecast datasets) this fits, on the training part
only, the automatic models of Nixtla's ``statsforecast`` (the Python port of R's
``forecast`` package, Hyndman & Khandakar 2008):

- ``AutoARIMA``: stepwise order search by AICc, optionally on Fourier regressors of the
  season (dynamic harmonic regression, the usual ARIMA for long seasons such as 52 weeks);
- ``AutoETS``: the error/trend/season form chosen by AICc (Hyndman et al. 2008). Like R's
  ``ets``, it drops seasonality for periods above 24, so for long seasons the ETS
  baseline is ``MSTL`` + ``AutoETS``: STL removes the season, AutoETS forecasts the rest
  and the last season is added back (R's ``stlf``, Hyndman & Athanasopoulos, FPP3 12.1);
- ``AutoTheta``: the theta method's variants chosen by in-sample MSE, on a classically
  deseasonalised series (Assimakopoulos & Nikolopoulos 2000; Fiorucci et al. 2016);
- ``var`` (a series with covariates): statsmodels' vector autoregression of the target and
  its covariates together, with a constant, the lag order chosen by AIC up to
  ``var_maxlags`` (at most the lookback) on the training part, fitted by least squares
  (Sims 1980; Lutkepohl 2005). It sees what the network sees, the past of every series, and
  forecasts the covariates along with the target. The statsforecast models above read the
  target alone.

Each fitted model is then run over the test windows exactly as the recurrent model is: a
rolling origin with the fitted parameters fixed, no refit. ``model.forward(y[:s], h)``
applies the fitted model to the history before origin ``s`` and forecasts ``h`` steps
(for MSTL the STL decomposition, which has no fitted parameters, is recomputed on that
history; the AutoETS inside keeps its parameters); the VAR forecasts from the last ``p``
steps of each window's own lookback. The seasonal-naive forecast comes with
them. Errors are in original units; MASE divides the MAE by the training series' in-sample
seasonal-naive MAE (``info["mase_scale"]``, Hyndman & Koehler 2006).

This module belongs to the harness (it reads data through :mod:`rnnlab.data` and needs
``statsforecast``, in the ``train`` extra); the core never imports it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rnnlab.models.forecaster import seasonal_naive

# The baselines a config may ask for (``baselines.models``), in report order; ``ar`` is a
# fixed-order AR(p) (``ar_order``), the textbook model of a series such as sunspots (Box &
# Jenkins), kept beside the automatic searches when it is stronger than they are.
MODELS = ("arima", "ets", "theta", "ar", "var")
ETS_MAX_PERIOD = 24  # statsforecast (like R's ets) ignores seasons longer than this


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
        inputs = inputs[..., : targets.shape[-1]]  # the target series (covariates follow)
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


def make_model(name: str, period: int, harmonics: int = 0, ar_order: int = 9):
    """The statsforecast model behind baseline ``name`` (``arima``, ``ets``, ``theta``,
    ``ar``) for season ``period``, and its description for reports.

    ``arima`` with ``harmonics > 0`` searches a non-seasonal ARIMA on ``harmonics`` Fourier
    pairs of ``period`` (regression with ARIMA errors); ``ets`` for ``period > 24`` is
    MSTL + AutoETS (see the module docstring)."""
    from statsforecast.models import ARIMA, MSTL, AutoARIMA, AutoETS, AutoTheta

    if name == "arima":
        if harmonics > 0:
            desc = f"statsforecast AutoARIMA on {harmonics} Fourier pairs of period {period}"
            return AutoARIMA(season_length=1), desc
        return AutoARIMA(season_length=period), f"statsforecast AutoARIMA (period {period})"
    if name == "ets":
        if period > ETS_MAX_PERIOD:
            desc = f"statsforecast MSTL (period {period}) + AutoETS on the adjusted series"
            return MSTL(season_length=period, trend_forecaster=AutoETS(model="ZZN")), desc
        return AutoETS(season_length=period), f"statsforecast AutoETS (period {period})"
    if name == "theta":
        return AutoTheta(season_length=period), f"statsforecast AutoTheta (period {period})"
    if name == "ar":
        desc = f"statsforecast ARIMA({ar_order},0,0) with mean, a fixed order"
        return ARIMA(order=(ar_order, 0, 0), include_mean=True), desc
    raise ValueError(f"unknown forecasting baseline {name!r}; known: {MODELS}")


def chosen_form(model) -> str:
    """What the automatic search picked, e.g. ``ETS(A,Ad,N)``, ``ARIMA(2,1,1)`` or ``theta
    DOTM`` (empty when the model was not fitted)."""
    inner = getattr(model, "trend_forecaster", model)
    fitted = getattr(inner, "model_", None)
    if not isinstance(fitted, Mapping):
        return ""
    if "arma" in fitted:
        from statsforecast.arima import arima_string

        return arima_string(fitted).strip()
    if "modeltype" in fitted:  # theta: STM, OTM, DSTM or DOTM (Fiorucci et al. 2016)
        return f"theta {fitted['modeltype']}"
    return str(fitted.get("method", ""))  # ETS: "ETS(A,Ad,N)"


def rolling_forecasts(
    model,
    train: np.ndarray,
    full: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    exog: np.ndarray | None = None,
) -> np.ndarray:
    """Fits ``model`` (a statsforecast model) on ``train`` (1-D), then forecasts ``horizon``
    steps from each origin ``s`` (index of the first forecast step) with the fitted
    parameters fixed: ``model.forward(full[:s], horizon)``. ``exog [T + horizon, K]`` are
    known regressors (Fourier terms). Returns ``[N, H]``."""
    n = len(train)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        model.fit(train, X=None if exog is None else exog[:n])
        out = []
        for s in np.asarray(origins):
            kw = {} if exog is None else {"X": exog[:s], "X_future": exog[s : s + horizon]}
            out.append(model.forward(full[:s], horizon, **kw)["mean"])
    return np.stack(out).astype(np.float64)


def fit_var(train: np.ndarray, maxlags: int, ic: str = "aic"):
    """statsmodels' ``VAR`` with a constant fitted on ``train [T, F]`` (original units), its
    lag order chosen by ``ic`` among ``0..maxlags`` (on a common sample); the results."""
    from statsmodels.tsa.api import VAR

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return VAR(np.asarray(train, np.float64)).fit(maxlags=maxlags, ic=ic, trend="c")


def var_forecasts(result, histories: np.ndarray, horizon: int) -> np.ndarray:
    """``[N, H, F]``: the fitted VAR ``result`` forecasting ``horizon`` steps from each
    history ``[N, L, F]`` (its last ``p`` steps), the parameters fixed."""
    p = result.k_ar
    return np.stack(
        [result.forecast(np.asarray(h, np.float64)[len(h) - p :], horizon) for h in histories]
    )


def _var_baseline(data_cfg, info, inputs, origins, n_train: int, horizon: int, maxlags: int):
    """The VAR's target forecasts ``[N, H]`` on a split's windows, and its report entry."""
    from rnnlab.data.forecast import series_values

    values, _ = series_values(data_cfg)
    if values.shape[1] < 2:
        raise ValueError(
            f"baseline 'var' needs a series with covariates, got {values.shape[1]} series"
        )
    lookback = inputs.shape[1]
    histories = np.stack([values[o - lookback : o] for o in origins])
    seen = np.asarray(info["mean"]) + np.asarray(info["std"]) * inputs
    if not np.allclose(histories, seen, atol=1e-4 * float(np.max(info["std"]))):
        raise RuntimeError("the VAR's histories differ from the model's lookback windows")
    result = fit_var(values[:n_train], maxlags)
    desc = (
        f"statsmodels VAR({result.k_ar}) with a constant on {values.shape[1]} series, "
        f"lag order by AIC up to {maxlags} on the training part"
    )
    return var_forecasts(result, histories, horizon)[..., 0], {"model": desc}


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
    models: Sequence[str] = MODELS,
    harmonics: int = 0,
    period: int | None = None,
    ar_order: int = 9,
    var_maxlags: int = 8,
) -> dict[str, Any]:
    """Seasonal-naive and statsforecast baselines' errors (original units) on ``split``'s
    windows of the first series; returns ``{"seasonal_naive": {...}, "arima": {...}, ...,
    "strongest": name, "windows": N, "forecasts": {...}}`` (forecasts ``[N, H]`` for plots);
    each baseline's entry holds ``mae``, ``rmse``, ``mase`` and ``model``, its description.
    ``var`` (always fitted last) needs a series with covariates."""
    from rnnlab.data.config import SPLITS

    if "var" in models:
        models = [m for m in models if m != "var"] + ["var"]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"baselines.models: unknown {unknown}; known: {MODELS}")
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
    preds = {"seasonal_naive": mean + std * np.asarray(seasonal_naive(inputs, horizon, m))[..., 0]}
    out: dict[str, Any] = {"seasonal_naive": {"model": f"seasonal naive (period {m})"}}
    for name in models:
        if name == "var":
            preds[name], out[name] = _var_baseline(
                data_cfg, info, inputs, origins, n_train, horizon, min(var_maxlags, lookback)
            )
            continue
        model, desc = make_model(name, m, harmonics if name == "arima" else 0, ar_order)
        exog = fourier_terms(len(y_series) + horizon, m, harmonics) if name == "arima" else None
        preds[name] = rolling_forecasts(model, y_series[:n_train], y_series, origins, horizon, exog)
        form = chosen_form(model)
        out[name] = {"model": desc + (f", chose {form}" if form else "")}
    for name, p in preds.items():
        out[name].update(errors(truth, p, scale))
    out["strongest"] = min(preds, key=lambda k: out[k]["mae"])
    out["windows"] = len(truth)
    out["forecasts"] = {"truth": truth, **preds}
    return out
