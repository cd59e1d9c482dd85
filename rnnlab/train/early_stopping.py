"""Early stopping on a validation metric, with patience and a minimum improvement.

An evaluation improves on the best so far when ``value < best - min_delta`` (mode ``min``)
or ``value > best + min_delta`` (mode ``max``); NaN never improves. Training stops after
``patience`` evaluations in a row without improvement (``patience`` 0: never). The
bookkeeping is saved in every checkpoint, so a resumed run counts on where it stopped.
"""

from __future__ import annotations

import math
from typing import Any

from rnnlab.train.config import ConfigError


class EarlyStopping:
    """Tracks the best value of ``metric``; :meth:`update` says when to stop."""

    def __init__(self, metric: str, mode: str = "min", *, patience: int = 0, min_delta: float = 0):
        if mode not in ("min", "max"):
            raise ConfigError("train.early_stopping.mode", f"expected 'min' or 'max', got {mode!r}")
        self.metric, self.mode = metric, mode
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.best: float = math.nan
        self.best_step: int = -1
        self.bad = 0
        self.best_metrics: dict[str, float] = {}

    def improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if math.isnan(self.best):
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, step: int, metrics: dict[str, float]) -> bool:
        """Records an evaluation; True when training should stop."""
        if self.metric not in metrics:
            raise ConfigError(
                "train.early_stopping.metric",
                f"{self.metric!r} is not among the evaluation metrics {sorted(metrics)}",
            )
        value = float(metrics[self.metric])
        if self.improves(value):
            self.best, self.best_step, self.bad = value, int(step), 0
            self.best_metrics = {k: float(v) for k, v in metrics.items()}
        else:
            self.bad += 1
        return self.patience > 0 and self.bad >= self.patience

    def state(self) -> dict[str, Any]:
        """JSON-able bookkeeping (NaN stored as None)."""
        return {
            "best": None if math.isnan(self.best) else self.best,
            "best_step": self.best_step,
            "bad": self.bad,
            "best_metrics": self.best_metrics,
        }

    def load(self, state: dict[str, Any]) -> None:
        best = state.get("best")
        self.best = math.nan if best is None else float(best)
        self.best_step = int(state.get("best_step", -1))
        self.bad = int(state.get("bad", 0))
        self.best_metrics = dict(state.get("best_metrics", {}))

    def summary(self) -> dict[str, Any]:
        """``{"metric", "mode", "step", "value", "metrics"}`` of the best evaluation."""
        return {
            "metric": self.metric,
            "mode": self.mode,
            "step": self.best_step,
            "value": None if math.isnan(self.best) else self.best,
            "metrics": self.best_metrics,
        }
