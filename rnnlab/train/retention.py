"""Which checkpoints a run keeps, and which one is best.

orbax ranks checkpoints by ``CheckpointManagerOptions.best_fn`` of their saved metrics, both
for ``CheckpointManager.best_step`` and for its ``BestN`` retention, and among equal values
picks the *latest* (its sort is stable and it takes the last). rnnlab's rule is the
*earliest* of equal values (:func:`best_of`): early stopping moves its best only on a
strict improvement, so the summary names the earliest, and the checkpoint it names must be
the one kept and loaded. :class:`Ranking` gives orbax that rule: every save's metrics carry
the step (:data:`STEP_KEY`), and the key orbax sorts by is the value with the step as tie
breaker.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

# The metric entry that carries a checkpoint's step to orbax's ranking (not a metric:
# removed again by Checkpoints.metrics).
STEP_KEY = "checkpoint_step"


def best_of(ranked: Iterable[tuple[float, int]], mode: str) -> int | None:
    """The step of the best ``(value, step)`` pair, the earliest among equal values: the
    rule of early stopping (only a strict improvement moves its best), of the retention
    and of ``load(..., "best")``, so that the checkpoint the summary names best is the one
    kept and the one loaded. ``None`` without pairs."""
    ranked = list(ranked)
    if not ranked:
        return None
    sign = 1.0 if mode == "min" else -1.0
    return int(min(ranked, key=lambda r: (sign * r[0], r[1]))[1])


class Ranking:
    """orbax's ``best_fn`` for ``metric`` in ``mode`` (``"min"`` or ``"max"``).

    orbax sorts by the key (descending for ``"min"``) and takes the last, so the key is
    ``(value, step)`` for ``"min"`` and ``(value, -step)`` for ``"max"``: the best value,
    then the earliest step, as :func:`best_of`. A NaN value is never the best. Metrics saved
    without a step (checkpoints written before steps were saved with them) rank after every
    equal value that has one.
    """

    def __init__(self, metric: str, mode: str):
        self.metric, self.mode = metric, mode

    def value(self, metrics: Mapping[str, Any]) -> float:
        """The ranked metric, NaN and a missing value as the worst."""
        value = float(metrics.get(self.metric, math.nan))
        if math.isnan(value):
            return math.inf if self.mode == "min" else -math.inf
        return value

    def __call__(self, metrics: Mapping[str, Any]) -> tuple[float, float]:
        step = float(metrics.get(STEP_KEY, math.inf))
        return self.value(metrics), step if self.mode == "min" else -step


class KeepOlderThan:
    """orbax preservation policy: keep the newest checkpoint at least ``window`` steps older
    than the latest one, and the checkpoints of the last ``window`` steps that will become
    it as the run advances.

    The divergence and non-finite guards restore the newest checkpoint from before the
    trouble began, up to ``window`` steps before they notice it; with only the latest
    ``keep`` checkpoints kept, that one was always rotated away first. The cost is up to
    ``window / checkpoint_every + 1`` checkpoints on disk while the guards may restore.
    """

    def __init__(self, window: int):
        self.window = int(window)

    def should_preserve(self, checkpoints: Any, *, context: Any) -> list[bool]:
        del context
        if not checkpoints:
            return []
        latest = max(c.step for c in checkpoints)
        old = [c.step for c in checkpoints if c.step <= latest - self.window]
        oldest_kept = max(old) if old else -1
        return [c.step >= oldest_kept for c in checkpoints]


def choose_step(checkpoints: Any, which: str | int) -> int:
    """The step ``which`` names: ``"best"`` (the latest when none is ranked), ``"latest"`` or
    a step number; a FileNotFoundError naming the directory and the steps there otherwise."""
    steps = sorted(checkpoints.all_steps())
    if which == "best":
        step = checkpoints.best_step() or checkpoints.latest_step()
    elif which == "latest":
        step = checkpoints.latest_step()
    else:
        step = int(which) if int(which) in steps else None
    if step is None:
        have = f"it has {steps}" if steps else "it has none"
        raise FileNotFoundError(f"no checkpoint {which} in {checkpoints.directory} ({have})")
    return int(step)
