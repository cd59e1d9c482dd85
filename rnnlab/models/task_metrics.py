"""Losses and metrics of the task models, in the training engine's form.

Each ``*_metrics(outputs, aux, batch)`` is jittable and returns weighted sums
``{name: (sum, weight)}`` with the minimised quantity under ``"loss"``; the engine averages
any number of batches as ``sum(sums) / sum(weights)``, which is exact with zero-weight
padding rows. Each ``*_derive(means, info)`` computes metrics that are functions of those
means on the host. ``rnnlab.train.tasks`` registers them per data task.

Row weights: ``batch["weights"]`` is ``[B]`` or, for token targets, ``[B, T]``; a sequence's
weight is then its first position's (0 for padding rows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from rnnlab.models.ctc import ctc_greedy_decode, ctc_loss
from rnnlab.models.forecaster import forecast_loss
from rnnlab.models.metrics import (
    bleu_from_stats,
    bleu_stats,
    confusion_matrix,
    edit_distances,
    exact_match,
    ssim,
)

Array = jax.Array
Sums = dict[str, tuple[Array, Array]]


def row_weights(batch: Mapping[str, Array], batch_size: int) -> Array:
    """Per-sequence weights ``[B]`` (ones when the batch has none)."""
    w = batch.get("weights")
    if w is None:
        return jnp.ones((batch_size,), jnp.float32)
    w = jnp.asarray(w, jnp.float32)
    return w.reshape(batch_size, -1)[:, 0]


def _weighted(values: Array, w: Array) -> tuple[Array, Array]:
    return jnp.sum(values.astype(jnp.float32) * w), jnp.sum(w)


# -- translation ----------------------------------------------------------------------------
def seq2seq_metrics(outputs: Array, aux: Mapping[str, Any], batch: Mapping[str, Array]) -> Sums:
    """Token cross-entropy (``loss``) and ``token_accuracy`` of the teacher-forced logits;
    with decoded ``aux["predictions"]`` (evaluation) also ``exact_match`` and the BLEU
    statistics (``bleu_*``) of the decoded sequences, ``</s>`` excluded."""
    targets = batch["targets"].astype(jnp.int32)
    w = batch.get("weights")
    w = jnp.ones(targets.shape, jnp.float32) if w is None else jnp.asarray(w, jnp.float32)
    w = jnp.broadcast_to(w.reshape(w.shape + (1,) * (targets.ndim - w.ndim)), targets.shape)
    ce = optax.softmax_cross_entropy_with_integer_labels(outputs.astype(jnp.float32), targets)
    correct = jnp.argmax(outputs, axis=-1) == targets
    sums = {"loss": _weighted(ce, w), "token_accuracy": _weighted(correct, w)}
    if "predictions" in aux:
        rows = row_weights(batch, targets.shape[0])
        lengths = batch["target_lengths"].astype(jnp.int32)
        pred, pred_len = aux["predictions"], aux["prediction_lengths"].astype(jnp.int32)
        sums["exact_match"] = _weighted(exact_match(pred, targets, lengths), rows)
        ends = jnp.take_along_axis(pred, jnp.maximum(pred_len - 1, 0)[:, None], axis=1)[:, 0]
        hyp_len = pred_len - ((ends == aux["eos_id"]) & (pred_len > 0)).astype(jnp.int32)
        stats = bleu_stats(pred, hyp_len, targets, jnp.maximum(lengths - 1, 0))
        for name, value in stats.items():
            sums[f"bleu_{name}"] = (jnp.sum(value.astype(jnp.float32) * rows), jnp.sum(rows))
    return sums


def seq2seq_derive(means: Mapping[str, float], info: Mapping[str, Any]) -> dict[str, float]:
    """``bleu`` from the BLEU statistics and ``perplexity`` from the loss."""
    del info
    out = {"perplexity": math.exp(min(means["loss"], 700.0))}
    if "bleu_hyp_len" in means:
        stats = {k[len("bleu_") :]: v for k, v in means.items() if k.startswith("bleu_")}
        out["bleu"] = bleu_from_stats(stats)
    return out


# -- speech recognition (CTC) ---------------------------------------------------------------
def ctc_metrics(outputs: Array, aux: Mapping[str, Any], batch: Mapping[str, Array]) -> Sums:
    """CTC negative log-likelihood per utterance (``loss``), the best-path ``error_rate``
    (edit distance over reference labels: CER for characters, TER for tokens) and
    ``sequence_accuracy``."""
    labels, label_len = batch["targets"], batch["target_lengths"].astype(jnp.int32)
    rows = row_weights(batch, labels.shape[0])
    lengths = aux["logit_lengths"]
    blank = int(aux.get("blank_id", 0))
    nll = ctc_loss(outputs, lengths, labels, label_len, blank_id=blank)
    hyp, hyp_len = ctc_greedy_decode(outputs, lengths, blank_id=blank)
    edits = edit_distances(hyp, hyp_len, labels, label_len)
    return {
        "loss": _weighted(nll, rows),
        "error_rate": (
            jnp.sum(edits.astype(jnp.float32) * rows),
            jnp.sum(label_len.astype(jnp.float32) * rows),
        ),
        "sequence_accuracy": _weighted(edits == 0, rows),
    }


# -- forecasting ----------------------------------------------------------------------------
def forecast_metrics(outputs: Array, aux: Mapping[str, Any], batch: Mapping[str, Array]) -> Sums:
    """The head's loss (MSE, Gaussian NLL or pinball), and in standardised units per window:
    ``mse``, ``mae`` (per series ``mae_<j>`` when there are several), and ``naive_mae`` of the
    seasonal-naive forecast in ``aux["seasonal_naive"]`` when the model provides it."""
    y = jnp.asarray(batch["targets"], jnp.float32).reshape(outputs.shape)
    rows = row_weights(batch, y.shape[0])
    head = "gaussian" if "scale" in aux else "quantile" if "quantiles" in aux else "point"
    err = outputs.astype(jnp.float32) - y
    sums = {
        "loss": _weighted(forecast_loss(outputs, aux, y, head), rows),
        "mse": _weighted(jnp.mean(err**2, axis=(1, 2)), rows),
        "mae": _weighted(jnp.mean(jnp.abs(err), axis=(1, 2)), rows),
    }
    naive = aux.get("seasonal_naive")
    if naive is not None:
        sums["naive_mae"] = _weighted(jnp.mean(jnp.abs(naive - y), axis=(1, 2)), rows)
    if y.shape[-1] > 1:
        for j in range(y.shape[-1]):
            sums[f"mae_{j}"] = _weighted(jnp.mean(jnp.abs(err[..., j]), axis=1), rows)
            if naive is not None:
                per = jnp.mean(jnp.abs(naive[..., j] - y[..., j]), axis=1)
                sums[f"naive_mae_{j}"] = _weighted(per, rows)
    return sums


def forecast_derive(means: Mapping[str, float], info: Mapping[str, Any]) -> dict[str, float]:
    """Original-unit ``mae_orig`` and ``rmse_orig`` (one series), and ``mase``: the MAE over
    ``info["mase_scale"]``, the training series' in-sample seasonal-naive MAE (Hyndman &
    Koehler 2006); ``naive_mase`` is the seasonal-naive forecast's own, ``relative_mase`` the
    ratio (below 1 beats seasonal naive)."""
    std = [float(s) for s in info.get("std", [1.0])]
    scale = info.get("mase_scale")
    out: dict[str, float] = {}
    if len(std) == 1:
        out["mae_orig"] = means["mae"] * std[0]
        out["rmse_orig"] = math.sqrt(max(means["mse"], 0.0)) * std[0]
    if scale is None:
        return out
    scale = [float(s) for s in scale]

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


# -- video ----------------------------------------------------------------------------------
def video_metrics(outputs: Array, aux: Mapping[str, Any], batch: Mapping[str, Array]) -> Sums:
    """The training loss (``loss``: per-pixel binary cross-entropy of ``aux["bce_logits"]``
    when the model provides them, else the MSE), the mean squared error per pixel (``mse``),
    at the first and last predicted frame (``mse_t<k>``), SSIM averaged over predicted
    frames (``ssim``, Wang et al. 2004), and the MSE of repeating the last observed frame
    (``copy_last_mse``), the baseline."""
    y = jnp.asarray(batch["targets"], jnp.float32)
    last = jnp.asarray(batch["inputs"], jnp.float32)[:, -1:]
    rows = row_weights(batch, y.shape[0])
    per_frame = jnp.mean(jnp.square(outputs.astype(jnp.float32) - y), axis=(2, 3, 4))  # [B, T]
    window = min(7, y.shape[2], y.shape[3])
    mse = jnp.mean(per_frame, axis=1)
    if "bce_logits" in aux:
        bce = optax.sigmoid_binary_cross_entropy(aux["bce_logits"].astype(jnp.float32), y)
        loss = jnp.mean(bce.reshape(bce.shape[0], -1), axis=1)
    else:
        loss = mse
    sums = {
        "loss": _weighted(loss, rows),
        "mse": _weighted(mse, rows),
        "ssim": _weighted(jnp.mean(ssim(outputs, y, window_size=window), axis=1), rows),
    }
    copy = jnp.mean(jnp.square(last - y), axis=(1, 2, 3, 4))
    sums["copy_last_mse"] = _weighted(copy, rows)
    for k in (0, per_frame.shape[1] - 1):
        sums[f"mse_t{k + 1}"] = _weighted(per_frame[:, k], rows)
    return sums


# -- classification extras ------------------------------------------------------------------
def per_class_sums(logits: Array, labels: Array, rows: Array) -> Sums:
    """Per-class true positives, predictions and support as sums over the examples
    (``class_tp_<c>``, ``class_pred_<c>``, ``class_true_<c>``), for :func:`per_class_derive`."""
    num_classes = logits.shape[-1]
    conf = confusion_matrix(labels, jnp.argmax(logits, axis=-1), num_classes, rows)
    total = jnp.sum(rows)
    tp, pred, true = jnp.diagonal(conf), jnp.sum(conf, axis=0), jnp.sum(conf, axis=1)
    out = {}
    for c in range(num_classes):
        out[f"class_tp_{c}"] = (tp[c], total)
        out[f"class_pred_{c}"] = (pred[c], total)
        out[f"class_true_{c}"] = (true[c], total)
    return out


def per_class_derive(means: Mapping[str, float]) -> dict[str, float]:
    """Per-class ``f1_<c>`` and the macro precision, recall and F1 (a class never predicted
    has precision 0, one never present recall 0)."""
    classes = sorted(int(k.split("_")[-1]) for k in means if k.startswith("class_tp_"))
    ratio = lambda a, b: a / b if b > 0 else 0.0
    out, ps, rs, fs = {}, [], [], []
    for c in classes:
        tp = means[f"class_tp_{c}"]
        p = ratio(tp, means[f"class_pred_{c}"])
        r = ratio(tp, means[f"class_true_{c}"])
        f = ratio(2 * p * r, p + r)
        out[f"f1_{c}"] = f
        ps.append(p)
        rs.append(r)
        fs.append(f)
    if classes:
        out["macro_precision"] = sum(ps) / len(ps)
        out["macro_recall"] = sum(rs) / len(rs)
        out["macro_f1"] = sum(fs) / len(fs)
    return out
