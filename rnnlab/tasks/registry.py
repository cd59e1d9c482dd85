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
from collections.abc import Callable, Mapping
from typing import Any

from rnnlab.tasks.common import Array, Sums


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
      sample: ``(run, state) -> text`` run once at the end of training (when
        ``sample.length`` > 0) on the main process, with a host copy of the best
        checkpoint's state; the text goes to ``samples.txt`` and ``summary["sample"]``. A
        ``ValueError`` (a prompt the model cannot read) skips it with a warning.
    """

    name: str
    metrics: Callable[[Any, Mapping[str, Any], Mapping[str, Array]], Sums]
    derive: Callable[[dict[str, float], Mapping[str, Any]], dict[str, float]] = _nothing_derived
    best_metric: str = "loss"
    best_mode: str = "min"
    report: Callable[[Any, Any, str], dict[str, Any]] | None = None
    sample: Callable[[Any, Any], str] | None = None


_TASKS: dict[str, Task] = {}


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


def means(sums: Mapping[str, Any]) -> dict[str, float]:
    """``{name: sum / weight}`` from host values of ``{name: (sum, weight)}``."""
    out = {}
    for name, (s, w) in sums.items():
        w = float(w)
        out[name] = float(s) / w if w > 0 else float("nan")
    return out
