"""The training loop: ``train(config, workdir)``.

Sections, in order: start-up (processes, mesh, config validation, the workdir's lock),
data description and model, optimizer, state (restore or init; only then is the config
recorded), jitted steps, the loop (log, evaluate, early stopping, checkpoint, preemption,
non-finite and divergence guards), and the end of the run (final evaluation, summary,
plots, samples). Running ``train`` again on the same workdir resumes from the latest
checkpoint with the same data position and random numbers.
"""

from __future__ import annotations

import errno
import math
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.experimental import multihost_utils

from rnnlab import parallel
from rnnlab.layers import dispatch
from rnnlab.tasks.headline import headline
from rnnlab.train import callbacks as callbacks_lib
from rnnlab.train import checkpoint as ckpt_lib
from rnnlab.train import config as cfg_lib
from rnnlab.train import divergence as divergence_lib
from rnnlab.train import export, files, inputs, integrity, nonfinite, plots, record, sampling
from rnnlab.train import lock as lock_lib
from rnnlab.train import metric_log as metrics_lib
from rnnlab.train import progress as progress_lib
from rnnlab.train import sharding as sharding_lib
from rnnlab.train import state as state_lib
from rnnlab.train.early_stopping import EarlyStopping
from rnnlab.train.ending import EndOfRun
from rnnlab.train.memory import HINT as MEMORY_HINT
from rnnlab.train.memory import check as check_memory
from rnnlab.train.memory import check_step as check_step_memory
from rnnlab.train.readable import for_readers
from rnnlab.train.run import Run


class NonFiniteError(RuntimeError):
    """Too many consecutive non-finite updates; the message names the steps, the loss and the
    largest gradient."""


def _is_due(step: int, every: int, last: int) -> bool:
    return step == last or (every > 0 and step % every == 0)


# Errors of a workdir that cannot take more writes: full, over quota, read-only, forbidden.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _fmt(metrics: dict[str, float]) -> str:
    shown = for_readers(metrics)  # counts stay in metrics.jsonl
    return ", ".join(f"{k} {progress_lib.number(v)}" for k, v in sorted(shown.items()))


def _first_shape_compiled(compiled: Any, jitted: Callable, batch: Any) -> Callable:
    """``compiled`` (the executable compiled ahead of time for ``batch``) for batches of
    ``batch``'s shapes and dtypes, ``jitted`` for any other: a variable-length dataset
    padded to each batch's longest sequence changes the time axis from batch to batch,
    which an executable compiled for one shape refuses."""

    def avals(tree: Any) -> Any:
        return jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), tree)

    first = avals(batch)

    def step(state: Any, batch: Any) -> Any:
        return (compiled if avals(batch) == first else jitted)(state, batch)

    return step


def _write_json(path: str, obj: Any) -> None:
    files.write_json(path, obj)  # atomic, and works on gs:// workdirs


Hook = Callable[[int, state_lib.TrainState], None]


def _before(checkpoints: ckpt_lib.Checkpoints, step: int) -> str:
    """Which checkpoint holds the parameters from before ``step``, named only if it exists."""
    target = nonfinite.restore_target(checkpoints.all_steps(), step)
    if target is None:
        return f"no checkpoint was written before step {step}"
    return f"checkpoint {target} holds the parameters from before step {step}"


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
    # ---------------------------------------------------------------- start-up
    cfg, main = run.config, run.main
    total = int(cfg.train.steps)
    if restart:
        if main:
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

    # ---------------------------------------------------------------- state
    early = EarlyStopping(
        run.best_metric,
        run.best_mode,
        patience=int(cfg.train.early_stopping.patience),
        min_delta=float(cfg.train.early_stopping.min_delta),
    )
    uniform = divergence_lib.uniform_loss(run.task.name, run.info)
    diverge = divergence_lib.DivergenceGuard(
        int(cfg.train.divergence_patience), float(cfg.train.divergence_factor), uniform
    )
    train_it = inputs.iterator(
        run.source,
        cfg,
        run.mesh,
        split="train",
        global_batch_size=int(cfg.train.batch_size),
        repeat=True,
    )

    # Before anything is allocated: a state too large used to hang in device_get.
    check_memory(run.abstract, run.shardings, hint=MEMORY_HINT)
    found = run.restore_latest(report=warn)
    latest, lr_scale, restores, eval_pending, extra = None, 1.0, 0, False, {}
    if found is not None:
        latest, state, extra = found
        train_it.set_state(extra["data"][jax.process_index()])
        early.load(extra.get("early_stopping", {}))
        diverge.load(extra.get("divergence", {}))
        lr_scale = float(extra.get("lr_scale", 1.0))
        restores = int(extra.get("nonfinite_restores", 0))
        eval_pending = bool(extra.get("eval_pending", False))
        if lr_scale != 1.0:
            run.scale_lr(lr_scale)
    else:
        state = run.initial_state()
    start = int(jax.device_get(state.step))
    num_params = state_lib.count_params(state.params)
    ended = "completed" if start >= total else ""
    if extra.get("stop_reason") == "early_stopping" and extra.get("steps") == total:
        ended = "early_stopping"
    summary = record.current_summary(workdir, start)
    if ended and not eval_pending and summary is not None:
        # A finished run: report it as it ended, and leave its config as it was.
        diff = record.changes(record.saved_config(workdir), cfg_lib.to_dict(cfg))
        if diff:
            warn(
                f"the run in {workdir} ended at step {start} ({ended}); not applied: "
                + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in list(diff.items())[:4])
                + ". Use --extend N to train it further, or another workdir."
            )
        run.checkpoints.close()
        return {**summary, "already_finished": True}
    if main:  # the run has accepted the workdir: now its config is recorded
        event = "restart" if restart else ("resume" if found is not None else "start")
        diff = record.accept(workdir, cfg, start, event)
        # The dataset description (vocabulary, sizes) lets rnnlab.train.export.load rebuild
        # the model from the workdir alone, without the data.
        export.write_dataset_info(workdir, run.info)
        if found is not None:
            for text in record.surprising(diff, cfg):
                warn(text)
    writer = metrics_lib.MetricWriter(
        workdir, enabled=main, start_step=latest or 0, loggers=[calls.on_record]
    )
    calls.on_run_start(callbacks_lib.RunInfo(workdir, cfg, run.info, start, total, main))

    # ---------------------------------------------------------------- steps
    train_step = run.jit_train_step()
    meter = progress_lib.Throughput()

    def save(
        step: int, eval_metrics: dict[str, float] | None = None, *, eval_pending: bool = False
    ) -> None:
        extra = {
            "data": ckpt_lib.gather_json(train_it.get_state()),
            "early_stopping": early.state(),
            "divergence": diverge.state(),
            "dataset": integrity.dataset_identity(run.info),
            "lr_scale": lr_scale,
            "nonfinite_restores": restores,
        }
        if eval_pending:  # preempted before the evaluation due at this step
            extra["eval_pending"] = True
        if stop_reason in ("completed", "early_stopping"):  # a late kill rebuilds the summary
            extra["stop_reason"], extra["steps"] = stop_reason, total
        if len(acc):  # between two log steps: the resumed run completes this window
            extra["train_window"] = acc.state()
        jax.block_until_ready(state)  # the steps before belong to training time
        with meter.paused():
            run.checkpoints.save(step, state, extra, metrics=eval_metrics)
            if writer.remote:  # the batched gs:// log is written through with each checkpoint
                writer.flush()
        calls.on_checkpoint(step)

    progress = progress_lib.Progress(start, total, enabled=main)
    if main:
        what = "resuming from step" if latest is not None else "starting at step"
        progress.write(
            f"{cfg.model.name} on {cfg.data.name}: {num_params:,} parameters, "
            f"{jax.device_count()} device(s), {what} {start} of {total}"
        )
        progress.write(
            f"{jax.process_count()} process(es), sharding {cfg.sharding.rules}: "
            + sharding_lib.describe(run.abstract, run.shardings)
        )

    # ---------------------------------------------------------------- loop
    preempt = ckpt_lib.PreemptionFlag()
    acc = metrics_lib.MeanAccumulator()
    acc.load(extra.get("train_window", []))
    stop_reason = ended
    last_train: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    split = cfg.eval.split
    step = start
    paths = None  # the recurrent layers' implementations, recorded at the first step
    guard = nonfinite.NonFiniteGuard(
        int(cfg.train.max_nonfinite), nonfinite.param_names(run.abstract.params)
    )
    nan_steps, poisoned = set(cfg.debug.nan_at_steps), set()
    grace, eval_seconds = float(cfg.train.preemption_grace_s), None
    compiled = False  # the first call of a freshly jitted step compiles it
    paths = None  # the recurrent layers' implementations, recorded at the first step
    if ended and not eval_pending:
        # Killed after its last checkpoint, before summary.json: the checkpoint's evaluation
        # and the log's last window are the run's final metrics.
        last_eval = dict(run.checkpoints.metrics(start) or {})
        trains = [r for r in writer.records() if r["split"] == "train" and r["step"] <= start]
        last = trains[-1] if trains else {}
        last_train = {k: v for k, v in last.items() if k not in ("step", "split", "time")}
        warn(f"summary.json was missing or older than checkpoint {start}; rebuilt from it")
    if eval_pending:  # the evaluation a preempted run deferred
        last_eval = run.evaluate(state, split)
        state = run.observe_validation(state, last_eval)
        writer.write(start, split, last_eval)
        progress.write(f"step {start}: {split} (deferred) " + _fmt(last_eval))
        if early.update(start, last_eval):
            stop_reason = "early_stopping"
        elif start >= total:
            stop_reason = "completed"

    def roll_back(
        first_bad: int, what: str, raise_error: type[Exception], fields: dict[str, Any]
    ) -> int:
        """Stops (raises) or restores the newest checkpoint before ``first_bad``, as
        ``train.nonfinite_action`` says; returns the step restored."""
        nonlocal restores, lr_scale, train_step, state, acc, compiled
        if cfg.train.nonfinite_action == "stop" or (
            restores >= int(cfg.train.nonfinite_max_restores)
        ):
            done = f" after {restores} restore(s)" if restores else ""
            raise raise_error(
                f"{what}{done}. {_before(run.checkpoints, first_bad)}; lower optim.lr, set "
                "optim.clip_norm or train.nonfinite_action='restore'."
            )
        target = nonfinite.restore_target(run.checkpoints.all_steps(), first_bad)
        if target is None:
            raise raise_error(
                f"{what}; no checkpoint before step {first_bad} is left to restore (raise "
                "train.keep_checkpoints or lower train.checkpoint_every)."
            )
        run.checkpoints.wait()
        run.checkpoints.discard_after(target)
        restores += 1
        lr_scale *= float(cfg.train.nonfinite_lr_factor)
        run.scale_lr(lr_scale)
        train_step, compiled = run.jit_train_step(), False
        state, restored = run.restore(target)
        train_it.set_state(restored["data"][jax.process_index()])
        early.load(restored.get("early_stopping", {}))
        diverge.load(restored.get("divergence", {}))
        writer.truncate_after(target)
        writer.write(target, "nonfinite_restore", {**fields, "lr_scale": lr_scale})
        progress.write(
            f"{what}; restored checkpoint {target} with the learning rate scaled by "
            f"{lr_scale:g} (restore {restores} of {cfg.train.nonfinite_max_restores})"
        )
        acc = metrics_lib.MeanAccumulator()
        acc.load(restored.get("train_window", []))
        meter.reset()
        guard.reset()
        diverge.reset_streak()
        return target

    try:
        while step < total and not stop_reason:
            batch = next(train_it)
            if step + 1 in nan_steps and step + 1 not in poisoned:
                poisoned.add(step + 1)
                batch = nonfinite.poison(batch, step + 1)
            meter.add(inputs.tokens_in(batch, jax.process_count()))
            if compiled:
                state, m = train_step(state, inputs.to_global(batch, run.mesh))
            elif paths is None:
                # The first call traces the step: record which implementation each
                # recurrent layer takes (and why a fallback happened) for the header.
                with meter.paused(), dispatch.recording() as paths:  # compilation: no training
                    global_batch = inputs.to_global(batch, run.mesh)
                    # Refused with numbers before it runs: a failed allocation used to hang.
                    # The compiled executable runs the steps from here (no second trace).
                    train_step = _first_shape_compiled(
                        check_step_memory(train_step, state, global_batch, hint=MEMORY_HINT),
                        train_step,
                        global_batch,
                    )
                    state, m = train_step(state, global_batch)
                compiled = True
                if main:
                    progress.write("recurrence: " + dispatch.summary(paths))
            else:
                with meter.paused():  # recompiled after a restore: no training either
                    state, m = train_step(state, inputs.to_global(batch, run.mesh))
                compiled = True
            step += 1
            guard.add(step, m)
            acc.add(m)
            if calls.has_step:
                with meter.paused():
                    calls.on_step(step, state)
            log_now = _is_due(step, int(cfg.train.log_every), total)
            if log_now:
                last_train = acc.result()
                last_train.update(meter.result())
                writer.write(step, "train", last_train)
                progress.update(step, last_train)
            if guard.due() or log_now:
                streak = guard.check()
                if streak is not None:
                    step = roll_back(
                        streak.first,
                        streak.describe(),
                        NonFiniteError,
                        {"first": streak.first, "last": streak.last},
                    )
                    continue
            if log_now:
                found_div = diverge.update(step, float(last_train.get("loss", math.nan)))
                if found_div is not None:
                    window_start = found_div.first - int(cfg.train.log_every) + 1
                    step = roll_back(
                        max(window_start, 1),
                        found_div.describe(),
                        divergence_lib.DivergenceError,
                        {"first": window_start, "last": found_div.last, "diverged": 1},
                    )
                    continue
            # All processes must agree, or some would enter the save while others step on.
            preempted = bool(
                parallel.any_process(preempt.is_set()) or run.checkpoints.reached_preemption(step)
            )
            # An evaluation due now runs only if it fits in the grace period; otherwise the
            # resumed run does it first (same logs, same early stopping).
            # Hosts time the signal and the evaluation differently: they must agree, or one
            # would evaluate (collectives) while another saves.
            defer = preempted and parallel.any_process(
                not (eval_seconds is not None and preempt.elapsed() + 2 * eval_seconds < grace)
            )
            eval_metrics = None
            if _is_due(step, int(cfg.train.eval_every), total) and not defer:
                jax.block_until_ready(state)
                with meter.paused():
                    t_eval = time.perf_counter()
                    last_eval = run.evaluate(state, split)
                    # Before the save, so the checkpoint holds the trigger's view of this loss.
                    state = run.observe_validation(state, last_eval)
                    eval_seconds = time.perf_counter() - t_eval
                eval_metrics = last_eval
                writer.write(step, split, last_eval)
                progress.write(f"step {step}: {split} " + _fmt(last_eval))
                if early.update(step, last_eval):
                    stop_reason = "early_stopping"
                    progress.write(
                        f"early stopping at step {step}: {run.best_metric} has not improved "
                        f"by {early.min_delta} for {early.patience} evaluations "
                        f"(best {early.best:.4f} at step {early.best_step})"
                    )
            # A callback's requests: every process agrees at the steps they all log or
            # evaluate (a collective), a single process at every step.
            agree = jax.process_count() > 1 and (log_now or eval_metrics is not None)
            asked_stop, asked_save = calls.requests(agree=agree)
            if asked_stop and not stop_reason and not preempted:
                stop_reason = "callback"
                progress.write(f"stopped at step {step}: {asked_stop}")
            if stop_reason == "" and step >= total and not preempted:
                stop_reason = "completed"
            if preempted:
                pending = defer and _is_due(step, int(cfg.train.eval_every), total)
                save(step, eval_metrics, eval_pending=pending)
                run.checkpoints.wait()
                interrupted = preempt.signum == signal.SIGINT
                stop_reason = "interrupted" if interrupted else "preempted"
                what = "interrupted" if interrupted else "preempted"
                progress.write(
                    f"{what} at step {step}: checkpoint saved {preempt.elapsed():.1f} s after "
                    f"the signal (grace period {grace:g} s); rerun to resume"
                )
            elif (
                eval_metrics is not None
                or asked_save
                or stop_reason == "callback"
                or _is_due(step, int(cfg.train.checkpoint_every), total)
            ):
                save(step, eval_metrics)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the loop's polling
        save(step)
        run.checkpoints.wait()
        progress.close()
        raise
    except ckpt_lib.CheckpointWriteError:
        raise
    except OSError as e:
        if e.errno not in _WRITE_ERRNOS:
            raise
        # A log or event file: name the workdir and what is left, as for a checkpoint.
        raise run.checkpoints.write_error(f"could not write to workdir {workdir}", e) from e
    finally:
        preempt.close()
        failing = sys.exc_info()[1] is not None
        try:
            writer.flush()
            # Whatever ends the loop (an error included), pending asynchronous saves complete.
            run.checkpoints.wait()
        except Exception:
            if not failing:  # else the error that ended the loop is the one to report
                raise
    progress.close()

    # ---------------------------------------------------------------- end of run
    stopped_early = stop_reason in ("preempted", "interrupted")
    if stop_reason == "callback" and calls.control.stop_reason:
        summary_reason = {"callback_reason": calls.control.stop_reason}
    else:
        summary_reason = {}
    summary = {
        "steps": step,
        "stop_reason": stop_reason,
        **summary_reason,
        "parameters": num_params,
        "wall_time_s": round(time.time() - t_start, 2),
        "final": {"train": last_train, split: last_eval},
        "best": early.summary(),
        "nonfinite_updates": int(jax.device_get(state.nonfinite_total)),
        "nonfinite_restores": restores,
        "lr_scale": lr_scale,
        "workdir": files.absolute(workdir),
        "plots": files.join(files.absolute(workdir), "plots"),
    }
    if ended and not eval_pending:
        summary["rebuilt_from_checkpoint"] = start
    writer.close()
    with EndOfRun(step, enabled=main) as end:  # SIGTERM now skips to the summary (exit 0)
        with end.optional():
            _finish(run, state, step, summary, stopped_early, workdir)
        if end.stopped:
            summary["end_of_run_skipped"] = signal.Signals(end.signum).name
        if main:
            summary["headline"] = headline(summary, run.task.name, run.info)
            _write_json(files.join(workdir, "summary.json"), summary)
    calls.on_run_end(summary)
    return summary


def _finish(run, state, step, summary, stopped_early, workdir) -> None:
    """The optional end of a run: a sample, the task's report, the plots."""
    cfg, main = run.config, run.main
    if not stopped_early and run.task.name == "lm" and cfg.sample.length > 0:
        # Restoring and gathering sharded parameters are collectives: every process joins.
        best = run.checkpoints.best_step()
        params_state = state if best is None or best == step else run.restore(best)[0]
        params_state = run.eval_state(params_state)
        host = parallel.to_host((params_state.params, params_state.rest))
        if main:
            text = sampling.sample_text(run, params_state.replace(params=host[0], rest=host[1]))
            files.write_text(files.join(workdir, "samples.txt"), text + "\n")
            summary["sample"] = text
    if not stopped_early and run.task.report is not None:
        # The task's end-of-run report (baselines, decoded examples, figures) on the best
        # checkpoint; every process joins, as it may evaluate.
        best = run.checkpoints.best_step()
        report_state = state if best is None or best == step else run.restore(best)[0]
        report_state = run.eval_state(report_state)
        summary["report"] = run.task.report(run, report_state, workdir)
    if main and not stopped_early:
        plots.plot_workdir(workdir)
