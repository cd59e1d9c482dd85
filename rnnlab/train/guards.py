"""The training loop's guards: small objects with state, kept in every checkpoint.

- :class:`Rollback`: the non-finite guard (:mod:`rnnlab.train.nonfinite`) and the divergence
  guard (:mod:`rnnlab.train.divergence`), with what the run does when one fires
  (``train.nonfinite_action``): stop with the guard's error, or restore the newest
  checkpoint before the trouble began with the learning rate scaled by
  ``train.nonfinite_lr_factor``, up to ``train.nonfinite_max_restores`` times.
- :func:`claim_workdir`: a workdir whose checkpoints are all gone is refused rather than
  silently trained again from step 0 (``--restart`` moves the earlier run aside).
- :class:`Preemption`: SIGTERM or SIGINT during training turn into a checkpoint and a clean
  exit; an evaluation due at that step runs only if it fits in the grace period, otherwise
  the checkpoint says it is pending and the resumed run does it first.

Each has ``state()`` (what a checkpoint's JSON item keeps) and ``load(extra)``, as
:class:`rnnlab.train.early_stopping.EarlyStopping` has.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
from jax.experimental import multihost_utils

from rnnlab import parallel
from rnnlab.train import checkpoint as ckpt_lib
from rnnlab.train import divergence as divergence_lib
from rnnlab.train import files, nonfinite, record
from rnnlab.train.nonfinite import NonFiniteError


@dataclasses.dataclass(frozen=True)
class Trouble:
    """What a guard found: the run went wrong from step ``first`` on.

    Attributes:
      first: the first step that went wrong (a checkpoint before it is restored).
      what: a sentence naming the steps, the loss and the bound or gradient.
      error: the exception that stops the run (:class:`NonFiniteError` or
        :class:`rnnlab.train.divergence.DivergenceError`).
      fields: the metric-log record of the restore (``split == "nonfinite_restore"``).
    """

    first: int
    what: str
    error: type[Exception]
    fields: dict[str, Any]


def _before(checkpoints: ckpt_lib.Checkpoints, step: int) -> str:
    """Which checkpoint holds the parameters from before ``step``, named only if it exists."""
    target = nonfinite.restore_target(checkpoints.all_steps(), step)
    if target is None:
        return f"no checkpoint was written before step {step}"
    return f"checkpoint {target} holds the parameters from before step {step}"


class Rollback:
    """The non-finite and divergence guards and the restores they lead to (module docstring).

    Args:
      config: the run's typed groups (``train.*`` guard options, ``debug.nan_at_steps``).
      param_names: names of the parameter leaves, in leaf order (for the non-finite report).
      uniform_loss: the loss of the uniform prediction, or ``None``
        (:func:`rnnlab.train.divergence.uniform_loss`).
    """

    def __init__(self, config: Any, param_names: list[str], uniform_loss: float | None):
        t = config.train
        self.nonfinite = nonfinite.NonFiniteGuard(int(t.max_nonfinite), param_names)
        self.divergence = divergence_lib.DivergenceGuard(
            int(t.divergence_patience), float(t.divergence_factor), uniform_loss
        )
        self.action, self.log_every = str(t.nonfinite_action), int(t.log_every)
        self.max_restores, self.lr_factor = (
            int(t.nonfinite_max_restores),
            float(t.nonfinite_lr_factor),
        )
        self.restores, self.lr_scale = 0, 1.0
        self._nan_steps, self._poisoned = set(config.debug.nan_at_steps), set()

    def poison(self, batch: Mapping[str, Any], step: int) -> Mapping[str, Any]:
        """``batch`` with NaN weights when ``debug.nan_at_steps`` names ``step`` (once: a
        restored run replays the step with clean data)."""
        if step not in self._nan_steps or step in self._poisoned:
            return batch
        self._poisoned.add(step)
        return nonfinite.poison(batch, step)

    def add(self, step: int, metrics: dict[str, Any]) -> None:
        """Records step ``step``'s metrics for the non-finite guard."""
        self.nonfinite.add(step, metrics)

    def check(self, step: int, log_now: bool, window: Mapping[str, float]) -> Trouble | None:
        """The trouble found at ``step``, or ``None``. The non-finite guard fetches its
        pending steps when a streak could be complete and at log steps; the divergence guard
        judges each log window's mean loss (``window``)."""
        if self.nonfinite.due() or log_now:
            streak = self.nonfinite.check()
            if streak is not None:
                fields = {"first": streak.first, "last": streak.last}
                return Trouble(streak.first, streak.describe(), NonFiniteError, fields)
        if log_now:
            found = self.divergence.update(step, float(window.get("loss", math.nan)))
            if found is not None:
                start = found.first - self.log_every + 1  # the first step of the first window
                fields = {"first": start, "last": found.last, "diverged": 1}
                error = divergence_lib.DivergenceError
                return Trouble(max(start, 1), found.describe(), error, fields)
        return None

    def target(self, trouble: Trouble, checkpoints: ckpt_lib.Checkpoints) -> int:
        """The checkpoint to restore: the newest before ``trouble.first``.

        Raises:
          trouble.error: the action is ``"stop"``, the restores are used up, or no
            checkpoint before the trouble is left.
        """
        if self.action == "stop" or self.restores >= self.max_restores:
            done = f" after {self.restores} restore(s)" if self.restores else ""
            raise trouble.error(
                f"{trouble.what}{done}. {_before(checkpoints, trouble.first)}; lower optim.lr, "
                "set optim.clip_norm or train.nonfinite_action='restore'."
            )
        target = nonfinite.restore_target(checkpoints.all_steps(), trouble.first)
        if target is None:
            raise trouble.error(
                f"{trouble.what}; no checkpoint before step {trouble.first} is left to restore "
                "(raise train.keep_checkpoints or lower train.checkpoint_every)."
            )
        return target

    def restored(self) -> None:
        """Counts a restore and scales the learning rate down (cumulatively: the scale of
        the restored checkpoint is not reloaded)."""
        self.restores += 1
        self.lr_scale *= self.lr_factor

    def describe_restore(self, trouble: Trouble, target: int) -> str:
        """The progress line of a restore (after :meth:`restored`)."""
        return (
            f"{trouble.what}; restored checkpoint {target} with the learning rate scaled by "
            f"{self.lr_scale:g} (restore {self.restores} of {self.max_restores})"
        )

    def reset(self) -> None:
        """Forgets the pending steps and current streaks (after a restore)."""
        self.nonfinite.reset()
        self.divergence.reset_streak()

    def state(self) -> dict[str, Any]:
        """The divergence guard's windows and the restores so far (checkpoint JSON)."""
        return {
            "divergence": self.divergence.state(),
            "lr_scale": self.lr_scale,
            "nonfinite_restores": self.restores,
        }

    def load(self, extra: Mapping[str, Any]) -> None:
        """Resumes from a checkpoint's JSON item."""
        self.load_windows(extra)
        self.lr_scale = float(extra.get("lr_scale", 1.0))
        self.restores = int(extra.get("nonfinite_restores", 0))

    def load_windows(self, extra: Mapping[str, Any]) -> None:
        """The divergence guard's windows only: a restore keeps its count and scale."""
        self.divergence.load(extra.get("divergence", {}))


class Preemption:
    """SIGTERM and SIGINT during training, and the evaluation they may defer.

    Args:
      grace_s: the seconds the platform leaves between the signal and the kill
        (``train.preemption_grace_s``).
    """

    def __init__(self, grace_s: float):
        self.grace = float(grace_s)
        self.pending = False  # the resumed run owes the evaluation of its first step
        self.eval_seconds: float | None = None
        self._flag: ckpt_lib.PreemptionFlag | None = None

    def arm(self) -> None:
        """Installs the signal handlers (from here to :meth:`close`)."""
        self._flag = ckpt_lib.PreemptionFlag()

    def close(self) -> None:
        """Puts the previous signal handlers back."""
        if self._flag is not None:
            self._flag.close()

    def poll(self, step: int, checkpoints: ckpt_lib.Checkpoints) -> bool:
        """Whether to save and stop now: a signal here or on any process, or the
        distributed runtime's preemption notice."""
        # All processes must agree, or some would enter the save while others step on.
        flagged = self._flag is not None and self._flag.is_set()
        return bool(parallel.any_process(flagged) or checkpoints.reached_preemption(step))

    def defer(self, preempted: bool) -> bool:
        """Whether an evaluation due now waits for the resumed run: preempted, and the last
        evaluation's time (twice, for safety) does not fit in what is left of the grace."""
        if not preempted:
            return False
        fits = (
            self.eval_seconds is not None
            and self._flag is not None
            and self._flag.elapsed() + 2 * self.eval_seconds < self.grace
        )
        # Hosts time the signal and the evaluation differently: they must agree, or one
        # would evaluate (collectives) while another saves.
        return bool(parallel.any_process(not fits))

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        """Times an evaluation (what :meth:`defer` weighs against the grace period)."""
        start = time.perf_counter()
        yield
        self.eval_seconds = time.perf_counter() - start

    def stop_reason(self) -> str:
        """``"interrupted"`` for a Ctrl-C, ``"preempted"`` otherwise."""
        interrupted = self._flag is not None and self._flag.signum == signal.SIGINT
        return "interrupted" if interrupted else "preempted"

    def describe(self, step: int) -> str:
        """The progress line of the stop, with the time the save took after the signal."""
        elapsed = self._flag.elapsed() if self._flag is not None else 0.0
        return (
            f"{self.stop_reason()} at step {step}: checkpoint saved {elapsed:.1f} s after "
            f"the signal (grace period {self.grace:g} s); rerun to resume"
        )

    def state(self, eval_pending: bool) -> dict[str, Any]:
        """``{"eval_pending": True}`` for a checkpoint saved before the evaluation due at
        its step, else nothing."""
        return {"eval_pending": True} if eval_pending else {}

    def load(self, extra: Mapping[str, Any]) -> None:
        """Resumes from a checkpoint's JSON item: whether its evaluation is owed."""
        self.pending = bool(extra.get("eval_pending", False))


def claim_workdir(run: Any, workdir: str, restart: bool, warn: Callable[[str], None]) -> None:
    """Moves an earlier run aside for ``restart`` (every process waits for it); refuses a
    workdir whose checkpoints are all gone, since resuming there would silently start over.

    Raises:
      rnnlab.train.record.RestartRefusedError: the workdir had checkpoints and none is left.
    """
    if restart:
        if run.main:
            moved = record.archive_for_restart(workdir, checkpoints=True)
            warn(f"restarting from step 0; the earlier run's files are in {moved}")
        if jax.process_count() > 1:  # the others open the checkpoints only once moved
            multihost_utils.sync_global_devices("rnnlab_restart")
    elif not files.is_dir(files.join(workdir, "checkpoints")) or not run.checkpoints.all_steps():
        if record.had_checkpoints(workdir):
            raise record.RestartRefusedError(
                f"workdir {workdir} had checkpoints and none is left (damaged ones are in "
                f"{files.join(workdir, record.CORRUPT_DIR)}); rerun with --restart to start "
                "over from step 0 (the old logs move to previous/), or restore one by hand"
            )
