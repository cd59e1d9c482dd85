"""Divergence: a finite training loss that has left any sensible range.

The non-finite guard (:mod:`rnnlab.train.nonfinite`) catches NaN and infinity; a run at a
learning rate far too high often stays finite and simply stops learning, ending "completed"
with a loss of thousands of nats. This guard watches the mean training loss of each log
window. A window is *off* when its loss is

- above ``factor`` times its running baseline ``max(best, first / 10)``, where ``best`` is
  the lowest loss of the windows so far and ``first`` the first window's (so that a loss
  near zero does not turn noise into divergence); or
- above :data:`UNIFORM_MARGIN` times the loss of the uniform prediction, ``ln(vocab)`` for
  language models and ``ln(classes)`` for classification (no such bound for other tasks):
  a model that does worse than guessing, which is where a run at a learning rate far too
  high ends even when it never learnt anything.

``patience`` off windows in a row make the run diverged; the loop then stops or restores a
checkpoint, as ``train.nonfinite_action`` says for non-finite updates.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

# A window loss above this many times the uniform prediction's is off from the first window.
UNIFORM_MARGIN = 1.25


class DivergenceError(RuntimeError):
    """The training loss diverged (see the module docstring); the message names the steps,
    the loss and the reference it exceeded."""


def uniform_loss(task: str, info: Mapping[str, Any]) -> float | None:
    """Cross-entropy of the uniform prediction, or ``None`` when the task has none."""
    size = {"lm": info.get("vocab_size"), "classification": info.get("num_classes")}.get(task)
    return math.log(size) if isinstance(size, int) and size > 1 else None


@dataclasses.dataclass(frozen=True)
class Divergence:
    """``count`` off log windows in a row, the first ending at ``first``, the last at
    ``last``."""

    first: int
    last: int
    count: int
    loss: float
    reference: float
    factor: float

    def describe(self) -> str:
        return (
            f"the training loss diverged: {self.count} log windows in a row above "
            f"{self.factor:g} x {self.reference:.4g} (steps {self.first} to {self.last}; loss "
            f"{self.loss:.6g} at step {self.last})"
        )


class DivergenceGuard:
    """Watches the log windows' mean loss (module docstring). ``patience=0`` disables it."""

    def __init__(self, patience: int, factor: float, uniform: float | None):
        self.patience, self.factor, self.uniform = int(patience), float(factor), uniform
        self.best = math.inf
        self.first: float | None = None
        self._off: list[tuple[int, float, float]] = []

    def reference(self) -> float:
        """The running baseline (module docstring)."""
        return max(self.best, (self.first or 0.0) / 10)

    def off(self, loss: float) -> tuple[bool, float, float]:
        """Whether ``loss`` is off, and the bound and factor it is judged by."""
        if self.uniform is not None and loss > UNIFORM_MARGIN * self.uniform:
            return True, self.uniform, UNIFORM_MARGIN
        if self.first is not None and loss > self.factor * self.reference():
            return True, self.reference(), self.factor
        return False, 0.0, 0.0

    def update(self, step: int, loss: float) -> Divergence | None:
        """Feeds the window ending at ``step``; returns a :class:`Divergence` when it
        completes ``patience`` off windows in a row."""
        if self.patience <= 0 or not math.isfinite(loss):  # NaN: the non-finite guard's
            return None
        off, ref, factor = self.off(loss)
        if self.first is None:
            self.first = loss
        if off:
            self._off.append((step, loss, ref, factor))
        else:
            self._off = []
            self.best = min(self.best, loss)
        if len(self._off) >= self.patience:
            (first, *_), (last, value, ref, factor) = self._off[0], self._off[-1]
            self._off = []
            return Divergence(first, last, self.patience, value, ref, factor)
        return None

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps, so a resumed run judges windows as the original."""
        return {"best": self.best, "first": self.first, "off": list(self._off)}

    def load(self, state: Mapping[str, Any]) -> None:
        self.best = float(state.get("best", math.inf))
        self.first = state.get("first")
        self._off = [tuple(x) for x in state.get("off", [])]

    def reset_streak(self) -> None:
        """Forgets the current off windows (after a restore)."""
        self._off = []
