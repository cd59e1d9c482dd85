"""``rnnlab predict`` on forecasting runs trained through ``rnnlab train`` on a series file
made here: forecasts with quantiles, checked against NumPy on the same rows (the test
error and the head's loss that ``rnnlab eval`` reports, the point head's validation
residual quantiles, the Gaussian head's predictive quantiles)."""

from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from rnnlab import cli
from tests.forecast_runs import HORIZON, LOOKBACK, cuts, train_forecaster, write_series


def _predict(workdir, series, out, *extra: str) -> int:
    args = ["predict", "--workdir", str(workdir), "--input", str(series), "--output", str(out),
            "--quiet", *extra]  # fmt: skip
    return cli.main(args)


def _backtest(tmp_path, head: str, capsys, *extra: str):
    """Trains a ``head`` forecaster, returns the series, workdir, ``rnnlab eval``'s test
    metrics and ``rnnlab predict --origins all``'s arrays."""
    series = tmp_path / "sales.csv"
    values = write_series(series)
    workdir = tmp_path / "run"
    train_forecaster(series, workdir, head)
    capsys.readouterr()
    assert cli.main(["eval", "--workdir", str(workdir), "--split", "test"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert _predict(workdir, series, tmp_path / "all.npz", "--origins", "all", *extra) == 0
    with np.load(tmp_path / "all.npz") as f:
        out = {k: f[k] for k in f.files}
    assert list(out["origins"]) == list(range(LOOKBACK, len(values) + 1))
    return values, series, workdir, metrics, out


def _windows(values: np.ndarray, origins: np.ndarray, split: str):
    """Positions in ``origins`` of the windows whose targets lie in ``split`` (the 0.7 / 0.1
    / 0.2 time split), and their true values ``[N, H]``."""
    c = cuts(len(values))
    i = ("train", "validation", "test").index(split)
    first = np.arange(max(c[i], LOOKBACK), c[i + 1] - HORIZON + 1)  # rows read before each
    pick = np.searchsorted(origins, first)
    np.testing.assert_array_equal(origins[pick], first)
    return pick, np.stack([values[t : t + HORIZON] for t in first])


def _standardise(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    train = values[: cuts(len(values))[1]]
    return (x - train.mean()) / train.std()


def test_point_forecaster_bands_are_validation_residual_quantiles(tmp_path, capsys):
    values, series, workdir, metrics, out = _backtest(tmp_path, "point", capsys)
    point = out["forecasts"][..., 0]  # [origins, H], one series
    pick, truth = _windows(values, out["origins"], "test")
    assert metrics["mae_orig"] == pytest.approx(np.mean(np.abs(point[pick] - truth)), rel=1e-4)
    # Empirical quantiles of the validation residuals per step ahead, in NumPy.
    levels = [0.1, 0.5, 0.9]
    vpick, vtruth = _windows(values, out["origins"], "validation")
    residual_q = np.quantile(vtruth - point[vpick], levels, axis=0)  # [Q, H]
    bands = out["quantiles"][:, :, 0]  # [origins, H, Q]
    np.testing.assert_allclose(bands, point[..., None] + residual_q.T, atol=1e-3)
    # The default: one forecast from the end of the file, as a table.
    assert _predict(workdir, series, tmp_path / "next.csv") == 0
    table = pd.read_csv(tmp_path / "next.csv")
    assert list(table.columns) == ["origin", "step", "sales", "sales_q0.1", "sales_q0.5",
                                   "sales_q0.9"]  # fmt: skip
    assert list(table.origin) == [len(values)] * HORIZON and list(table.step) == [1, 2, 3, 4]
    np.testing.assert_allclose(table.sales, point[-1], rtol=1e-6)
    for q, row in zip(levels, residual_q, strict=True):
        np.testing.assert_allclose(table[f"sales_q{q:g}"], point[-1] + row, atol=1e-3)


def test_quantile_head_bands_give_the_pinball_loss_of_eval(tmp_path, capsys):
    values, series, workdir, metrics, out = _backtest(tmp_path, "quantile", capsys)
    levels = np.asarray(out["levels"])
    assert list(levels) == [0.1, 0.5, 0.9]  # the head's own levels
    bands = out["quantiles"][:, :, 0]  # [origins, H, Q]
    assert (np.diff(bands, axis=-1) >= 0).all()  # the levels never cross
    np.testing.assert_allclose(out["forecasts"][..., 0], bands[..., 1], rtol=1e-6)  # the median
    pick, truth = _windows(values, out["origins"], "test")
    u = _standardise(values, truth)[..., None] - _standardise(values, bands[pick])
    pinball = np.maximum(levels * u, (levels - 1) * u).sum(-1)  # Koenker & Bassett, summed
    assert metrics["loss"] == pytest.approx(float(pinball.mean()), rel=1e-4)
    # Bad requests: one line, and no output file.
    capsys.readouterr()
    assert _predict(workdir, series, tmp_path / "x.csv", "--quantiles", "0.2,0.8") == 2  # bad input
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("rnnlab: error:")]
    assert len(lines) == 1 and "quantile head forecasts the levels [0.1, 0.5, 0.9]" in lines[0]
    short = tmp_path / "short.csv"
    write_series(short, rows=LOOKBACK - 1)
    assert _predict(workdir, short, tmp_path / "x.csv") == 2
    err = capsys.readouterr().err
    assert f"{short}: holds 15 rows, fewer than the run's lookback of 16 rows" in err
    assert not (tmp_path / "x.csv").exists()


def test_gaussian_head_bands_are_its_predictive_quantiles(tmp_path, capsys):
    levels = (0.25, 0.5, 0.75)
    values, _, _, metrics, out = _backtest(
        tmp_path, "gaussian", capsys, "--quantiles", ",".join(map(str, levels))
    )
    assert tuple(out["levels"]) == levels
    mu, bands = out["forecasts"][..., 0], out["quantiles"][:, :, 0]
    np.testing.assert_allclose(bands[..., 1], mu, rtol=1e-6)
    z = NormalDist().inv_cdf(0.75)
    sigma = (bands[..., 2] - mu) / z
    np.testing.assert_allclose(mu - bands[..., 0], sigma * z, rtol=1e-5)  # symmetric
    # The Gaussian negative log-likelihood of eval, from the bands alone (standardised units).
    pick, truth = _windows(values, out["origins"], "test")
    std = values[: cuts(len(values))[1]].std()
    s = sigma[pick] / std
    r = (truth - mu[pick]) / std / s
    nll = np.log(s) + 0.5 * r**2 + 0.5 * np.log(2 * np.pi)
    assert metrics["loss"] == pytest.approx(float(nll.mean()), rel=1e-4)


def test_forecast_options_are_refused_elsewhere_and_checked(tmp_path, capsys):
    """``--origins``/``--quantiles`` on a run that does not forecast, and levels outside
    (0, 1), are one-line errors before any model is loaded."""
    from rnnlab.train.predict import predict_file

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"task": "classification"}))
    with pytest.raises(ValueError, match="apply to forecasting runs, not to a classification"):
        predict_file(str(tmp_path), "x.npz", str(tmp_path / "y.csv"), origins="all")
    with pytest.raises(SystemExit) as stop:
        _predict(tmp_path, "x.npz", tmp_path / "y.csv", "--quantiles", "0.5,1.5")
    assert stop.value.code == 2 and "levels in (0, 1)" in capsys.readouterr().err
