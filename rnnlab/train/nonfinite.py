"""The non-finite guard: consecutive skipped updates, found without a host sync per step.

The jitted step skips an update whose loss or gradient is not finite and reports it in its
metrics (``nonfinite``, with the largest gradient and its parameter). The guard keeps those
device scalars and fetches them in one transfer every ``limit`` steps (and at log steps), so
the loop never waits on the device just to watch for NaNs. When ``limit`` skipped updates
come in a row, :meth:`NonFiniteGuard.check` returns a :class:`Streak` that names the steps,
the loss and the largest gradient; the loop then stops or restores a checkpoint
(``train.nonfinite_action``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax


class NonFiniteError(RuntimeError):
    """Too many consecutive non-finite updates; the message names the steps, the loss and the
    largest gradient."""


# Per-step metrics the guard needs and the logs do not (an index is not a mean).
PRIVATE_METRICS = ("grad_max_leaf",)


@dataclasses.dataclass(frozen=True)
class Streak:
    """``limit`` skipped updates in a row, steps ``first`` to ``last`` (inclusive)."""

    first: int
    last: int
    loss: float
    grad_max: float
    grad_max_param: str

    def describe(self) -> str:
        return (
            f"{self.last - self.first + 1} consecutive non-finite updates, steps {self.first} "
            f"to {self.last} (all skipped); at step {self.last} the loss was {self.loss:.6g} and "
            f"the largest gradient {self.grad_max:.6g} in {self.grad_max_param}"
        )


class NonFiniteGuard:
    """Watches the per-step ``nonfinite`` metric of the train step (module docstring).

    Args:
      limit: skipped updates in a row that make a :class:`Streak` (0: never).
      param_names: names of the parameter leaves, in ``jax.tree.leaves`` order.
    """

    def __init__(self, limit: int, param_names: Sequence[str]):
        self.limit = int(limit)
        self.param_names = list(param_names)
        self._pending: list[tuple[int, dict[str, Any]]] = []
        self._run = 0
        self._first = 0

    def add(self, step: int, metrics: dict[str, Any]) -> None:
        """Records step ``step``'s metrics; removes :data:`PRIVATE_METRICS` from the dict."""
        keep = {k: metrics[k] for k in ("nonfinite", "loss", "grad_max") if k in metrics}
        for k in PRIVATE_METRICS:
            if k in metrics:
                keep[k] = metrics.pop(k)
        if self.limit:
            self._pending.append((step, keep))

    def due(self) -> bool:
        """True when enough steps are pending that a streak could be complete."""
        return self.limit > 0 and len(self._pending) >= self.limit

    def check(self) -> Streak | None:
        """Fetches the pending steps (one transfer) and returns the first streak of
        ``limit`` skipped updates among them, or ``None``."""
        if not self._pending:
            return None
        pending, self._pending = self._pending, []
        host = jax.device_get([m for _, m in pending])
        for (step, _), m in zip(pending, host, strict=True):
            if float(m.get("nonfinite", 0.0)) > 0:
                if self._run == 0:
                    self._first = step
                self._run += 1
            else:
                self._run = 0
            if self.limit and self._run >= self.limit:
                self._run = 0
                return Streak(
                    first=self._first,
                    last=step,
                    loss=float(m.get("loss", math.nan)),
                    grad_max=float(m.get("grad_max", math.nan)),
                    grad_max_param=self._name(m.get("grad_max_leaf")),
                )
        return None

    def reset(self) -> None:
        """Forgets pending steps and the current run (after a restore)."""
        self._pending, self._run = [], 0

    def _name(self, index: Any) -> str:
        if index is None or not math.isfinite(float(index)):
            return "an unknown parameter"
        i = int(index)
        return self.param_names[i] if 0 <= i < len(self.param_names) else f"parameter #{i}"


def param_names(params: Any) -> list[str]:
    """``'layers/0/cell/kernel'``-style names of the leaves of ``params``, in leaf order."""
    from rnnlab.parallel import path_to_str

    return [path_to_str(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def restore_target(steps: Sequence[int], first: int) -> int | None:
    """The newest checkpoint step before step ``first`` (where the trouble began), or
    ``None``."""
    before = [s for s in steps if s < first]
    return max(before) if before else None


def poison(batch: Mapping[str, Any], step: int) -> dict[str, Any]:
    """``batch`` with NaN weights (fault injection, ``debug.nan_at_steps``): the loss and every
    gradient of the step become NaN without touching the integer inputs of language models."""
    import numpy as np

    out = dict(batch)
    if "weights" not in out:
        raise ValueError(f"debug.nan_at_steps: the batch of step {step} has no 'weights' to poison")
    out["weights"] = np.full(np.shape(out["weights"]), np.nan, np.float32)
    return out
