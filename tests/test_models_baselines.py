"""Rolling-origin SARIMA and ETS forecasts against statsmodels' own forecasts."""

import warnings

import numpy as np
import pytest
from statsmodels.tsa.exponential_smoothing.ets import ETSModel
from statsmodels.tsa.statespace.sarimax import SARIMAX

from rnnlab.tasks.forecast_baselines import (
    arima_forecasts,
    ets_forecasts,
    fourier_terms,
    series_from_windows,
)

r = np.random.default_rng(0)
PERIOD, N, H = 6, 120, 8
t = np.arange(N + 30)
SERIES = 10 + 0.05 * t + 2 * np.sin(2 * np.pi * t / PERIOD) + r.normal(scale=0.4, size=len(t))


def test_arima_forecast_from_the_end_of_training_is_statsmodels_forecast():
    train = SERIES[:N]
    order, seasonal = (1, 1, 0), (1, 0, 0, PERIOD)
    got = arima_forecasts(train, SERIES, np.array([N, N + 5]), H, order, seasonal)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = SARIMAX(train, order=order, seasonal_order=seasonal).fit(disp=False)
        later = SARIMAX(SERIES[: N + 5], order=order, seasonal_order=seasonal).filter(fit.params)
    np.testing.assert_allclose(got[0], fit.forecast(H), rtol=1e-6)
    np.testing.assert_allclose(got[1], later.forecast(H), rtol=1e-6)


def test_arima_with_fourier_regressors_forecasts_like_statsmodels():
    train = SERIES[:N]
    exog = fourier_terms(len(SERIES), PERIOD, 2)
    got = arima_forecasts(train, SERIES, np.array([N]), H, (1, 1, 0), period=PERIOD, harmonics=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = SARIMAX(train, exog=exog[:N], order=(1, 1, 0)).fit(disp=False)
    np.testing.assert_allclose(got[0], fit.forecast(H, exog=exog[N : N + H]), rtol=1e-6)


def test_ets_forecast_from_any_origin_is_statsmodels_forecast():
    trend, seasonal = "add", "add"
    train = SERIES[:N]
    got = ets_forecasts(
        train, SERIES, np.array([N, N + 7]), H, trend=trend, seasonal=seasonal, period=PERIOD
    )
    kw = dict(
        error="add",
        trend=trend,
        seasonal=seasonal,
        seasonal_periods=PERIOD if seasonal else None,
        initialization_method="heuristic",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ETSModel(train, **kw).fit(disp=False)
        later = ETSModel(SERIES[: N + 7], **kw).smooth(fit.params)
    np.testing.assert_allclose(got[0], fit.forecast(H), rtol=1e-6)
    np.testing.assert_allclose(got[1], later.forecast(H), rtol=1e-6)


def test_series_is_rebuilt_from_consecutive_windows():
    x = np.arange(40, dtype=np.float32)[:, None]
    L, H2 = 5, 3

    def cut(lo, hi):
        starts = np.arange(max(lo, L), hi - H2 + 1)
        return np.stack([x[s - L : s] for s in starts]), np.stack([x[s : s + H2] for s in starts])

    np.testing.assert_array_equal(series_from_windows([cut(0, 25), cut(25, 32), cut(32, 40)]), x)
    with pytest.raises(ValueError, match="continue one series"):
        series_from_windows([cut(0, 25), cut(27, 40)])
