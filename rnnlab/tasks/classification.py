"""Sequence classification (task ``"classification"``): cross-entropy and accuracy, the error
rate, per-class sums for precision/recall/F1, and a report with the confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from rnnlab.tasks.common import Array, Sums, token_cross_entropy, weights
from rnnlab.tasks.evaluation import predictions, report_split
from rnnlab.tasks.registry import Task, register
from rnnlab.tasks.scores import confusion_matrix, per_class_metrics


def classification_metrics(outputs, aux, batch) -> Sums:
    """Cross-entropy (``loss``) and ``accuracy`` of the class logits ``[B, C]``."""
    del aux
    labels = batch["labels"]
    return token_cross_entropy(outputs, labels, weights(batch, labels.shape))


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


def classification_report(run, state, workdir: str) -> dict[str, Any]:
    """Accuracy, per-class precision, recall and F1, their macro averages and the confusion
    matrix (rows: true class, columns: predicted) on the report split."""
    del workdir
    split = report_split(run)
    num_classes = int(run.info["num_classes"])
    conf = np.zeros((num_classes, num_classes), np.int64)
    for batch, out in predictions(run, state, split, ()):
        labels = np.asarray(batch["labels"]).reshape(-1)
        pred = np.argmax(out["outputs"], axis=-1).reshape(-1)
        np.add.at(conf, (labels, pred), 1)
    per = per_class_metrics(jnp.asarray(conf, jnp.float32))
    names = run.info.get("class_names") or [str(c) for c in range(num_classes)]
    return {
        "split": split,
        "examples": int(conf.sum()),
        "accuracy": float(np.trace(conf) / max(conf.sum(), 1)),
        "classes": list(names),
        **{k: np.asarray(v).tolist() for k, v in per.items()},
        "confusion": conf.tolist(),
    }


register(
    Task(
        "classification",
        classification_metrics,
        lambda means, info: {"error": 1.0 - means["accuracy"]},
        best_metric="accuracy",
        best_mode="max",
        report=classification_report,
    )
)
