"""What the training loop carries between steps, and how a run starts or resumes.

:class:`LoopState` holds the train state and its step, the metrics last reported, and every
object a checkpoint keeps besides the train state, each with ``state()`` and ``load()``: the
data position, :class:`EarlyStopping`, the guards (:mod:`rnnlab.train.guards`), the open log
window and :class:`rnnlab.train.ending.Finished`. :meth:`LoopState.resume` restores them
from the newest intact checkpoint (or initialises); :meth:`LoopState.save` writes them with
the state; :meth:`LoopState.begin` records the config and opens the log. The loop itself is
:mod:`rnnlab.train.loop`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax

from rnnlab.layers import dispatch
from rnnlab.train import callbacks as callbacks_lib
from rnnlab.train import checkpoint as ckpt_lib
from rnnlab.train import config as cfg_lib
from rnnlab.train import divergence, ending, export, files, guards, inputs, integrity, record
from rnnlab.train import metric_log as metrics_lib
from rnnlab.train import progress as progress_lib
from rnnlab.train import sharding as sharding_lib
from rnnlab.train import state as state_lib
from rnnlab.train.early_stopping import EarlyStopping
from rnnlab.train.memory import HINT as MEMORY_HINT
from rnnlab.train.memory import check as check_memory
from rnnlab.train.memory import check_step as check_step_memory
from rnnlab.train.nonfinite import param_names
from rnnlab.train.readable import for_readers
from rnnlab.train.run import Run


def fmt(metrics: dict[str, float]) -> str:
    """Metrics as one line of the progress output (counts stay in ``metrics.jsonl``)."""
    shown = for_readers(metrics)
    return ", ".join(f"{k} {progress_lib.number(v)}" for k, v in sorted(shown.items()))


class Steps:
    """The jitted train step. Its first call traces and compiles it: the step's memory is
    checked then, and the header names each recurrent layer's implementation."""

    def __init__(self, run: Run, meter: progress_lib.Throughput, progress: progress_lib.Progress):
        self.run, self.meter, self.progress = run, meter, progress
        self.fn = run.jit_train_step()
        self.compiled = False

    def __call__(self, state, batch):
        self.meter.add(inputs.tokens_in(batch, jax.process_count()))
        if self.compiled:
            return self.fn(state, inputs.to_global(batch, self.run.mesh))
        with self.meter.paused(), dispatch.recording() as paths:  # compilation: no training
            global_batch = inputs.to_global(batch, self.run.mesh)
            # Refused with numbers before it runs: a failed allocation used to hang. The
            # jitted step keeps running (it reuses this compilation and still compiles
            # batches of other shapes, e.g. padded to another length).
            check_step_memory(self.fn, state, global_batch, hint=MEMORY_HINT)
            out = self.fn(state, global_batch)
        self.compiled = True
        if self.run.main:
            self.progress.write("recurrence: " + dispatch.summary(paths))
        return out


class LoopState:
    """The run between steps: the train state and its step, the metrics last reported, and
    the objects a checkpoint keeps (module docstring); how the run starts or resumes."""

    def __init__(self, run: Run, workdir: str, warn: Callable[[str], None], calls):
        # The typed groups are read; the config itself is what config.json records.
        self.run, self.cfg, self.workdir, self.warn, self.calls = (
            run,
            run.config,
            workdir,
            warn,
            calls,
        )
        t = run.options.train
        self.total, self.split = t.steps, run.options.eval.split
        self.log_every, self.eval_every = t.log_every, t.eval_every
        self.checkpoint_every = t.checkpoint_every
        self.early = EarlyStopping(
            run.best_metric,
            run.best_mode,
            patience=t.early_stopping.patience,
            min_delta=float(t.early_stopping.min_delta),
        )
        uniform = divergence.uniform_loss(run.task.name, run.info)
        self.rollback = guards.Rollback(run.options, param_names(run.abstract.params), uniform)
        self.preemption = guards.Preemption(float(t.preemption_grace_s))
        self.finished = ending.Finished(self.total)
        self.train_it = inputs.iterator(
            run.source,
            run.config,
            run.mesh,
            split="train",
            global_batch_size=t.batch_size,
            repeat=True,
        )
        self.acc = metrics_lib.MeanAccumulator()  # the open log window
        self.meter = progress_lib.Throughput()
        self.state: Any = None
        self.start = self.step = 0
        self.latest: int | None = None  # the checkpoint resumed from
        self.stop_reason = ""
        self.last_train: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}

    # ------------------------------------------------------------------ state
    def resume(self) -> dict[str, Any] | None:
        """Restores the newest intact checkpoint, or initialises the state. Returns the
        summary of a run that had already ended, else ``None``."""
        run = self.run
        # Before anything is allocated: a state too large used to hang in device_get.
        check_memory(run.abstract, run.shardings, hint=MEMORY_HINT)
        found = run.restore_latest(report=self.warn)
        extra: dict[str, Any] = {}
        if found is None:
            self.state = run.initial_state()
        else:
            self.latest, self.state, extra = found
            self.load(extra)
            self.rollback.load(extra)
            self.preemption.load(extra)
        self.start = self.step = int(jax.device_get(self.state.step))
        self.finished.load(extra, self.start)
        self.num_params = state_lib.count_params(self.state.params)
        summary = record.current_summary(self.workdir, self.start)
        if self.finished.reason and not self.preemption.pending and summary is not None:
            saved = record.saved_config(self.workdir)
            diff = record.changes(saved, cfg_lib.to_dict(self.cfg))
            out = self.finished.as_ended(summary, diff, self.workdir, self.start, self.warn)
            self.run.checkpoints.close()
            return out
        return None

    def load(self, extra: dict[str, Any]) -> None:
        """What a resume and a restore both take back from a checkpoint's JSON item."""
        self.train_it.set_state(extra["data"][jax.process_index()])
        self.early.load(extra.get("early_stopping", {}))
        self.rollback.load_windows(extra)
        self.acc.load(extra.get("train_window", []))  # the resumed run completes this window

    def save(self, eval_metrics: dict[str, float] | None = None, eval_pending=False) -> None:
        extra = {
            "data": ckpt_lib.gather_json(self.train_it.get_state()),
            "early_stopping": self.early.state(),
            **self.rollback.state(),
            "dataset": integrity.dataset_identity(self.run.info),
            # preempted before the evaluation due at this step
            **self.preemption.state(eval_pending),
            # a late kill rebuilds the summary from the checkpoint
            **self.finished.state(self.stop_reason),
        }
        if len(self.acc):  # between two log steps
            extra["train_window"] = self.acc.state()
        jax.block_until_ready(self.state)  # the steps before belong to training time
        with self.meter.paused():
            self.run.checkpoints.save(self.step, self.state, extra, metrics=eval_metrics)
            if self.writer.remote:  # the batched gs:// log is written through with each save
                self.writer.flush()
        self.calls.on_checkpoint(self.step)

    # ------------------------------------------------------------------ start
    def begin(self, event: str) -> None:
        """Records the config (the run has accepted the workdir), opens the log, compiles
        nothing yet; then the final metrics of a run killed after its last checkpoint, or the
        evaluation a preempted run deferred."""
        run, cfg, main = self.run, self.cfg, self.run.main
        if main:
            diff = record.accept(self.workdir, cfg, self.start, event)
            # The dataset description (vocabulary, sizes) lets rnnlab.train.export.load
            # rebuild the model from the workdir alone, without the data.
            export.write_dataset_info(self.workdir, run.info)
            if self.latest is not None:
                for text in record.surprising(diff, cfg):
                    self.warn(text)
        self.writer = metrics_lib.MetricWriter(
            self.workdir, enabled=main, start_step=self.latest or 0, loggers=[self.calls.on_record]
        )
        info = callbacks_lib.RunInfo(self.workdir, cfg, run.info, self.start, self.total, main)
        self.calls.on_run_start(info)
        self.progress = progress_lib.Progress(self.start, self.total, enabled=main)
        self.steps = Steps(run, self.meter, self.progress)
        if main:
            self._header()
        self.preemption.arm()
        self.stop_reason = self.finished.reason
        if self.finished.reason and not self.preemption.pending:
            # Killed after its last checkpoint, before summary.json.
            self.last_train, self.last_eval = self.finished.rebuild(
                run.checkpoints.metrics(self.start), self.writer.records(), self.start
            )
            self.warn(
                f"summary.json was missing or older than checkpoint {self.start}; rebuilt from it"
            )
        if self.preemption.pending:
            self._deferred_evaluation()

    def _header(self) -> None:
        options, run = self.run.options, self.run
        what = "resuming from step" if self.latest is not None else "starting at step"
        self.progress.write(
            f"{options.model_name} on {options.data['name']}: {self.num_params:,} parameters, "
            f"{jax.device_count()} device(s), {what} {self.start} of {self.total}"
        )
        self.progress.write(
            f"{jax.process_count()} process(es), sharding {options.sharding.rules}: "
            + sharding_lib.describe(run.abstract, run.shardings)
        )

    def _deferred_evaluation(self) -> None:
        """The evaluation a preempted run deferred, at the step it stopped."""
        start, split = self.start, self.split
        self.last_eval = self.run.evaluate(self.state, split)
        self.state = self.run.observe_validation(self.state, self.last_eval)
        self.writer.write(start, split, self.last_eval)
        self.progress.write(f"step {start}: {split} (deferred) " + fmt(self.last_eval))
        if self.early.update(start, self.last_eval):
            self.stop_reason = "early_stopping"
        elif start >= self.total:
            self.stop_reason = "completed"

    def summary(self, t_start: float) -> dict[str, Any]:
        """What ``summary.json`` says of the loop (the end of the run adds to it)."""
        reason = self.calls.control.stop_reason
        why = {"callback_reason": reason} if self.stop_reason == "callback" and reason else {}
        workdir = files.absolute(self.workdir)
        summary = {
            "steps": self.step,
            "stop_reason": self.stop_reason,
            **why,
            "parameters": self.num_params,
            "wall_time_s": round(time.time() - t_start, 2),
            "final": {"train": self.last_train, self.split: self.last_eval},
            "best": self.early.summary(),
            "nonfinite_updates": int(jax.device_get(self.state.nonfinite_total)),
            "nonfinite_restores": self.rollback.restores,
            "lr_scale": self.rollback.lr_scale,
            "workdir": workdir,
            "plots": files.join(workdir, "plots"),
        }
        if self.finished.rebuilt:
            summary["rebuilt_from_checkpoint"] = self.start
        return summary
