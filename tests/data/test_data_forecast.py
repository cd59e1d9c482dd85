"""Forecasting data: co2 and sunspots through their TFDS builder, time splits, windows,
training-only normalisation, the user's CSV, NaN handling, and the Mackey-Glass integrator."""

import numpy as np
import pandas as pd
import pytest

import rnnlab.data as data
from rnnlab.data import builders, synthetic


def test_co2_builder_stores_the_published_series_with_its_gaps(data_root):
    from statsmodels.datasets import co2

    builder = builders.make(builders.Series, str(data_root / "tfds"), "co2")
    values = builder.as_data_source(split="full")[0]["values"]
    assert values.shape == (2284, 1) and int(np.isnan(values).sum()) == 59
    ref = co2.load_pandas().data["co2"].to_numpy()
    np.testing.assert_allclose(values[:, 0], ref, rtol=1e-6)


def test_sunspots_size(data_root):
    spec = data.info({"name": "sunspots", "data_dir": str(data_root), "seq_len": 22, "horizon": 5})
    assert sum(spec["num_steps"].values()) == 309
    assert spec["seasonal_period"] == 11


def test_co2_windows_split_by_time_and_normalise_with_train_only(data_root):
    from statsmodels.datasets import co2

    cfg = {"name": "co2", "data_dir": str(data_root), "seq_len": 52, "horizon": 13}
    spec = data.info(cfg)
    series = co2.load_pandas().data["co2"].interpolate(limit_direction="both").to_numpy()
    cut_train, cut_valid = round(2284 * 0.7), round(2284 * 0.8)
    assert spec["num_steps"] == {
        "train": cut_train,
        "validation": cut_valid - cut_train,
        "test": 2284 - cut_valid,
    }
    mean, std = series[:cut_train].mean(), series[:cut_train].std()
    np.testing.assert_allclose(spec["mean"], [mean], rtol=1e-6)
    np.testing.assert_allclose(spec["std"], [std], rtol=1e-6)
    diffs = np.abs(series[52:cut_train] - series[: cut_train - 52]).mean()
    np.testing.assert_allclose(spec["mase_scale"], [diffs], rtol=1e-6)
    batches = list(data.load(cfg, split="validation", batch_size=32, seed=0, repeat=False))
    windows = np.concatenate([b["inputs"] for b in batches])[: spec["num_examples"]["validation"]]
    targets = np.concatenate([b["targets"] for b in batches])[: len(windows)]
    assert len(windows) == (cut_valid - 13) - cut_train + 1
    for j in (0, len(windows) - 1):
        t = cut_train + j  # first target step of window j
        np.testing.assert_allclose(windows[j, :, 0] * std + mean, series[t - 52 : t], rtol=1e-5)
        np.testing.assert_allclose(targets[j, :, 0] * std + mean, series[t : t + 13], rtol=1e-5)
    weights = np.concatenate([b["weights"] for b in batches])
    assert weights.sum() == len(windows)


def test_csv_series_and_nan_errors(tmp_path):
    frame = pd.DataFrame({"date": [f"d{i}" for i in range(300)], "y": np.sin(np.arange(300) / 7)})
    path = tmp_path / "series.csv"
    frame.to_csv(path, index=False)
    cfg = {
        "name": "csv_series",
        "path": str(path),
        "data_dir": str(tmp_path),
        "seq_len": 20,
        "horizon": 4,
    }
    spec = data.info(cfg)
    assert spec["columns"] == ["y"] and spec["input_features"] == 1
    batch = next(data.load(cfg, split="train", batch_size=8, seed=0))
    assert batch["inputs"].shape == (8, 20, 1) and batch["targets"].shape == (8, 4, 1)
    frame.loc[100, "y"] = np.nan
    gappy = tmp_path / "gappy.csv"
    frame.to_csv(gappy, index=False)
    with pytest.raises(ValueError, match="missing \\(NaN\\) values"):
        data.info({**cfg, "path": str(gappy)})
    filled = data.info({**cfg, "path": str(gappy), "fill_gaps": "interpolate"})
    assert filled["num_steps"]["train"] == 210


def test_series_too_short_for_a_window_is_an_error(tmp_path):
    np.save(tmp_path / "short.npy", np.arange(30.0))
    cfg = {"name": "csv_series", "path": str(tmp_path / "short.npy"), "data_dir": str(tmp_path)}
    with pytest.raises(ValueError, match="too short"):
        data.load({**cfg, "seq_len": 8, "horizon": 4}, split="validation", batch_size=2, seed=0)


def _euler_reference(x0, steps, dt=0.01):
    """Textbook explicit Euler on the Mackey-Glass equation with a fine step."""
    lag = int(round(17 / dt))
    x = [x0] * (lag + 1)
    for _ in range(int(round(steps / dt))):
        delayed = x[-lag - 1]
        x.append(x[-1] + dt * (0.2 * delayed / (1 + delayed**10) - 0.1 * x[-1]))
    every = int(round(1 / dt))
    return np.array(x[lag + every :: every][:steps])


def test_mackey_glass_integrator_matches_a_fine_euler_reference():
    lag = int(round(17 / synthetic.MG_DT))
    got = synthetic.mackey_glass(np.full((1, lag + 1), 1.2), 60, dt=synthetic.MG_DT, every=4)[0]
    ref = _euler_reference(1.2, 60)
    np.testing.assert_allclose(got, ref, atol=5e-3)


def test_mackey_glass_task_is_deterministic_and_normalised():
    cfg = {"name": "mackey_glass", "seq_len": 30, "horizon": 5, "eval_examples": 40}
    spec = data.info(cfg)
    assert 0.85 < spec["mean"][0] < 1.0 and 0.15 < spec["std"][0] < 0.3
    a = next(data.load(cfg, split="train", batch_size=4, seed=7))
    b = next(data.load(cfg, split="train", batch_size=4, seed=7))
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
    series = (
        np.concatenate([a["inputs"], a["targets"]], axis=1)[..., 0] * spec["std"][0]
        + spec["mean"][0]
    )
    ref = synthetic.mackey_glass_examples([0], seed=7, split="train", length=35)[0]
    np.testing.assert_allclose(series[0], ref, rtol=1e-5)
    evals = list(data.load(cfg, split="test", batch_size=16, seed=0, repeat=False))
    assert len(evals) == 3 and sum(e["weights"].sum() for e in evals) == 40


def _macrodata_reference() -> np.ndarray:
    """unemp, infl, tbilrate and 100 diff(log realgdp), 1959Q2-2009Q3, read directly."""
    from statsmodels.datasets import macrodata

    frame = macrodata.load_pandas().data
    growth = 100 * np.diff(np.log(frame["realgdp"].to_numpy()))
    rest = frame[["unemp", "infl", "tbilrate"]].to_numpy()[1:]
    return np.column_stack([rest, growth])


def test_macrodata_forecasts_unemployment_from_past_covariates(tmp_path):
    from rnnlab.data.forecast import series_values

    cfg = {"name": "macrodata", "data_dir": str(tmp_path), "seq_len": 16, "horizon": 4}
    spec = data.info(cfg)
    ref = _macrodata_reference()
    assert ref.shape == (202, 4)
    assert spec["columns"] == ["unemp", "infl", "tbilrate", "realgdp_growth"]
    assert (spec["input_features"], spec["output_features"]) == (4, 1)
    assert spec["num_steps"] == {"train": 141, "validation": 21, "test": 40}
    assert spec["num_examples"] == {"train": 141 - 4 - 16 + 1, "validation": 18, "test": 37}
    assert spec["seasonal_period"] == 1
    values, cuts = series_values(cfg)
    np.testing.assert_allclose(values, ref, rtol=1e-6, atol=1e-6)
    assert cuts == [0, 141, 162, 202]
    mean, std = ref[:141].mean(axis=0), ref[:141].std(axis=0)
    np.testing.assert_allclose(spec["mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(spec["std"], std, rtol=1e-5)
    np.testing.assert_allclose(
        spec["mase_scale"][0], np.abs(np.diff(ref[:141, 0])).mean(), rtol=1e-5
    )
    batches = list(data.load(cfg, split="test", batch_size=64, seed=0, repeat=False))
    inputs = np.concatenate([b["inputs"] for b in batches])[:37]
    targets = np.concatenate([b["targets"] for b in batches])[:37]
    assert inputs.shape == (37, 16, 4) and targets.shape == (37, 4, 1)
    for j in (0, 36):
        t = 162 + j  # first target quarter of test window j
        np.testing.assert_allclose(inputs[j] * std + mean, ref[t - 16 : t], atol=1e-4)
        np.testing.assert_allclose(
            targets[j, :, 0] * std[0] + mean[0], ref[t : t + 4, 0], atol=1e-4
        )


def test_target_features_option(tmp_path):
    base = {"name": "macrodata", "data_dir": str(tmp_path), "seq_len": 8, "horizon": 2}
    spec = data.info(dict(base, target_features=4))
    assert spec["output_features"] == 4
    batch = next(
        iter(data.load(dict(base, target_features=4), split="train", batch_size=4, seed=0))
    )
    assert batch["targets"].shape == (4, 2, 4)
    with pytest.raises(ValueError, match="target_features must be at most the 4 series"):
        data.info(dict(base, target_features=5))
