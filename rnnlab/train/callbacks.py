"""Callbacks that observe a run and can act on it: one lifecycle for hooks, loggers and
user code.

A callback subclasses :class:`Callback` and overrides what it needs. The training loop
calls, in order:

1. ``on_run_start(run)``: once the workdir is accepted and the state restored or built;
   ``run`` is a :class:`RunInfo` (workdir, config, dataset description, start and last step).
2. ``on_step(step, state)``: after every update, on every process, before logging (the
   state must not be kept: the next step donates its buffers).
3. ``on_record(step, split, metrics)``: with every record written to ``metrics.jsonl`` (main
   process); by default it calls ``on_log(step, metrics)`` for a training window and
   ``on_eval(step, split, metrics)`` for an evaluation.
4. ``on_checkpoint(step)``: after each checkpoint save is issued.
5. ``on_run_end(summary)``: with the summary, once ``summary.json`` is written.

Acting: ``self.control.request_stop(reason)`` ends the run cleanly at the current step (a
checkpoint is written, the evaluation and summary are complete, ``stop_reason`` is
``"callback"``; running ``train`` again resumes it bit for bit), as Keras's
``model.stop_training`` does; ``self.control.request_save()`` writes a checkpoint at the
current step. A request made during a step takes effect at the end of that step; with
several processes the processes agree on it at the next log or evaluation step (any
process asking is enough), so that all of them stop or save together.

``train(..., hooks=[fn])`` (``fn(step, state)``) and ``loggers=[fn]`` (``fn(step, split,
metrics)``, the ``--logger`` of ``rnnlab train``) are callbacks of this kind
(:class:`StepHook`, :class:`MetricLogger`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a callback learns at the start of a run."""

    workdir: str
    config: Any
    dataset: Mapping[str, Any]
    start_step: int
    total_steps: int
    main: bool


class Control:
    """Requests from callbacks to the loop (shared by every callback of a run)."""

    def __init__(self) -> None:
        self.stop_reason: str | None = None
        self.save_requested = False

    def request_stop(self, reason: str = "a callback asked to stop") -> None:
        """Ends the run cleanly at the current step (module docstring)."""
        if self.stop_reason is None:
            self.stop_reason = str(reason)

    def request_save(self) -> None:
        """Writes a checkpoint at the current step."""
        self.save_requested = True


class Callback:
    """Base class: every method does nothing; ``self.control`` is set before the run."""

    control: Control

    def on_run_start(self, run: RunInfo) -> None:
        del run

    def on_step(self, step: int, state: Any) -> None:
        del step, state

    def on_record(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        if split == "train":
            self.on_log(step, metrics)
        elif split in ("train_eval", "validation", "test"):
            self.on_eval(step, split, metrics)

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        del step, metrics

    def on_eval(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        del step, split, metrics

    def on_checkpoint(self, step: int) -> None:
        del step

    def on_run_end(self, summary: Mapping[str, Any]) -> None:
        del summary


class StepHook(Callback):
    """``fn(step, state)`` after every update (the ``hooks`` argument of ``train``)."""

    def __init__(self, fn: Callable[[int, Any], None]):
        self.fn = fn

    def on_step(self, step: int, state: Any) -> None:
        self.fn(step, state)


class MetricLogger(Callback):
    """``fn(step, split, metrics)`` with every metric record (``loggers``, ``--logger``)."""

    def __init__(self, fn: Callable[[int, str, Mapping[str, float]], None]):
        self.fn = fn

    def on_record(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        self.fn(step, split, metrics)


class StopAtThreshold(Callback):
    """Stops the run once ``metric`` of ``split`` (``"train"`` windows or an evaluation
    split) passes ``threshold``: below it with ``mode="min"``, above with ``"max"``."""

    def __init__(self, metric: str, threshold: float, *, split: str = "validation", mode="min"):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', received {mode!r}")
        self.metric, self.threshold, self.split, self.mode = metric, threshold, split, mode

    def on_record(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        if split != self.split or self.metric not in metrics:
            return
        value = float(metrics[self.metric])
        if value < self.threshold if self.mode == "min" else value > self.threshold:
            self.control.request_stop(
                f"{split} {self.metric} {value:.4g} passed {self.threshold:g} at step {step}"
            )


class CallbackList:
    """Calls every callback in order; holds the shared :class:`Control`."""

    def __init__(
        self,
        callbacks: Sequence[Callback] = (),
        hooks: Sequence[Callable[[int, Any], None]] = (),
        loggers: Sequence[Callable[[int, str, Mapping[str, float]], None]] = (),
    ):
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be rnnlab.train.Callback objects, got {cb!r}")
        self.callbacks = [*callbacks, *map(StepHook, hooks), *map(MetricLogger, loggers)]
        self.control = Control()
        for cb in self.callbacks:
            cb.control = self.control
        self.has_step = any(type(cb).on_step is not Callback.on_step for cb in self.callbacks)

    def on_run_start(self, run: RunInfo) -> None:
        for cb in self.callbacks:
            cb.on_run_start(run)

    def on_step(self, step: int, state: Any) -> None:
        for cb in self.callbacks:
            cb.on_step(step, state)

    def on_record(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_record(step, split, metrics)

    def on_checkpoint(self, step: int) -> None:
        for cb in self.callbacks:
            cb.on_checkpoint(step)

    def on_run_end(self, summary: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_run_end(summary)

    def requests(self, *, agree: bool) -> tuple[str | None, bool]:
        """``(stop reason or None, save now)``; ``agree``: combine every process's requests
        (a collective: call it on every process at the same step)."""
        stop, save = self.control.stop_reason, self.control.save_requested
        if agree:
            from rnnlab import parallel

            if parallel.any_process(stop is not None) and stop is None:
                stop = "another process's callback asked to stop"
            save = parallel.any_process(save)
        elif not _single_process():
            return None, False
        self.control.save_requested = False
        return stop, save


def _single_process() -> bool:
    import jax

    return jax.process_count() == 1
