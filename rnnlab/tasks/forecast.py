"""Forecasting (task ``"forecast"``): the head's loss, errors in standardised and original
units, MASE, and a report that scores standard baselines (seasonal naive, statsforecast's
AutoARIMA, AutoETS and AutoTheta, a VAR on the covariates) on the same windows."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from rnnlab.models.forecaster import forecast_loss
from rnnlab.tasks import forecast_baselines
from rnnlab.tasks.common import Array, Sums, row_weights, weighted
from rnnlab.tasks.evaluation import as_dict, option, predictions, report_split, save_figure
from rnnlab.tasks.registry import Task, register


def forecast_metrics(outputs: Array, aux: Mapping[str, Any], batch: Mapping[str, Array]) -> Sums:
    """The head's loss (MSE, Gaussian NLL or pinball), and in standardised units per window:
    ``mse``, ``mae`` (per series ``mae_<j>`` when there are several), and ``naive_mae`` of the
    seasonal-naive forecast in ``aux["seasonal_naive"]`` when the model provides it."""
    y = jnp.asarray(batch["targets"], jnp.float32).reshape(outputs.shape)
    rows = row_weights(batch, y.shape[0])
    head = "gaussian" if "scale" in aux else "quantile" if "quantiles" in aux else "point"
    err = outputs.astype(jnp.float32) - y
    sums = {
        "loss": weighted(forecast_loss(outputs, aux, y, head), rows),
        "mse": weighted(jnp.mean(err**2, axis=(1, 2)), rows),
        "mae": weighted(jnp.mean(jnp.abs(err), axis=(1, 2)), rows),
    }
    naive = aux.get("seasonal_naive")
    if naive is not None:
        sums["naive_mae"] = weighted(jnp.mean(jnp.abs(naive - y), axis=(1, 2)), rows)
    if y.shape[-1] > 1:
        for j in range(y.shape[-1]):
            sums[f"mae_{j}"] = weighted(jnp.mean(jnp.abs(err[..., j]), axis=1), rows)
            if naive is not None:
                per = jnp.mean(jnp.abs(naive[..., j] - y[..., j]), axis=1)
                sums[f"naive_mae_{j}"] = weighted(per, rows)
    return sums


def forecast_derive(means: Mapping[str, float], info: Mapping[str, Any]) -> dict[str, float]:
    """Original-unit ``mae_orig`` and ``rmse_orig`` (one series), and ``mase``: the MAE over
    ``info["mase_scale"]``, the training series' in-sample seasonal-naive MAE (Hyndman &
    Koehler 2006); ``naive_mase`` is the seasonal-naive forecast's own, ``relative_mase`` the
    ratio (below 1 beats seasonal naive)."""
    # Targets are the first output_features series; the rest are covariates.
    std = [float(s) for s in info.get("std", [1.0])]
    k = int(info.get("output_features") or len(std))
    std = std[:k]
    scale = info.get("mase_scale")
    out: dict[str, float] = {}
    if len(std) == 1:
        out["mae_orig"] = means["mae"] * std[0]
        out["rmse_orig"] = math.sqrt(max(means["mse"], 0.0)) * std[0]
    if scale is None:
        return out
    scale = [float(s) for s in scale][:k]

    def mase_of(prefix: str) -> float | None:
        if len(std) == 1:
            value = means.get(prefix)
            return None if value is None else value * std[0] / scale[0]
        per = [means.get(f"{prefix}_{j}") for j in range(len(std))]
        if any(v is None for v in per):
            return None
        return sum(v * s / c for v, s, c in zip(per, std, scale, strict=True)) / len(std)

    mase = mase_of("mae")
    if mase is not None:
        out["mase"] = mase
    naive = mase_of("naive_mae")
    if naive is not None:
        out["naive_mase"] = naive
        if mase is not None and naive > 0:
            out["relative_mase"] = mase / naive
    return out


def forecast_report(run, state, workdir: str) -> dict[str, Any]:
    """Model and baseline errors (MAE, RMSE, MASE) on the report split, the baselines of
    :mod:`rnnlab.tasks.forecast_baselines` (statsforecast's automatic models fitted on the
    training split, rolled over the same windows), and ``plots/forecasts.png``."""
    split = report_split(run)
    info = run.info
    mean, std = float(info["mean"][0]), float(info["std"][0])
    scale = float(info["mase_scale"][0])
    preds, truth, history, bands = [], [], [], []
    keys = ("quantiles",) if option(run.config, "model", "head", "point") == "quantile" else ()
    for batch, out in predictions(run, state, split, keys):
        preds.append(out["outputs"][..., 0])
        truth.append(np.asarray(batch["targets"])[..., 0])
        history.append(np.asarray(batch["inputs"])[..., 0])
        if keys:
            bands.append(out["quantiles"][..., 0, :])  # [B, H, levels], target feature 0
    model = mean + std * np.concatenate(preds).astype(np.float64)
    y = mean + std * np.concatenate(truth).astype(np.float64)
    seen = {
        "history": mean + std * np.concatenate(history).astype(np.float64),
        "band": mean + std * np.concatenate(bands).astype(np.float64) if bands else None,
        "levels": tuple(option(run.config, "model", "quantiles", ())),
    }
    cfg = {k: v for k, v in as_dict(run.config.get("baselines")).items() if k != "split"}
    base = forecast_baselines.forecast_baselines(run.config.data, info, split=split, **cfg)
    forecasts = base.pop("forecasts")
    if not np.allclose(forecasts["truth"], y, atol=1e-3 * std):
        raise RuntimeError(f"the {split} windows of the model and of the baselines differ")
    report = {"split": split, "model": forecast_baselines.errors(y, model, scale), **base}
    what = series_name(run.config.data, info)
    report["figure"] = _plot_forecasts(workdir, forecasts, model, seen, what, report)
    return report


def series_name(data_cfg: Any, info: Mapping[str, Any]) -> str:
    """The plotted series: the dataset, and for a file its name and target column."""
    name = str(data_cfg.get("name", "series"))
    columns = list(info.get("columns") or [])
    path = data_cfg.get("path") if name == "csv_series" else None
    if path:
        column = f", column {columns[0]!r}" if columns else ""
        return f"{Path(str(path)).name}{column}"
    return f"{name} ({columns[0]})" if columns else name


def _plot_forecasts(workdir, forecasts, model, seen, what: str, base) -> str | None:
    """Three windows of the report split (first, middle, last): the lookback history, the
    truth, the recurrent forecaster with its quantile band (where its head has one) and
    the strongest baseline (lowest MAE) in full, the other baselines thin and dashed; the
    legend below the panels, every model's MAE (the forecaster's too) in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    split = base["split"]
    best = base["strongest"]
    others = [k for k in forecasts if k not in ("truth", best)]
    n = len(model)
    picks = sorted({0, n // 2, n - 1})
    fig, axes = plt.subplots(len(picks), 1, figsize=(8, 2.4 * len(picks) + 0.8), squeeze=False)
    steps = np.arange(1, model.shape[1] + 1)
    lookback = np.arange(-seen["history"].shape[1] + 1, 1)
    levels = seen["levels"]
    for ax, i in zip(axes[:, 0], picks, strict=True):
        ax.plot(lookback, seen["history"][i], color="0.5", lw=1.2, label="history (input)")
        ax.plot(steps, forecasts["truth"][i], "k-", lw=2, label="truth")
        if seen["band"] is not None and len(levels) >= 2:
            ax.fill_between(
                steps, seen["band"][i, :, 0], seen["band"][i, :, -1], alpha=0.25,
                label=f"forecaster {levels[0]:.0%}-{levels[-1]:.0%} quantiles",
            )  # fmt: skip
        ax.plot(steps, model[i], lw=1.8, label="recurrent forecaster")
        ax.plot(steps, forecasts[best][i], lw=1.8, label=f"strongest baseline: {best}")
        for name in others:
            ax.plot(steps, forecasts[name][i], "--", lw=0.8, alpha=0.7, label=name)
        ax.axvline(0.5, color="0.8", lw=0.8)
        ax.set_title(f"{split} window {i}", fontsize=9)
        ax.set_ylabel(f"{what}\n(series units)", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1, 0].set_xlabel("steps ahead (0 and below: the lookback the model reads)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    scores = {"forecaster": base["model"]["mae"]}
    scores.update({k: base[k]["mae"] for k in forecasts if k in base and "mae" in base[k]})
    mae = ", ".join(f"{k} {v:.3g}" for k, v in sorted(scores.items(), key=lambda kv: kv[1]))
    fig.suptitle(f"{split} MAE: {mae}", fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return save_figure(fig, workdir, "forecasts.png")


register(Task("forecast", forecast_metrics, forecast_derive, report=forecast_report))
