"""Forecasting (task ``"forecast"``): the head's loss, errors in standardised and original
units, MASE, and a report that scores standard baselines (seasonal naive, statsforecast's
AutoARIMA, AutoETS and AutoTheta, a VAR on the covariates) on the same windows."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from rnnlab.models.forecaster import forecast_loss
from rnnlab.tasks import forecast_baselines
from rnnlab.tasks.common import Array, Sums, row_weights, weighted
from rnnlab.tasks.evaluation import as_dict, predictions, report_split, save_figure
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
    preds, truth = [], []
    for batch, out in predictions(run, state, split, ()):
        preds.append(out["outputs"][..., 0])
        truth.append(np.asarray(batch["targets"])[..., 0])
    model = mean + std * np.concatenate(preds).astype(np.float64)
    y = mean + std * np.concatenate(truth).astype(np.float64)
    cfg = {k: v for k, v in as_dict(run.config.get("baselines")).items() if k != "split"}
    base = forecast_baselines.forecast_baselines(run.config.data, info, split=split, **cfg)
    forecasts = base.pop("forecasts")
    if not np.allclose(forecasts["truth"], y, atol=1e-3 * std):
        raise RuntimeError(f"the {split} windows of the model and of the baselines differ")
    report = {"split": split, "model": forecast_baselines.errors(y, model, scale), **base}
    report["figure"] = _plot_forecasts(workdir, forecasts, model, info, report)
    return report


def _plot_forecasts(workdir: str, forecasts: dict, model: np.ndarray, info, base) -> str | None:
    """Three test windows (first, middle, last): the truth, the recurrent forecaster and the
    strongest baseline (lowest test MAE) in full, the other baselines thin and dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = base["strongest"]
    others = [k for k in forecasts if k not in ("truth", best)]
    n = len(model)
    picks = sorted({0, n // 2, n - 1})
    fig, axes = plt.subplots(len(picks), 1, figsize=(8, 2.6 * len(picks)), squeeze=False)
    steps = np.arange(1, model.shape[1] + 1)
    for ax, i in zip(axes[:, 0], picks, strict=True):
        ax.plot(steps, forecasts["truth"][i], "k-", lw=2, label="truth")
        ax.plot(steps, model[i], lw=1.8, label="recurrent forecaster")
        ax.plot(steps, forecasts[best][i], lw=1.8, label=f"strongest baseline: {best}")
        for name in others:
            ax.plot(steps, forecasts[name][i], "--", lw=0.8, alpha=0.7, label=name)
        ax.set_title(f"{info.get('name', 'series')}: test window {i}")
        ax.set_xlabel("steps ahead")
    axes[0, 0].legend(fontsize=7)
    mae = ", ".join(
        f"{k} {base[k]['mae']:.3g}"
        for k in sorted(forecasts, key=lambda k: base.get(k, {}).get("mae", 0))
        if k in base
    )
    fig.suptitle(f"test MAE: {mae}", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, workdir, "forecasts.png")


register(Task("forecast", forecast_metrics, forecast_derive, report=forecast_report))
