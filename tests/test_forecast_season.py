"""One season length per run: ``data.seasonal_period``, which MASE, the baselines and the
model's seasonal naive read; the experiment sets no other copy of it."""

import pytest

from rnnlab.train import config as cfg_lib


@pytest.mark.parametrize("variant", ["small", "co2", "sunspots", "macrodata"])
def test_the_forecast_experiment_keeps_no_second_season_key(variant):
    config = cfg_lib.load(f"forecast:{variant}")
    assert "period" not in config.baselines
    assert config.data.seasonal_period is None  # the series' own, from the data
    with pytest.raises(cfg_lib.ConfigError, match="baselines.period"):
        cfg_lib.override(config, ["baselines.period=7"])


def test_the_forecast_figure_shows_history_band_units_and_every_mae(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from rnnlab.tasks import forecast

    kept = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (kept.append(fig), close(fig)))
    n, H, L = 5, 4, 6
    truth = np.arange(n * H, dtype=float).reshape(n, H)
    forecasts = {"truth": truth, "ets": truth + 1, "theta": truth + 2}
    seen = {
        "history": np.zeros((n, L)),
        "band": np.stack([truth - 1, truth, truth + 1], axis=-1),
        "levels": (0.1, 0.5, 0.9),
    }
    base = {"split": "test", "strongest": "ets", "model": {"mae": 0.5},
            "ets": {"mae": 1.0}, "theta": {"mae": 2.0}}  # fmt: skip
    what = forecast.series_name(
        {"name": "csv_series", "path": "/x/sales.csv"}, {"columns": ["units"]}
    )
    assert what == "sales.csv, column 'units'"
    forecast._plot_forecasts(str(tmp_path), forecasts, truth + 0.5, seen, what, base)
    (fig,) = kept
    ax = fig.axes[0]
    assert ax.get_legend() is None and fig.legends  # the legend is off the data
    assert fig._suptitle.get_text() == "test MAE: forecaster 0.5, ets 1, theta 2"
    assert ax.get_ylabel().startswith("sales.csv, column 'units'")
    history = next(line for line in ax.get_lines() if line.get_label() == "history (input)")
    assert list(history.get_xdata()) == list(range(-L + 1, 1))
    assert ax.collections  # the 10-90 % quantile band
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert all(float(t).is_integer() for t in ticks)
