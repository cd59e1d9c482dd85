"""Forecasting baselines: the rolling-origin statsforecast forecasts against statsforecast's
own forecast from the end of training and against closed forms with the fitted parameters
(no refit at later origins); seasonal naive against its closed form."""

import numpy as np
import pytest

from rnnlab.models.forecaster import seasonal_naive
from rnnlab.tasks.forecast_baselines import (
    errors,
    fourier_terms,
    make_model,
    rolling_forecasts,
    series_from_windows,
)

r = np.random.default_rng(0)
PERIOD, N, H = 6, 120, 8
t = np.arange(N + 30)
SERIES = 10 + 0.05 * t + 2 * np.sin(2 * np.pi * t / PERIOD) + r.normal(scale=0.4, size=len(t))


@pytest.mark.parametrize("name", ["arima", "ets", "theta"])
def test_first_window_is_statsforecasts_own_forecast(name):
    """From the end of training, ``forward`` on the training series is the library's
    ``predict``; a later origin differs (the history grew) but uses the same fit."""
    model, _ = make_model(name, PERIOD)
    got = rolling_forecasts(model, SERIES[:N], SERIES, np.array([N, N + 9]), H)
    own, _ = make_model(name, PERIOD)
    want = own.fit(SERIES[:N]).predict(H)["mean"]
    np.testing.assert_allclose(got[0], want, rtol=1e-6)
    assert not np.allclose(got[1], want)


def test_long_season_ets_is_stl_plus_ets_and_matches_its_own_forecast():
    model, desc = make_model("ets", 52)
    assert "MSTL" in desc and type(model).__name__ == "MSTL"
    long = 10 + 2 * np.sin(2 * np.pi * np.arange(300) / 52) + r.normal(scale=0.2, size=300)
    got = rolling_forecasts(model, long[:260], long, np.array([260]), 10)
    own, _ = make_model("ets", 52)
    np.testing.assert_allclose(got[0], own.fit(long[:260]).predict(10)["mean"], rtol=1e-6)


def test_fourier_regressors_reach_the_forecast_as_known_future_values():
    model, desc = make_model("arima", PERIOD, harmonics=2)
    assert "Fourier" in desc
    exog = fourier_terms(len(SERIES) + H, PERIOD, 2)
    got = rolling_forecasts(model, SERIES[:N], SERIES, np.array([N]), H, exog)
    own, _ = make_model("arima", PERIOD, harmonics=2)
    want = own.fit(SERIES[:N], X=exog[:N]).predict(H, X=exog[N : N + H])["mean"]
    np.testing.assert_allclose(got[0], want, rtol=1e-6)


def test_later_origins_keep_the_fitted_ses_parameters():
    """Simple exponential smoothing, ``l_t = l_{t-1} + alpha (y_t - l_{t-1})``, forecast
    ``l_{s-1}`` at every horizon, with alpha and l_0 from the training fit only."""
    from statsforecast.models import AutoETS

    model = AutoETS(model="ANN")
    origins = np.array([N, N + 4, N + 17])
    got = rolling_forecasts(model, SERIES[:N], SERIES, origins, H)
    alpha, level0 = model.model_["par"][0], model.model_["par"][4]
    for row, s in zip(got, origins, strict=True):
        level = level0
        for y in SERIES[:s]:
            level += alpha * (y - level)
        np.testing.assert_allclose(row, np.full(H, level), rtol=1e-6)


def test_later_origins_keep_the_fitted_ar1_parameters():
    """AR(1) with mean ``mu``: ``y_{s-1+h|s-1} = mu + phi^h (y_{s-1} - mu)``."""
    from statsforecast.models import ARIMA

    model = ARIMA(order=(1, 0, 0), include_mean=True)
    noisy = 5 + r.normal(size=N + 30)
    origins = np.array([N, N + 11])
    got = rolling_forecasts(model, noisy[:N], noisy, origins, H)
    phi, mu = model.model_["coef"]["ar1"], model.model_["coef"]["intercept"]
    for row, s in zip(got, origins, strict=True):
        want = mu + phi ** np.arange(1, H + 1) * (noisy[s - 1] - mu)
        np.testing.assert_allclose(row, want, rtol=1e-6)


def test_seasonal_naive_repeats_the_last_season():
    """``y_{L+h} = y_{L+h-m ceil(h/m)}`` by a plain loop."""
    x = r.normal(size=(3, 20, 2)).astype(np.float32)
    for m in (1, 5, 20):
        got = np.asarray(seasonal_naive(x, 12, m))
        for h in range(1, 13):
            k = -(-h // m)
            np.testing.assert_array_equal(got[:, h - 1], x[:, 20 + h - m * k - 1])
    with pytest.raises(ValueError, match="period must be <= the history length"):
        seasonal_naive(x, 4, 21)


def test_errors_and_unknown_baseline():
    e = errors(np.array([[1.0, 2.0]]), np.array([[2.0, 0.0]]), scale=0.5)
    assert e == {"mae": 1.5, "rmse": np.sqrt(2.5), "mase": 3.0}
    with pytest.raises(ValueError, match="unknown forecasting baseline 'prophet'"):
        make_model("prophet", 12)


def test_series_is_rebuilt_from_consecutive_windows():
    x = np.arange(40, dtype=np.float32)[:, None]
    L, H2 = 5, 3

    def cut(lo, hi):
        starts = np.arange(max(lo, L), hi - H2 + 1)
        return np.stack([x[s - L : s] for s in starts]), np.stack([x[s : s + H2] for s in starts])

    np.testing.assert_array_equal(series_from_windows([cut(0, 25), cut(25, 32), cut(32, 40)]), x)
    with pytest.raises(ValueError, match="continue one series"):
        series_from_windows([cut(0, 25), cut(27, 40)])


def test_var_baseline_is_a_statsmodels_var_fitted_on_the_training_part(tmp_path):
    """Against a direct statsmodels read of macrodata and a direct VAR fit: the same lag
    order (AIC, up to 8), the same forecasts from every test window's origin, parameters
    fixed at the training fit; the other baselines read unemployment alone."""
    from statsmodels.datasets import macrodata
    from statsmodels.tsa.api import VAR

    import rnnlab.data as data
    from rnnlab.tasks.forecast_baselines import forecast_baselines

    frame = macrodata.load_pandas().data
    growth = 100 * np.diff(np.log(frame["realgdp"].to_numpy()))
    ref = np.column_stack([frame[["unemp", "infl", "tbilrate"]].to_numpy()[1:], growth])
    cfg = data.resolve(
        {"name": "macrodata", "data_dir": str(tmp_path), "seq_len": 16, "horizon": 4}
    )
    info = data.info(cfg)
    got = forecast_baselines(cfg, info, models=("var", "arima"), var_maxlags=8)
    fit = VAR(ref[:141]).fit(maxlags=8, ic="aic", trend="c")
    p = fit.k_ar
    assert got["var"]["model"].startswith(f"statsmodels VAR({p})") and 1 <= p <= 8
    origins = np.arange(162, 202 - 4 + 1)
    want = np.stack([fit.forecast(ref[s - p : s], 4)[:, 0] for s in origins])
    np.testing.assert_allclose(got["forecasts"]["var"], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        got["forecasts"]["truth"], ref[origins[:, None] + np.arange(4), 0], atol=1e-4
    )
    # The one-step forecast is the fitted equation: constant plus the lags' coefficients.
    s = origins[5]
    one = fit.params[0] + sum(fit.coefs[i] @ ref[s - 1 - i] for i in range(p))
    np.testing.assert_allclose(got["forecasts"]["var"][5, 0], one[0], rtol=1e-4)
    mae = np.abs(want - got["forecasts"]["truth"]).mean()
    np.testing.assert_allclose(got["var"]["mae"], mae, rtol=1e-4)
    np.testing.assert_allclose(got["var"]["mase"], mae / info["mase_scale"][0], rtol=1e-4)
    assert set(got) >= {"seasonal_naive", "arima", "var", "strongest"} and got["windows"] == 37


def test_var_baseline_needs_covariates(tmp_path):
    import rnnlab.data as data
    from rnnlab.tasks.forecast_baselines import forecast_baselines

    cfg = data.resolve({"name": "sunspots", "data_dir": str(tmp_path), "seq_len": 22, "horizon": 5})
    with pytest.raises(ValueError, match="needs a series with covariates"):
        forecast_baselines(cfg, data.info(cfg), models=("var",))
