"""Builders of the results table's rows, one per family of experiment (the adding and copy
tasks, MNIST-1D, the character LM, spoken digits, sequential MNIST) and the forecasters'
baselines: :mod:`experiments.results.rows` lists the rows they build.
"""

from __future__ import annotations

from experiments.results.row_types import (
    ADDING_BASELINE,
    ADDING_SOLVED,
    BITS,
    COPY_T,
    Baseline,
    Extra,
    Metric,
    Row,
    copy_baseline,
)


def _gradient_task(
    task: str, cell: str, T: int, tier: str, *, baseline: Baseline, diagnose: str, **fields
) -> Row:
    """A row of the adding or copy task (``experiments/<task>.py``) for one cell of
    experiments/gradient_variants.py at length ``T``, held to the memoryless ``baseline``."""
    # diagnose draws ||dL/dh_t|| of fresh models of each cell side by side, and of the
    # trained model (the vanishing gradient of the Elman RNN against its cures).
    flow = ("diagnostics/gradient_flow_cells.png", "diagnostics/gradient_flow.png")
    return Row(
        key=f"{task}-{cell}-T{T}",
        model=f"{cell} (experiments/gradient_variants.py)",
        config=f"experiments/{task}.py:{cell},T={T}",
        baselines=(baseline,),
        tier=tier,
        diagnose=diagnose,
        figures=("plots/loss.png",) + (flow if diagnose else ()),
        **fields,
    )


def adding(
    cell: str,
    T: int,
    tier: str,
    *,
    diagnose: str = "",
    note: str = "",
    overrides: tuple[str, ...] = (),
    control: bool = False,
) -> Row:
    return _gradient_task(
        "adding",
        cell,
        T,
        tier,
        experiment=f"Adding problem, T = {T}",
        dataset=f"adding (synthetic, {T} steps)",
        metric=Metric("validation MSE (best)", "summary:best.metrics.mse", "min"),
        baseline=Baseline(
            "trivial predictor (the mean, 1)",
            value=ADDING_BASELINE,
            source="Le et al. 2015",
            target=True,
        ),
        overrides=overrides,
        control=control,
        solved_below=ADDING_SOLVED,
        diagnose=diagnose,
        note=note,
    )


def copy_task(cell: str, tier: str, *, diagnose: str = "", note: str = "") -> Row:
    base = copy_baseline(COPY_T)
    return _gradient_task(
        "copy",
        cell,
        COPY_T,
        tier,
        experiment=f"Copy memory, T = {COPY_T}",
        dataset=f"copy (synthetic, {COPY_T + 20} steps, 8 symbols)",
        metric=Metric("validation cross-entropy, nats (best)", "summary:best.metrics.loss", "min"),
        baseline=Baseline(
            "memoryless predictor, 10 log 8 / (T + 20)",
            value=base,
            source="Arjovsky et al. 2016",
            target=True,
        ),
        solved_below=base / 10,
        diagnose=diagnose,
        note=note,
    )


def mnist1d(
    variant: str, model: str, baselines: tuple[Baseline, ...], tier: str, note: str = ""
) -> Row:
    return Row(
        key=f"mnist1d-{variant.replace('_', '-')}",
        experiment="MNIST-1D classification",
        dataset="mnist1d (4,000 train / 1,000 test, 40 steps)",
        model=model,
        config=f"experiments/mnist1d.py:{variant}",
        metric=Metric("test accuracy", "eval_test:accuracy", "max", percent=True),
        baselines=baselines,
        tier=tier,
        eval_split="test",
        figures=("plots/loss.png", "plots/accuracy.png"),
        eval_reads_config=variant.startswith("flax_"),
        note=note,
    )


def charlm(variant: str, what: str, model: str, baselines: tuple[Baseline, ...]) -> Row:
    return Row(
        key=f"charlm-{variant}",
        experiment=f"Character LM, one novel, {what}",
        dataset="austen: Pride and Prejudice, first 30 % (205 K chars) for training",
        model=model,
        config=f"experiments/charlm_regularized.py:{variant}",
        metric=Metric("test bits per character", "eval_test:bpc", "min", digits=3),
        baselines=baselines,
        eval_split="test",
        also_eval=("train",),
        extras=(
            Extra("training-split bpc", "eval_train:bpc"),
            Extra("validation bpc", "summary:best.metrics.bpc"),
            Extra("last training-batch bpc", "summary:final.train.loss", scale=BITS),
        ),
    )


GREYDANUS_GRU = Baseline("GRU", value=0.91, source="Greydanus 2020", target=True)


def forecast_baselines(arima: str, ets: str, ar: bool = False) -> tuple[Baseline, ...]:
    """Seasonal naive (the target) and statsforecast's automatic models, all fitted on the
    training split and rolled over the test windows in the same run (forecast_baselines)."""
    fixed = (Baseline("statsforecast ARIMA(9,0,0) (same run)", path="summary:report.ar.mase"),)
    return (
        Baseline(
            "seasonal naive (same run)", path="summary:report.seasonal_naive.mase", target=True
        ),
        Baseline(f"statsforecast {arima} (same run)", path="summary:report.arima.mase"),
        Baseline(f"statsforecast {ets} (same run)", path="summary:report.ets.mase"),
        Baseline("statsforecast AutoTheta (same run)", path="summary:report.theta.mase"),
    ) + (fixed if ar else ())


def forecast_extras(unit: str, ar: bool = False) -> tuple[Extra, ...]:
    """MAE and RMSE in original units of the model and of every baseline."""
    names = (
        ("model", "model"),
        ("seasonal naive", "seasonal_naive"),
        ("ARIMA", "arima"),
        ("ETS", "ets"),
        ("Theta", "theta"),
    ) + ((("AR(9)", "ar"),) if ar else ())
    return tuple(
        Extra(f"{label} test {err.upper()} {unit}", f"summary:report.{key}.{err}")
        for label, key in names
        for err in ("mae", "rmse")
    )


# -- spoken digits: espeak-ng audio + noise -> log-mel -> BiLSTM CTC (one block) -------------
SPOKEN_DIGITS_BOUND = 0.10  # test digit error rate (experiments/spoken_digits.py)
SPOKEN_DIGITS_PEERS = (
    ("gru", "BiGRU 2 x 96 (same size and budget)"),
    ("lnlstm", "layer-norm BiLSTM 2 x 96 (same size and budget)"),
    ("clean", "BiLSTM 2 x 96 trained without noise"),
)


def spoken_digits(variant: str, model: str, peers: tuple[Baseline, ...] = ()) -> Row:
    report = "summary:report"
    bound = Baseline(
        "the experiment's stated bound (experiments/spoken_digits.py)",
        value=SPOKEN_DIGITS_BOUND,
        target=True,
    )
    return Row(
        key="spoken-digits" + (f"-{variant}" if variant else ""),
        experiment="Speech recognition from audio: spoken digit strings",
        dataset="spoken_digits (espeak-ng, 1 to 7 digits, white/pink/babble noise at "
        "clean/20/10/5/0 dB; 2,000 / 200 / 400 utterances, test speakers unseen)",
        model=model,
        config="experiments/spoken_digits.py" + (f":{variant}" if variant else ""),
        metric=Metric("test digit error rate (best path)", f"{report}.greedy_error_rate", digits=4),
        baselines=(bound, *peers),
        tier="long",
        extras=(
            Extra("digit error rate, beam search (width 8)", f"{report}.beam_error_rate", digits=4),
            Extra("string error rate, best path", f"{report}.greedy_sequence_error_rate"),
            Extra("string error rate, beam search", f"{report}.beam_sequence_error_rate"),
        ),
        figures=("plots/loss.png",),
        note="the digit error rate is the word error rate of digit recognition (TIDIGITS); "
        "the string error rate counts utterances with any error"
        + ("; trained and validated on the clean audio" if variant == "clean" else ""),
    )


NO_DATA = (
    "The TFDS catalog data cannot be fetched on the development machine (no network); "
    "the `small` variant trains on `tfds.testing.mock_data` in tests/test_results.py, "
    "for plumbing only."
)


# Sequential MNIST: (cell, its name, published test accuracy in pixel order and permuted,
# source); each model is one layer of 100 units.
SEQMNIST_PUBLISHED = (
    ("irnn", "IRNN", (0.97, 0.82), "Le et al. 2015"),
    ("bn_lstm", "BN-LSTM", (0.990, 0.954), "Cooijmans et al. 2016"),
)


def seqmnist(cell: str, label: str, accuracy: float, source: str, *, permuted: bool) -> Row:
    """An accelerator row of sequential MNIST, one pixel per step (``permuted``: in a fixed
    random order of the pixels), held to the published test ``accuracy``."""
    return Row(
        key=f"{'pmnist' if permuted else 'seqmnist'}-{cell.replace('_', '-')}",
        experiment="Permuted sequential MNIST" if permuted else "Sequential MNIST (pixel by pixel)",
        dataset="TFDS mnist, 784 x 1" + (", fixed permutation" if permuted else ""),
        model=f"{label} 1 x 100",
        config=f"experiments/seqmnist.py:{cell}" + (",permuted" if permuted else ""),
        metric=Metric("test accuracy", "eval_test:accuracy", "max", percent=True),
        baselines=(Baseline(label, value=accuracy, source=source, target=True),),
        tier="accelerator",
        eval_split="test",
        note=NO_DATA,
    )
