"""The end of a run after its last checkpoint: samples, the task's report, plots, summary.

The training loop turns SIGTERM into a checkpoint and exit status 0 (preemption). Once the
loop has ended, the last checkpoint is written and only optional work remains; a SIGTERM
then used to kill the process with status 143 and no word, losing the summary. Within
:class:`EndOfRun`, SIGTERM (and a Ctrl-C) stops the optional work at once, the summary is
still written, and the run says so and exits 0 as the docs promise.

:func:`finish` is that optional work: the task's text sample and report on the best
checkpoint, and the plots. :class:`Finished` records in each checkpoint whether the run had
ended there, so that a run killed after its last checkpoint, before ``summary.json``, has
its summary rebuilt from the checkpoint and the log instead of training again.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rnnlab import parallel
from rnnlab.tasks.headline import headline
from rnnlab.train import files, plots, record


class _Skip(BaseException):
    """Raised in the main thread by the handler to leave the optional work."""


class EndOfRun:
    """Handles SIGTERM and SIGINT from the end of the loop to the summary; a context manager.

    Args:
      step: the run's last step (for the message).
      enabled: print the message (the main process).
    """

    def __init__(self, step: int, *, enabled: bool = True):
        self.step, self.enabled = step, enabled
        self.signum: int | None = None
        self._armed = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> EndOfRun:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        del frame
        first = self.signum is None
        self.signum = signum
        if first and self.enabled:
            name = signal.Signals(signum).name
            print(
                f"rnnlab: {name} after the last checkpoint (step {self.step}): the remaining "
                "samples, report and plots are skipped; writing the summary",
                file=sys.stderr,
                flush=True,
            )
        if self._armed:
            self._armed = False
            raise _Skip

    @property
    def stopped(self) -> bool:
        """Whether a signal came: skip what optional work is left."""
        return self.signum is not None

    @contextmanager
    def optional(self) -> Iterator[None]:
        """The block of optional work, which a signal ends at once (the summary must not
        wait for it)."""
        self._armed = True
        try:
            yield
        except _Skip:
            pass
        finally:
            self._armed = False


class Finished:
    """How the run had ended at its newest checkpoint: ``"completed"``,
    ``"early_stopping"`` or ``""`` (still training).

    Args:
      total: the run's ``train.steps``.
    """

    def __init__(self, total: int):
        self.total = int(total)
        self.reason = ""
        self.rebuilt = False  # the final metrics came from the checkpoint and the log

    def state(self, stop_reason: str) -> dict[str, Any]:
        """What a checkpoint keeps: the stop reason of a run that has ended with it."""
        if stop_reason in ("completed", "early_stopping"):
            return {"stop_reason": stop_reason, "steps": self.total}
        return {}

    def load(self, extra: Mapping[str, Any], step: int) -> None:
        """Reads the checkpoint of ``step`` (``extra`` its JSON item, empty for none)."""
        self.reason = "completed" if step >= self.total else ""
        if extra.get("stop_reason") == "early_stopping" and extra.get("steps") == self.total:
            self.reason = "early_stopping"

    def as_ended(
        self,
        summary: dict[str, Any],
        changes: Mapping[str, tuple[Any, Any]],
        workdir: str,
        step: int,
        warn: Callable[[str], None],
    ) -> dict[str, Any]:
        """The summary of a run that had already ended, reported as it ended; the config
        ``changes`` (key: (recorded, now)) are named as not applied."""
        if changes:
            warn(
                f"the run in {workdir} ended at step {step} ({self.reason}); not applied: "
                + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in list(changes.items())[:4])
                + ". Use --extend N to train it further, or another workdir."
            )
        return {**summary, "already_finished": True}

    def rebuild(
        self, checkpoint_metrics: Mapping[str, float] | None, records: Iterable[Mapping], step: int
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """The final ``(train, evaluation)`` metrics of a run killed after its last
        checkpoint (``step``): the log's last training window up to it and the checkpoint's
        evaluation."""
        self.rebuilt = True
        trains = [r for r in records if r["split"] == "train" and r["step"] <= step]
        last = trains[-1] if trains else {}
        train = {k: v for k, v in last.items() if k not in ("step", "split", "time")}
        return train, dict(checkpoint_metrics or {})


def close(run, state, step: int, summary: dict[str, Any], workdir: str, warn, stopped_early: bool):
    """Ends a run whose loop has ended: the optional :func:`finish` (unless it was stopped
    early), under :class:`EndOfRun`, then the headline and ``summary.json`` (main process)."""
    with EndOfRun(step, enabled=run.main) as end:  # SIGTERM now skips to the summary (exit 0)
        if not stopped_early:
            with end.optional():
                finish(run, state, step, summary, workdir, warn)
        if end.stopped:
            summary["end_of_run_skipped"] = signal.Signals(end.signum).name
        if run.main:
            summary["headline"] = headline(summary, run.task.name, run.info)
            files.write_json(files.join(workdir, record.SUMMARY_FILE), summary)


def finish(
    run: Any,
    state: Any,
    step: int,
    summary: dict[str, Any],
    workdir: str,
    warn: Callable[[str], None],
) -> None:
    """The optional end of a run that was not stopped early: the task's text sample and
    report (:class:`rnnlab.tasks.Task`) on the best checkpoint, then the plots. Every
    process calls it (restoring and gathering sharded parameters are collectives)."""

    @functools.cache
    def best_state() -> Any:
        best = run.checkpoints.best_step()
        chosen = state if best is None or best == step else run.restore(best)[0]
        return run.eval_state(chosen)

    if run.task.sample is not None and run.options.sample.length > 0:
        _sample(run, best_state(), summary, workdir, warn)
    if run.task.report is not None:
        # Baselines, decoded examples, figures; every process joins, as it may evaluate.
        summary["report"] = run.task.report(run, best_state(), workdir)
    if run.main:
        plots.plot_workdir(workdir)


def _sample(run, state, summary: dict[str, Any], workdir: str, warn) -> None:
    """The task's text sample from a host copy of ``state``: ``samples.txt`` and
    ``summary["sample"]``."""
    host = parallel.to_host((state.params, state.rest))  # a collective: every process joins
    if not run.main:
        return
    try:
        text = run.task.sample(run, state.replace(params=host[0], rest=host[1]))
    except ValueError as e:  # sample.prompt outside the vocabulary: the run is done
        warn(f"no end-of-run sample: {e}")
        summary["sample_skipped"] = str(e)
    else:
        files.write_text(files.join(workdir, "samples.txt"), text + "\n")
        summary["sample"] = text
