"""Multi-step forecasting of co2 (weekly), sunspots (yearly) and US unemployment with
covariates (quarterly) against classical baselines.

Data (rnnlab.data, from statsmodels' datasets): windows of ``seq_len`` observed steps and
the next ``horizon`` steps, split by time 70/10/20, standardised with training statistics.
The score is MASE (Hyndman & Koehler 2006): MAE divided by the in-sample MAE of the
seasonal-naive forecast on the training series (period 52 weeks for co2, 11 years for
sunspots). Below 1 beats that scale.

Baselines computed in the same run, on the same test windows (``rnnlab.tasks.forecast_baselines``,
at the end of training): the seasonal-naive forecast and statsforecast's automatic models,
AutoARIMA (co2: on Fourier terms of the 52-week season), AutoETS (co2: MSTL + AutoETS, since
AutoETS, like R's ``ets``, drops seasons longer than 24) and AutoTheta, each fitted on the
training series and then run over the whole series with those parameters fixed (their
``forward``), forecasting from every window's origin. Their MAE, RMSE and MASE land in
``summary.json`` under ``report``, with the forms the searches chose.

Commands::

    rnnlab train --config experiments/forecast.py:co2 --workdir workdirs/forecast-co2
    rnnlab train --config experiments/forecast.py:sunspots --workdir workdirs/forecast-sunspots
    rnnlab train --config experiments/forecast.py:macrodata --workdir workdirs/forecast-macrodata

Variants: ``co2`` (default), ``sunspots``, ``macrodata``, ``csv_series`` (one's own
series, with settings of no particular series: ``rnnlab train --config
forecast:csv_series,small --config.data.path=my.csv --config.data.seasonal_period=12``);
suffixes ``,ar`` (autoregressive instead of direct multi-step; not for macrodata),
``,point`` or ``,gaussian`` (other heads than the quantile head), ``,small`` (CI size);
``small`` alone is ``sunspots,small``, whose lookback, horizon and AR order are
sunspots'.

macrodata (statsmodels, quarterly US 1959Q2-2009Q3, 202 quarters): the unemployment rate 4
quarters ahead from 16 quarters of it and of three past covariates (inflation, the 3-month
Treasury bill rate, real GDP growth); split 141/21/40 quarters, so 122 training, 18
validation and 37 test windows (training 1959Q2-1994Q2, validation to 1999Q3, test to
2009Q3). Baselines: naive (last value; the MASE scale is its one-step in-sample MAE),
AutoARIMA, AutoETS and AutoTheta on unemployment alone, and the peer that reads the same
covariates, statsmodels' VAR on all four series with the lag order chosen by AIC (up to 8)
on the training part. 16 units, ``ar_order`` 4, 1,000 steps.

Model (docs/models.md): an LSTM over each window standardised by its own mean and standard
deviation (reversible instance normalisation), a direct linear head for all ``horizon``
steps as offsets from the last value, plus a linear autoregressive component over the last
``ar_order`` values (LSTNet's highway); a quantile head (10, 50, 90 %) trained with the
pinball loss, whose median is the point forecast: the median minimises absolute error, the
error MASE measures. co2: 64 units, ``ar_order`` 104, 3,000 steps; sunspots (216 training
years): 16 units, ``ar_order`` 11, 1,500 steps. Adam 3e-3 with a cosine schedule, clipping
at 1, batch 32; the checkpoint with the best validation MAE is the one reported.

Hardware: 2 cores of an Intel Xeon (Sapphire Rapids), one JAX CPU device.

Result measured (test MASE; rolling origin over the same windows; this machine, shared):
co2 0.376 against seasonal naive 1.373, AutoARIMA on Fourier terms 1.018, AutoTheta 0.892
and MSTL + AutoETS 0.373: the strongest standard baseline ties the model (MAE 0.459
against 0.462 ppm). Sunspots 1.162 against seasonal naive 1.356, AutoARIMA 1.418, AutoETS
2.113, AutoTheta 2.093 and the fixed AR(9) 1.104, the strongest. On sunspots the test
decades hold larger cycles than any training year and the validation split is 21
windows, so the choice of checkpoint is noisy; without the window normalisation and the
quantile head the LSTM did worse than seasonal naive on both series (co2 2.66, sunspots
1.38 to 2.04). ``small`` (sunspots, 100 steps) must reach a validation MAE below 1
standard deviation in CI, with every baseline in its report.
macrodata (37 test windows forecasting 1999Q4-2009Q3): test MASE 1.905 (MAE 0.472 points)
against naive 2.025, AutoARIMA 1.759 (ARIMA(2,1,0), the strongest), AutoETS 1.836, AutoTheta
2.031 and VAR(3) 1.803: the model beats naive and AutoTheta, not the others; the test
decade ends in the 2008-09 recession, which no model foresees. 1,000 steps take about 12 s.
The table's numbers are in experiments/README.md.
"""

from __future__ import annotations

import ml_collections

from experiments import settings
from rnnlab.train.config import base_config, lock

# Window, model size and baselines per series. co2: AutoARIMA on 4 Fourier pairs of the
# 52-week season (a seasonal ARIMA at lag 52 takes many minutes to search), and, the season
# being longer than AutoETS takes (24), MSTL + AutoETS. sunspots: the searches on the
# 11-year cycle (better than as a yearly series without season: AutoARIMA MASE 1.42
# against 1.79, AutoETS 2.11 against 2.73), plus the textbook AR(9), stronger than all.
SERIES = {
    "co2": dict(
        seq_len=104,
        horizon=26,
        hidden=64,
        ar_order=104,
        steps=3000,
        harmonics=4,
        baselines=("arima", "ets", "theta"),
    ),
    "sunspots": dict(
        seq_len=33,
        horizon=11,
        hidden=16,
        ar_order=11,
        steps=1500,
        harmonics=0,
        baselines=("arima", "ets", "theta", "ar"),
    ),
    # Unemployment 4 quarters ahead from 16 quarters of it and of three covariates; the
    # peer that reads the same covariates is the VAR (lag order by AIC on the training part).
    "macrodata": dict(
        seq_len=16,
        horizon=4,
        hidden=16,
        ar_order=4,
        steps=1000,
        harmonics=0,
        baselines=("arima", "ets", "theta", "var"),
    ),
    # One's own series (--config.data.path=FILE.csv, --config.data.seasonal_period=M):
    # settings of no particular series, a lookback of 32 steps for 8 ahead.
    "csv_series": dict(
        seq_len=32,
        horizon=8,
        hidden=16,
        ar_order=8,
        steps=1000,
        harmonics=0,
        baselines=("arima", "ets", "theta"),
    ),
}


def get_config(arg: str = "co2") -> ml_collections.ConfigDict:
    """``"<series>[,ar][,point|,gaussian][,small]"`` with series ``co2``, ``sunspots``,
    ``macrodata`` or ``csv_series`` (one's own file), or ``"small"`` (sunspots, small)."""
    parts = [p for p in (arg or "co2").split(",") if p]
    small = "small" in parts
    parts = [p for p in parts if p != "small"] or ["sunspots"]
    series = parts[0]
    if series not in SERIES or any(p not in ("ar", "point", "gaussian") for p in parts[1:]):
        raise ValueError(
            f"forecast variant must be '<series>[,ar][,point|,gaussian][,small]' with series "
            f"in {sorted(SERIES)}, or 'small'; got {arg!r}"
        )
    autoregressive = "ar" in parts
    if autoregressive and series == "macrodata":
        raise ValueError(
            "forecast variant 'macrodata,ar': the autoregressive mode feeds forecasts back as "
            "inputs, and macrodata's covariates have no forecasts; use the direct mode"
        )
    s = SERIES[series]
    c = base_config()
    c.seed = 0
    c.data.name = series
    c.data.seq_len = s["seq_len"]
    c.data.horizon = s["horizon"]
    # The season length is the dataset's one key, data.seasonal_period (None: the series'
    # own); MASE, the baselines and the model's seasonal naive all read it from there.

    c.model.name = "forecaster"
    c.model.cell = "lstm"
    c.model.hidden_features = s["hidden"]
    c.model.num_layers = 1
    c.model.mode = "autoregressive" if autoregressive else "direct"
    c.model.head = (
        "gaussian" if "gaussian" in parts else "point" if "point" in parts else "quantile"
    )
    c.model.quantiles = (0.1, 0.5, 0.9)
    c.model.dropout = 0.0
    c.model.window_norm = True
    c.model.ar_order = 0 if autoregressive else s["ar_order"]  # direct mode only
    c.model.residual = True

    settings.adam_cosine(c, warmup_steps=100)

    settings.train_steps(
        c, s["steps"], batch_size=32, log_every=100, eval_every=250, checkpoint_every=250
    )
    c.train.stateful = False
    c.train.early_stopping.metric = "mae"
    c.train.early_stopping.mode = "min"
    c.eval.batch_size = 64

    # Read at the end of the run by rnnlab.tasks (the split) and baselines.
    c.report = ml_collections.ConfigDict({"split": "test"})
    c.baselines = ml_collections.ConfigDict(
        {
            "models": s["baselines"],
            "harmonics": s["harmonics"],
            "ar_order": 9,
            "var_maxlags": 8,
        }
    )

    if small:
        c.model.hidden_features = 16
        c.optim.warmup_steps = 10
        settings.train_steps(c, 100, log_every=25, eval_every=100, checkpoint_every=100)
    return lock(c)
