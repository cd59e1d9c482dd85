"""The training loop: ``train(config, workdir)``.

``_train`` reads in order: claim the workdir (or restart it), restore the latest checkpoint
or initialise (a run that had already ended reports as it ended), record the config, then
:meth:`_Loop.train_until_stop`, whose :meth:`_Loop.advance` is one step of the loop:

    update -> [log window] -> guards (non-finite, divergence: stop or restore)
      -> preemption? -> [evaluate, early stopping] -> callbacks -> [checkpoint]

and the end of the run (the task's sample and report, plots, summary). Everything a
checkpoint keeps besides the train state is an object with ``state()`` and ``load()``: the
data position, :class:`EarlyStopping`, the guards (:mod:`rnnlab.train.guards`), the open
log window and :class:`rnnlab.train.ending.Finished`. Running ``train`` again on the same
workdir resumes from the latest checkpoint with the same data position and random numbers.
"""

from __future__ import annotations

import errno
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

from rnnlab import parallel
from rnnlab.train import callbacks as callbacks_lib
from rnnlab.train import checkpoint as ckpt_lib
from rnnlab.train import config as cfg_lib
from rnnlab.train import ending, guards
from rnnlab.train import lock as lock_lib
from rnnlab.train import metric_log as metrics_lib
from rnnlab.train import state as state_lib
from rnnlab.train.loop_state import LoopState, fmt
from rnnlab.train.nonfinite import NonFiniteError
from rnnlab.train.run import Run

__all__ = ["NonFiniteError", "Run", "train"]

# Errors of a workdir that cannot take more writes: full, over quota, read-only, forbidden.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _is_due(step: int, every: int, last: int) -> bool:
    return step == last or (every > 0 and step % every == 0)


Hook = Callable[[int, state_lib.TrainState], None]


def train(
    config: cfg_lib.ConfigDict,
    workdir: str,
    *,
    source: Any = None,
    hooks: Sequence[Hook] = (),
    loggers: Sequence[metrics_lib.Logger] = (),
    callbacks: Sequence[callbacks_lib.Callback] = (),
    restart: bool = False,
) -> dict[str, Any]:
    """Trains (or resumes) the run described by ``config`` in ``workdir``.

    Args:
      config: the experiment config (see :func:`rnnlab.train.config.base_config`).
      workdir: where everything the run produces goes; an existing run there resumes.
      source: the data module (``info``/``load``); ``rnnlab.data`` by default.
      hooks: ``hook(step, state)`` called on every process after each update, before
        logging and checkpointing (fault injection, custom probes). The state must not
        be kept: the next step donates its buffers.
      loggers: ``logger(step, split, metrics)`` called on the main process with every
        record written to ``metrics.jsonl`` (train windows, evaluations): forward them to
        an experiment tracker.
      callbacks: :class:`rnnlab.train.Callback` objects called at each point of the run's
        lifecycle (run start, each step, each log window and evaluation, each checkpoint,
        run end); they can stop the run cleanly or ask for a checkpoint
        (:mod:`rnnlab.train.callbacks`). ``hooks`` and ``loggers`` become callbacks too.
      restart: start over from step 0 even though the workdir holds a run; its
        checkpoints, logs and summary move to ``previous/<time>/`` (nothing is deleted).

    Returns:
      The summary (also written to ``summary.json``).

    Raises:
      ConfigError: a bad config, before any training and before the workdir is touched.
      WorkdirLockedError: another run holds the workdir.
      RestartRefusedError: the workdir had checkpoints and none is left (``restart``).
      NonFiniteError, DivergenceError: the run went wrong and was stopped.
    """
    t_start = time.time()
    run = Run(config, workdir, source=source)  # validates the config; writes nothing
    main = run.main

    def warn(text: str) -> None:
        if main:
            print(f"rnnlab: warning: {text}", file=sys.stderr, flush=True)

    lock = lock_lib.WorkdirLock(workdir, note=warn) if main else None
    refused: Exception | None = None
    if lock is not None:
        try:
            lock.acquire()
        except lock_lib.WorkdirLockedError as e:
            refused = e
    if parallel.any_process(refused is not None):  # every process stops, or none
        raise refused or lock_lib.WorkdirLockedError(f"workdir {workdir} is in use")
    try:
        calls = callbacks_lib.CallbackList(callbacks, hooks, loggers)
        return _train(run, workdir, t_start, warn, calls, restart)
    finally:
        if lock is not None:
            lock.release()


def _train(run, workdir, t_start, warn, calls, restart) -> dict[str, Any]:
    guards.claim_workdir(run, workdir, restart, warn)
    loop = _Loop(run, workdir, warn, calls)
    finished = loop.resume()
    if finished is not None:
        return finished
    loop.begin("restart" if restart else ("resume" if loop.latest is not None else "start"))
    loop.train_until_stop()
    return loop.end(t_start)


class _Loop(LoopState):
    """The loop itself; what it carries between steps, and its start, is
    :class:`rnnlab.train.loop_state.LoopState`."""

    # ------------------------------------------------------------------ loop
    def train_until_stop(self) -> None:
        """Steps until the last step, early stopping, a callback's stop or a preemption;
        pending log lines and asynchronous saves are complete when it returns or raises."""
        try:
            while self.step < self.total and not self.stop_reason:
                self.advance()
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside the loop's polling
            self.save()
            self.run.checkpoints.wait()
            self.progress.close()
            raise
        except ckpt_lib.CheckpointWriteError:
            raise
        except OSError as e:
            if e.errno not in _WRITE_ERRNOS:
                raise
            # A log or event file: name the workdir and what is left, as for a checkpoint.
            where = f"could not write to workdir {self.workdir}"
            raise self.run.checkpoints.write_error(where, e) from e
        finally:
            self.preemption.close()
            failing = sys.exc_info()[1] is not None
            try:
                self.writer.flush()
                # Whatever ends the loop (an error included), pending asynchronous saves complete.
                self.run.checkpoints.wait()
            except Exception:
                if not failing:  # else the error that ended the loop is the one to report
                    raise
        self.progress.close()

    def advance(self) -> None:
        """One step: update, log, guards, preemption, evaluation, callbacks, checkpoint."""
        batch = self.rollback.poison(next(self.train_it), self.step + 1)
        self.state, metrics = self.steps(self.state, batch)
        self.step += 1
        step = self.step
        self.rollback.add(step, metrics)
        self.acc.add(metrics)
        if self.calls.has_step:
            with self.meter.paused():
                self.calls.on_step(step, self.state)
        log_now = _is_due(step, self.log_every, self.total)
        if log_now:
            self._log()
        trouble = self.rollback.check(step, log_now, self.last_train)
        if trouble is not None:
            self._restore(trouble)
            return
        preempted = self.preemption.poll(step, self.run.checkpoints)
        # An evaluation due now runs only if it fits in the grace period; otherwise the
        # resumed run does it first (same logs, same early stopping).
        defer = self.preemption.defer(preempted)
        eval_due = _is_due(step, self.eval_every, self.total)
        eval_metrics = self._evaluate() if eval_due and not defer else None
        # A callback's requests: every process agrees at the steps they all log or
        # evaluate (a collective), a single process at every step.
        agree = jax.process_count() > 1 and (log_now or eval_metrics is not None)
        asked_stop, asked_save = self.calls.requests(agree=agree)
        if asked_stop and not self.stop_reason and not preempted:
            self.stop_reason = "callback"
            self.progress.write(f"stopped at step {step}: {asked_stop}")
        if not self.stop_reason and step >= self.total and not preempted:
            self.stop_reason = "completed"
        if preempted:
            self.save(eval_metrics, eval_pending=defer and eval_due)
            self.run.checkpoints.wait()
            self.stop_reason = self.preemption.stop_reason()
            self.progress.write(self.preemption.describe(step))
        elif (
            eval_metrics is not None
            or asked_save
            or self.stop_reason == "callback"
            or _is_due(step, self.checkpoint_every, self.total)
        ):
            self.save(eval_metrics)

    def _log(self) -> None:
        self.last_train = self.acc.result()
        self.last_train.update(self.meter.result())
        self.writer.write(self.step, "train", self.last_train)
        self.progress.update(self.step, self.last_train)

    def _evaluate(self) -> dict[str, float]:
        step, split = self.step, self.split
        jax.block_until_ready(self.state)
        with self.meter.paused(), self.preemption.timing():
            self.last_eval = self.run.evaluate(self.state, split)
            # Before the save, so the checkpoint holds the trigger's view of this loss.
            self.state = self.run.observe_validation(self.state, self.last_eval)
        self.writer.write(step, split, self.last_eval)
        self.progress.write(f"step {step}: {split} " + fmt(self.last_eval))
        if self.early.update(step, self.last_eval):
            self.stop_reason = "early_stopping"
            e = self.early
            self.progress.write(
                f"early stopping at step {step}: {e.metric} has not improved by "
                f"{e.min_delta} for {e.patience} evaluations (best {e.best:.4f} at step "
                f"{e.best_step})"
            )
        return self.last_eval

    def _restore(self, trouble: guards.Trouble) -> None:
        """Stops (raises) or goes back to the newest checkpoint before the trouble, with the
        learning rate scaled down in the optimizer state (the step is not compiled again)."""
        checkpoints = self.run.checkpoints
        target = self.rollback.target(trouble, checkpoints)
        checkpoints.wait()
        checkpoints.discard_after(target)
        self.rollback.restored()
        state, extra = self.run.restore(target)
        self.state = self.run.set_lr_scale(state, self.rollback.lr_scale)
        self.load(extra)
        self.writer.truncate_after(target)
        fields = {**trouble.fields, "lr_scale": self.rollback.lr_scale}
        self.writer.write(target, "nonfinite_restore", fields)
        self.progress.write(self.rollback.describe_restore(trouble, target))
        self.meter.reset()
        self.rollback.reset()
        self.step = target

    # ------------------------------------------------------------------ end
    def end(self, t_start: float) -> dict[str, Any]:
        """The summary (``summary.json``), after the optional end of the run."""
        summary = self.summary(t_start)
        self.writer.close()
        stopped_early = self.stop_reason in ("preempted", "interrupted")
        ending.close(
            self.run, self.state, self.step, summary, self.workdir, self.warn, stopped_early
        )
        self.calls.on_run_end(summary)
        return summary
