"""The rows of the results table: what each one runs, what it reads back, what it is held to.

A :class:`Row` names an experiment config and variant, the metric read from the run's files
(``summary.json``, or ``eval_<split>.json`` when the best checkpoint is scored on a held-out
split), and the numbers it is compared with: published results (paper, year) or peer
baselines computed in the same run. ``tier`` says who reruns it:

- ``"make"``: CPU rows that ``make results`` reruns (together well under an hour on 2 cores);
- ``"long"``: CPU rows too long for that hour (``python -m experiments.results --tier long``);
- ``"accelerator"``: configs meant for a GPU/TPU, not run on the development machine; the
  table keeps whatever figures ``experiments/results/records.json`` records for them, with the
  hardware named, or says why there are none.

Metric and baseline paths are ``"<file>:<dotted.key>"`` with file ``summary`` or
``eval_<split>``, or ``"row:<key>"`` for another row's metric (a peer trained with the same
budget in the same invocation).
"""

from __future__ import annotations

import math

from experiments.results.row_builders import (
    GREYDANUS_GRU,
    NO_DATA,
    SEQMNIST_PUBLISHED,
    SPOKEN_DIGITS_PEERS,
    adding,
    charlm,
    copy_task,
    forecast_baselines,
    forecast_extras,
    mnist1d,
    seqmnist,
    spoken_digits,
)
from experiments.results.row_types import (
    Baseline,
    Extra,
    Metric,
    Row,
)
from experiments.results.rows_families import FAMILY_ROWS

ROWS: tuple[Row, ...] = (
    # Gradients: vanishing gradients and their remedies.
    adding(
        "elman",
        200,
        "make",
        diagnose="elman,lstm,gru",
        control=True,
        note="control: the plain tanh RNN is expected to stay at the baseline (its gradient "
        "vanishes over the first steps, see the gradient-flow figures)",
    ),
    adding("lstm", 200, "make"),
    adding("gru", 200, "make"),
    # The two non-gated remedies, each with the gradient-flow figures of its trained model
    # and of fresh models beside the Elman RNN it is meant to cure.
    adding("indrnn", 200, "long", diagnose="elman,indrnn,orthogonal"),
    adding(
        "orthogonal",
        200,
        "long",
        diagnose="elman,orthogonal,indrnn",
        note="norm-preserving recurrences suit the copy task better than the adding task, "
        "which wants an integrator near the identity (Henaff et al. 2016): a slow or missed "
        "row is the published expectation (docs/gradients.md)",
    ),
    # The LRU stack costs three times an LSTM's step; it solved T = 100 within 1,000 steps.
    adding("lru", 200, "long", overrides=("train.steps=2500",)),
    # At T = 400 a step costs twice as much: shorter budgets keep each row near 10 minutes
    # of CPU (at T = 200 the GRU is solved after 500 steps, the LSTM after about 2,000).
    adding("lstm", 400, "long", overrides=("train.steps=4000",)),
    adding("gru", 400, "long", overrides=("train.steps=3000",)),
    copy_task("orthogonal", "make"),
    copy_task(
        "lstm",
        "long",
        diagnose="lstm,orthogonal,elman",
        note="the control for the orthogonal row: the LSTM sits at the memoryless baseline "
        "for most of training in Arjovsky et al. 2016 (docs/gradients.md)",
    ),
    # MNIST-1D against the paper and against Flax's stock cells with the same budget.
    mnist1d("gru", "rnnlab GRU, 2 x 128", (GREYDANUS_GRU,), "make"),
    mnist1d("lstm", "rnnlab LSTM, 2 x 128", (GREYDANUS_GRU,), "make"),
    mnist1d(
        "flax_gru",
        "flax nnx.GRUCell, 2 x 128 (same budget)",
        (GREYDANUS_GRU, Baseline("rnnlab GRU (same budget)", path="row:mnist1d-gru")),
        "make",
        note="one run of each cell: with the validation split stratified by class (399 "
        "signals) Flax's GRU scores below rnnlab's (97.9 % against 98.4 %); with the earlier "
        "split, the last 400 signals of the training file, it scored above it (98.9 % against "
        "98.7 %), so this row does not order the two cells",
    ),
    Row(
        key="japanese-vowels",
        experiment="JapaneseVowels speaker classification",
        dataset="UEA JapaneseVowels (270 train / 370 test, 12 channels)",
        model="bidirectional LSTM, 2 x 64, mean pooling",
        config="experiments/japanese_vowels.py",
        metric=Metric("test accuracy", "eval_test:accuracy", "max", percent=True),
        baselines=(
            Baseline("original method", value=0.941, source="Kudo et al. 1999", target=True),
        ),
        eval_split="test",
        eval_checkpoint="latest",
        figures=("plots/loss.png",),
        note="fixed budget, last checkpoint scored, as the archive's published results are: "
        "the validation split, stratified by speaker, holds one utterance of each of the 9 "
        "speakers (data.validation_fraction = 0.01), so 261 utterances train",
    ),
    # Character LM with and without the regularisation recipe.
    charlm(
        "plain",
        "no regularisation",
        "LSTM 1 x 256, plain",
        (Baseline("uniform over the 80-token vocabulary", value=math.log2(80)),),
    ),
    charlm(
        "recipe",
        "AWD-LSTM recipe",
        "LSTM 1 x 256, locked dropout + weight drop + AR/TAR",
        (Baseline("same model unregularised (same run)", path="row:charlm-plain", target=True),),
    ),
    # Forecasting against classical baselines fitted in the same run.
    Row(
        key="forecast-co2",
        experiment="Forecasting co2 (26 weeks ahead)",
        dataset="statsmodels co2 (weekly, Mauna Loa)",
        model="LSTM 64, instance-normalised windows, AR(104) highway, quantile head",
        config="experiments/forecast.py:co2",
        metric=Metric("test MASE", "summary:report.model.mase", "min", digits=3),
        baselines=forecast_baselines("AutoARIMA on 4 Fourier pairs", "MSTL + AutoETS"),
        extras=forecast_extras("(ppm)"),
        figures=("plots/loss.png", "plots/forecasts.png"),
        note="the strongest standard baseline, STL + AutoETS (R's stlf; AutoETS, like R's ets, "
        "drops seasons longer than 24 steps), is about level with the model: the 2026-12-07 "
        "run of the model is ahead of it (test MASE 0.362 against 0.373, MAE 0.445 against "
        "0.459 ppm), the 2026-12-02 run, same config at an earlier commit, was just behind it "
        "(0.376, MAE 0.462); the model beats seasonal naive, AutoARIMA and AutoTheta by far; "
        "each baseline's chosen form is in the run's summary.json",
    ),
    Row(
        key="forecast-sunspots",
        experiment="Forecasting sunspots (11 years ahead)",
        dataset="statsmodels sunspots (yearly)",
        model="LSTM 16, instance-normalised windows, AR(11) highway, quantile head",
        config="experiments/forecast.py:sunspots",
        metric=Metric("test MASE", "summary:report.model.mase", "min", digits=3),
        baselines=forecast_baselines("AutoARIMA", "AutoETS", ar=True),
        extras=forecast_extras("(sunspot number)", ar=True),
        note="the automatic searches run on the 11-year cycle; the fixed AR(9), the textbook "
        "model of this series, is stronger than all of them and than the model (test MASE "
        "1.104 against 1.162)",
        figures=("plots/loss.png", "plots/forecasts.png"),
    ),
    Row(
        key="forecast-macrodata",
        experiment="Forecasting US unemployment with covariates (4 quarters ahead)",
        dataset="statsmodels macrodata (quarterly US, 1959-2009): unemployment, inflation, "
        "T-bill rate, real GDP growth",
        model="LSTM 16 on the target and 3 past covariates, instance-normalised windows, "
        "AR(4) highway, quantile head",
        config="experiments/forecast.py:macrodata",
        metric=Metric("test MASE", "summary:report.model.mase", "min", digits=3),
        baselines=tuple(
            Baseline(f"{label} (same run)", path=f"summary:report.{key}.mase", target=True)
            for label, key in (
                ("naive, last value", "seasonal_naive"),
                ("statsforecast AutoARIMA", "arima"),
                ("statsforecast AutoETS", "ets"),
                ("statsforecast AutoTheta", "theta"),
                ("statsmodels VAR on the 4 series, lag order by AIC", "var"),
            )
        ),
        extras=tuple(
            Extra(f"{label} test {err.upper()} (percentage points)", f"summary:report.{key}.{err}")
            for label, key in (
                ("model", "model"),
                ("naive", "seasonal_naive"),
                ("ARIMA", "arima"),
                ("ETS", "ets"),
                ("Theta", "theta"),
                ("VAR", "var"),
            )
            for err in ("mae", "rmse")
        ),
        figures=("plots/loss.png", "plots/forecasts.png"),
        note="the strongest baseline, AutoARIMA on unemployment alone, beats the model (test "
        "MASE 1.759 against 1.906; MAE 0.436 against 0.472 points), and so do the VAR on the "
        "same covariates (1.803) and AutoETS (1.836); the model beats naive and AutoTheta. 37 "
        "test windows, ending in the 2008-09 recession, which no model foresees",
    ),
    # Task models: translation, speech-style recognition, video (the task-models issue).
    Row(
        key="translation-reverse",
        experiment="Translation with attention (reversal task)",
        dataset="reverse (synthetic: 1 to 16 of 28 symbols, reversed)",
        model="BiLSTM 128 encoder, LSTM 128 decoder, Bahdanau attention, greedy",
        config="experiments/translation.py",
        metric=Metric("test exact match", "summary:report.test.exact_match", "max", percent=True),
        baselines=(
            Baseline(
                "the experiment's stated bound (experiments/translation.py)",
                value=0.99,
                target=True,
            ),
        ),
        tier="long",
        extras=(
            Extra("test BLEU", "summary:report.test.bleu", digits=1),
            Extra("test token accuracy", "summary:report.test.token_accuracy"),
        ),
        figures=("plots/loss.png",),
        note="no published number exists for this synthetic task: the bound is the "
        "experiment's own; decoded test examples are in the run's summary.json",
    ),
    Row(
        key="ctc-digits",
        experiment="CTC recognition of digit strings",
        dataset="mnist1d_digits (1 to 5 MNIST-1D signals with gaps, no alignments)",
        model="BiLSTM 2 x 128, CTC (optax.ctc_loss), best-path decoding",
        config="experiments/ctc_digits.py",
        metric=Metric("test label error rate", "summary:report.greedy_error_rate", "min", digits=3),
        baselines=(
            Baseline(
                "the experiment's stated bound (experiments/ctc_digits.py)",
                value=0.15,
                target=True,
            ),
            Baseline(
                "per-digit error of a GRU on isolated, pre-segmented digits",
                value=0.09,
                source="Greydanus 2020",
            ),
        ),
        tier="long",
        overrides=("train.steps=1500",),
        extras=(Extra("beam search (width 8) error rate", "summary:report.beam_error_rate"),),
        figures=("plots/loss.png",),
        note="1,500 of the config's 4,000 steps (the cosine schedule follows train.steps): "
        "the error rate had fallen to 0.044 on validation by then",
    ),
    Row(
        key="video-moving-digits",
        experiment="Next-frame prediction (10 frames ahead)",
        dataset="moving_digits (scikit-learn 8x8 digits on a 24x24 canvas, 2 per sequence)",
        model="ConvLSTM encoder-forecaster, 2 x 16 channels (Shi et al. 2015)",
        config="experiments/video.py",
        metric=Metric("test MSE per pixel", "summary:report.test.mse", "min", digits=4),
        baselines=(
            Baseline(
                "repeating the last observed frame (same run)",
                path="summary:report.test.copy_last_mse",
                target=True,
            ),
        ),
        tier="long",
        extras=(Extra("test SSIM", "summary:report.test.ssim"),),
        figures=("plots/loss.png", "plots/frames.png"),
        note="a CPU-sized model, far from converged: blurred blobs in the right place; the "
        "`large` variant is the configuration for an accelerator",
    ),
    # Speech recognition from audio (spoken digit strings): the peers first, then the row
    # that compares with them (its "row:" baselines read their metrics).
    *(spoken_digits(v, model) for v, model in SPOKEN_DIGITS_PEERS),
    spoken_digits(
        "",
        "BiLSTM 2 x 96, CTC, best path (beam search in the notes)",
        peers=tuple(
            Baseline(f"{model} (same run)", path=f"row:spoken-digits-{v}")
            for v, model in SPOKEN_DIGITS_PEERS
        ),
    ),
    # Accelerator configs with published targets.
    *(
        seqmnist(cell, label, accuracy, source, permuted=permuted)
        for cell, label, accuracies, source in SEQMNIST_PUBLISHED
        for permuted, accuracy in zip((False, True), accuracies, strict=True)
    ),
    Row(
        key="wordlm-medium",
        experiment="Word-level LM, Zaremba et al. medium",
        dataset="TFDS lm1b (PTB is not in the TFDS catalog)",
        model="LSTM 2 x 650, dropout 0.5",
        config="experiments/wordlm.py:medium",
        metric=Metric("test perplexity", "eval_test:perplexity", "min", digits=1),
        baselines=(
            Baseline(
                "medium LSTM, PTB test", value=82.7, source="Zaremba et al. 2014", target=True
            ),
        ),
        tier="accelerator",
        eval_split="test",
        note=NO_DATA + " The published 82.7 is Penn Treebank perplexity (10 K words); rnnlab reads "
        "word-level text from TFDS lm1b, whose perplexities are not comparable with it.",
    ),
)


# The recurrent families' rows (character LM at equal parameters, selective copying) live in
# their own module.
ROWS += FAMILY_ROWS


def by_key() -> dict[str, Row]:
    """``{row.key: row}``; keys are unique."""
    out: dict[str, Row] = {}
    for row in ROWS:
        if row.key in out:
            raise ValueError(f"duplicate row key {row.key!r}")
        out[row.key] = row
    return out
