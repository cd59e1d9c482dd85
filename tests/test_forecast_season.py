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


def test_ones_own_series_gets_its_season_in_the_baselines(tmp_path):
    """A CSV series run: MASE's scale, the seasonal naive and the baselines use the period
    given once, as data.seasonal_period."""
    import json

    import numpy as np

    from rnnlab import cli

    t = np.arange(240)
    values = 10 + 3 * np.sin(2 * np.pi * t / 7) + 0.1 * np.random.default_rng(0).normal(size=240)
    csv = tmp_path / "sales.csv"
    csv.write_text("units\n" + "\n".join(f"{v:.4f}" for v in values) + "\n")
    workdir = tmp_path / "run"
    args = ["train", "--config", "forecast:csv_series,small", "--workdir", str(workdir)]
    args += [f"--config.data.path={csv}", "--config.data.seasonal_period=7"]
    args += ["--config.train.steps=20", "--config.optim.warmup_steps=2"]
    args += ["--config.train.eval_every=20", "--config.baselines.models=('theta',)"]
    assert cli.main(args) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["report"]["seasonal_naive"]["model"] == "seasonal naive (period 7)"
    assert "(period 7)" in summary["report"]["theta"]["model"]
    # MASE's scale: the training part's mean absolute 7-step difference, by hand.
    info = json.loads((workdir / "dataset_info.json").read_text())
    train = values[: int(round(0.7 * 240))]
    scale = np.abs(train[7:] - train[:-7]).mean()
    assert info["seasonal_period"] == 7
    assert info["mase_scale"][0] == pytest.approx(scale, rel=1e-4)
