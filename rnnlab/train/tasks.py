"""Losses and metrics per data task (the ``task`` field of ``rnnlab.data.info``).

A task turns ``(outputs, aux, batch)`` into weighted sums: ``{name: (sum, weight)}``. The
mean of a metric over any number of batches (and devices) is then ``sum(sums) /
sum(weights)``, exact for padded final batches whose ``weights`` are zero. ``"loss"`` is
the quantity minimised. ``derive`` adds metrics that are functions of the means
(perplexity = exp(loss), bits = loss / ln 2).

Other modules add tasks with :func:`register` (translation, CTC, forecasting, ...).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
Sums = dict[str, tuple[Array, Array]]


def _nothing_derived(means: dict[str, float], info: Mapping[str, Any]) -> dict[str, float]:
    del means, info
    return {}


@dataclasses.dataclass(frozen=True)
class Task:
    """How to score a model on one kind of data.

    Attributes:
      name: the data task (``"lm"``, ``"classification"``, ...).
      metrics: ``(outputs, aux, batch) -> {name: (weighted_sum, weight)}`` with ``"loss"``.
      derive: ``(means, info) -> extra metrics`` computed from the means on the host.
      best_metric, best_mode: the validation metric early stopping and the best
        checkpoint follow by default, and whether lower (``"min"``) or higher is better.
      report: ``(run, state, workdir) -> dict`` run once at the end of training with the
        best checkpoint's state, on every process (it may evaluate); the dict goes to
        ``summary.json`` under ``"report"`` (baselines, decoded examples, figures).
    """

    name: str
    metrics: Callable[[Any, Mapping[str, Any], Mapping[str, Array]], Sums]
    derive: Callable[[dict[str, float], Mapping[str, Any]], dict[str, float]] = _nothing_derived
    best_metric: str = "loss"
    best_mode: str = "min"
    report: Callable[[Any, Any, str], dict[str, Any]] | None = None


_TASKS: dict[str, Task] = {}


def _model_report(name: str) -> Callable[[Any, Any, str], dict[str, Any]]:
    """rnnlab.models.reports.REPORTS[name], imported when a run ends (matplotlib, statsmodels)."""

    def report(run, state, workdir):
        from rnnlab.models.reports import REPORTS

        return REPORTS[name](run, state, workdir)

    return report


def register(task: Task) -> Task:
    """Adds ``task`` under ``task.name`` (replacing nothing: names are unique)."""
    if task.name in _TASKS and _TASKS[task.name] is not task:
        raise ValueError(f"a task named {task.name!r} is already registered")
    _TASKS[task.name] = task
    return task


def get(name: str) -> Task:
    """The task registered as ``name``; unknown names list the known ones."""
    if name not in _TASKS:
        raise ValueError(f"data task must be one of {sorted(_TASKS)}, got {name!r}")
    return _TASKS[name]


def names() -> list[str]:
    return sorted(_TASKS)


def _weights(batch: Mapping[str, Array], shape: tuple[int, ...]) -> Array:
    w = batch.get("weights")
    if w is None:
        return jnp.ones(shape, jnp.float32)
    return jnp.broadcast_to(w.astype(jnp.float32), shape)


def token_cross_entropy(logits: Array, targets: Array, weights: Array) -> Sums:
    """Weighted token cross-entropy (nats) and accuracy for ``logits`` ``[..., V]``."""
    logits = logits.astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    total = jnp.sum(weights)
    return {"loss": (jnp.sum(ce * weights), total), "accuracy": (jnp.sum(correct * weights), total)}


def _token_metrics(outputs, aux, batch) -> Sums:
    del aux
    targets = batch["targets"]
    return token_cross_entropy(outputs, targets, _weights(batch, targets.shape))


def _lm_derive(means: dict[str, float], info: Mapping[str, Any]) -> dict[str, float]:
    loss = means["loss"]
    out = {"perplexity": math.exp(min(loss, 700.0)), "bits_per_token": loss / math.log(2)}
    if info.get("level", info.get("token_level")) in ("char", "character", "byte"):
        out["bpc"] = out["bits_per_token"]
    return out


def _classification_metrics(outputs, aux, batch) -> Sums:
    del aux
    labels = batch["labels"]
    return token_cross_entropy(outputs, labels, _weights(batch, labels.shape))


def _regression_metrics(outputs, aux, batch) -> Sums:
    del aux
    targets = batch["targets"].astype(jnp.float32)
    pred = outputs.astype(jnp.float32).reshape(targets.shape)
    w = _weights(batch, targets.shape[:1])
    per_example_sq = jnp.mean(jnp.square(pred - targets).reshape(targets.shape[0], -1), axis=-1)
    per_example_abs = jnp.mean(jnp.abs(pred - targets).reshape(targets.shape[0], -1), axis=-1)
    total = jnp.sum(w)
    return {
        "loss": (jnp.sum(per_example_sq * w), total),
        "mae": (jnp.sum(per_example_abs * w), total),
    }


def _regression_derive(means: dict[str, float], info: Mapping[str, Any]) -> dict[str, float]:
    del info
    return {"mse": means["loss"], "rmse": math.sqrt(max(means["loss"], 0.0))}


register(Task("lm", _token_metrics, _lm_derive))
register(
    Task(
        "copy", _token_metrics, lambda means, info: {"bits_per_token": means["loss"] / math.log(2)}
    )
)
register(
    Task(
        "classification",
        _classification_metrics,
        lambda means, info: {"error": 1.0 - means["accuracy"]},
        best_metric="accuracy",
        best_mode="max",
        report=_model_report("classification"),
    )
)
register(Task("regression", _regression_metrics, _regression_derive))

# The task models' own tasks (rnnlab.models.task_metrics).
from rnnlab.models import task_metrics as _tm  # noqa: E402

register(Task("seq2seq", _tm.seq2seq_metrics, _tm.seq2seq_derive, report=_model_report("seq2seq")))
register(Task("ctc", _tm.ctc_metrics, best_metric="error_rate", report=_model_report("ctc")))
register(
    Task("forecast", _tm.forecast_metrics, _tm.forecast_derive, report=_model_report("forecast"))
)
register(Task("video", _tm.video_metrics, report=_model_report("video")))


def means(sums: Mapping[str, Any]) -> dict[str, float]:
    """``{name: sum / weight}`` from host values of ``{name: (sum, weight)}``."""
    out = {}
    for name, (s, w) in sums.items():
        w = float(w)
        out[name] = float(s) / w if w > 0 else float("nan")
    return out
