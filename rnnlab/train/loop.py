"""The training loop: ``train(config, workdir)``.

Sections, in order: start-up (processes, mesh, config validation), data description and
model, optimizer, state (restore or init), jitted steps, the loop (log, evaluate, early
stopping, checkpoint, preemption, non-finite guard), and the end of the run (final
evaluation, summary, plots, samples). Running ``train`` again on the same workdir resumes
from the latest checkpoint with the same data position and random numbers.
"""

from __future__ import annotations

import errno
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
from flax import nnx

from rnnlab import optim, parallel, tasks
from rnnlab.layers import dispatch
from rnnlab.regularizers import observe_validation
from rnnlab.train import checkpoint as ckpt_lib
from rnnlab.train import config as cfg_lib
from rnnlab.train import files, inputs, integrity, nonfinite, plots, sampling
from rnnlab.train import metrics as metrics_lib
from rnnlab.train import sharding as sharding_lib
from rnnlab.train import state as state_lib
from rnnlab.train.early_stopping import EarlyStopping
from rnnlab.train.progress import Progress
from rnnlab.train.step import make_eval_step, make_train_step


class NonFiniteError(RuntimeError):
    """Too many consecutive non-finite updates; the message names the steps, the loss and the
    largest gradient."""


class Run:
    """Everything built from a config that ``train``, ``evaluate`` and ``sample`` share."""

    def __init__(
        self,
        config: cfg_lib.ConfigDict,
        workdir: str,
        *,
        source: Any = None,
        devices: Sequence[Any] | None = None,
    ):
        """``devices``: the devices of the mesh (default: all devices of all processes)."""
        parallel.initialize()
        self.workdir = workdir
        self.source = source if source is not None else inputs.default_source()
        self.mesh = sharding_lib.make_mesh(config, devices)
        config = cfg_lib.resolved(config)
        context = {
            "num_devices": jax.device_count(),
            "data_parallel": parallel.data_parallel_size(self.mesh),
            "process_count": jax.process_count(),
        }
        cfg_lib.validate(config, context)
        self.config = config
        self.info = inputs.dataset_info(self.source, config)
        self.task = tasks.get(self.info["task"])
        model = state_lib.abstract_model(config, self.info)
        self.graphdef = nnx.split(model, nnx.Param, ...)[0]
        self.stateful = state_lib.stateful(model, config)
        self.tx = optim.make(**config.optim.to_dict())
        es = config.train.early_stopping
        self.best_metric = es.metric or self.task.best_metric
        default_mode = self.task.best_mode if self.best_metric == self.task.best_metric else "min"
        self.best_mode = es.mode or default_mode
        self.main = jax.process_index() == 0
        self.checkpoints = ckpt_lib.Checkpoints(
            files.join(workdir, "checkpoints"),
            keep=int(config.train.keep_checkpoints),
            best_metric=self.best_metric,
            best_mode=self.best_mode,
            async_save=bool(config.train.async_checkpoints),
        )
        init = state_lib.initializer(config, self.info, self.tx, config.train.batch_size)
        self.abstract = jax.eval_shape(init)
        self.rules = sharding_lib.rules(config, self.mesh)
        self.shardings = state_lib.state_shardings(self.abstract, self.mesh, self.rules)
        self._init = jax.jit(init, out_shardings=self.shardings)
        self._eval_step = None
        # nt_asgd / ema_decay: evaluation, the best checkpoint and samples use the average.
        self.averaging = optim.has_average(self.abstract.opt_state)
        self._eval_params = jax.jit(
            lambda s: optim.eval_params(s.opt_state, s.params),
            out_shardings=self.shardings.params,
        )
        self._observe = jax.jit(
            lambda s, v: s.replace(opt_state=observe_validation(s.opt_state, v)),
            out_shardings=self.shardings,
            donate_argnums=0,
        )

    # -- state ----------------------------------------------------------------------------
    def initial_state(self) -> state_lib.TrainState:
        return self._init()

    def restore(self, step: int | None = None) -> tuple[state_lib.TrainState, dict]:
        """Checkpoint ``step`` (default: the latest), checked against its seal and against
        this run's dataset (:mod:`rnnlab.train.integrity`)."""
        target = ckpt_lib.abstract_with_shardings(self.abstract, self.shardings)
        return self.checkpoints.restore(target, step, precheck=self._same_dataset)

    def _same_dataset(self, step: int, extra: dict[str, Any]) -> None:
        where = f"checkpoint {step} in {self.workdir}"
        integrity.check_dataset(extra.get("dataset"), self.info, where)

    def restore_latest(
        self, report: Callable[[str], None]
    ) -> tuple[int, state_lib.TrainState, dict] | None:
        """The newest checkpoint that reads back intact (damaged ones are reported and moved
        aside), or ``None`` when the run has no checkpoint yet."""
        target = ckpt_lib.abstract_with_shardings(self.abstract, self.shardings)
        had = self.checkpoints.all_steps()
        found = self.checkpoints.restore_latest(target, report=report, precheck=self._same_dataset)
        if found is None and had:
            raise integrity.CorruptCheckpointError(
                None,
                f"none of the checkpoints {sorted(had)} in {self.checkpoints.directory} reads "
                f"back intact (all moved to {ckpt_lib.CORRUPT_DIR}/); start over in another "
                "workdir or restore one by hand",
            )
        return found

    def scale_lr(self, scale: float) -> None:
        """Rebuilds the optimizer with ``optim.lr * scale`` (same state structure); call
        :meth:`jit_train_step` again afterwards."""
        kwargs = self.config.optim.to_dict()
        kwargs["lr"] = float(kwargs["lr"]) * scale
        self.tx = optim.make(**kwargs)

    # -- steps ----------------------------------------------------------------------------
    def jit_train_step(self) -> Callable[..., tuple[state_lib.TrainState, dict[str, Any]]]:
        """The jitted ``train_step(state, batch) -> (state, metrics)`` the loop runs: the
        state laid out by ``self.shardings`` and donated, the batch split over the mesh's
        data axes, the metrics replicated (means over the whole global batch)."""
        step_fn = make_train_step(self.graphdef, self.tx, self.task, stateful=self.stateful)
        return jax.jit(
            step_fn,
            in_shardings=(self.shardings, parallel.data_sharding(self.mesh)),
            out_shardings=(self.shardings, parallel.replicated(self.mesh)),
            donate_argnums=0,
        )

    # -- evaluation -----------------------------------------------------------------------
    def eval_state(self, state: state_lib.TrainState) -> state_lib.TrainState:
        """``state`` with the parameters to evaluate: the weight average of ``nt_asgd``
        (once started) or ``optim.ema_decay``, else ``state`` itself. Idempotent."""
        if not self.averaging:
            return state
        return state.replace(params=self._eval_params(state))

    def observe_validation(
        self, state: state_lib.TrainState, metrics: dict[str, float]
    ) -> state_lib.TrainState:
        """Feeds the validation ``loss`` to the ``nt_asgd`` trigger (donates ``state``)."""
        if self.config.optim.optimizer != "nt_asgd":
            return state
        return self._observe(state, jax.numpy.float32(metrics["loss"]))

    def batches(self, split: str):
        """This process's host batches of ``split`` at the evaluation batch size, once over."""
        return inputs.iterator(
            self.source,
            self.config,
            self.mesh,
            split=split,
            global_batch_size=int(self.config.eval.batch_size),
            repeat=False,
        )

    def to_global(self, batch):
        """A host batch as global arrays sharded over the run's mesh."""
        return inputs.to_global(batch, self.mesh)

    def evaluate(self, state: state_lib.TrainState, split: str) -> dict[str, float]:
        """Metrics of ``state`` on ``split`` (whole split, or ``eval.max_batches``), on the
        averaged weights when the optimizer keeps an average (:meth:`eval_state`)."""
        cfg = self.config
        state = self.eval_state(state)
        batch_size = int(cfg.eval.batch_size)
        if self._eval_step is None:
            step = make_eval_step(self.graphdef, self.task, stateful=self.stateful)
            self._eval_step = jax.jit(step, out_shardings=(parallel.replicated(self.mesh), None))
        carry = None
        if self.stateful:
            make_carry = state_lib.carry_initializer(self.graphdef, batch_size)
            carry = jax.jit(make_carry, out_shardings=parallel.data_sharding(self.mesh))(
                state.params, state.rest
            )
        results = []
        for i, batch in enumerate(self.batches(split)):
            if cfg.eval.max_batches and i >= cfg.eval.max_batches:
                break
            sums, carry = self._eval_step(state.params, state.rest, carry, self.to_global(batch))
            results.append(sums)
        totals = metrics_lib.sum_sums(parallel.to_host(results))
        means = tasks.means(totals)
        means.update(self.task.derive(means, self.info))
        return means


def _is_due(step: int, every: int, last: int) -> bool:
    return step == last or (every > 0 and step % every == 0)


# Errors of a workdir that cannot take more writes: full, over quota, read-only, forbidden.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))


def _write_json(path: str, obj: Any) -> None:
    files.write_json(path, obj)  # atomic, and works on gs:// workdirs


Hook = Callable[[int, state_lib.TrainState], None]


def train(
    config: cfg_lib.ConfigDict,
    workdir: str,
    *,
    source: Any = None,
    hooks: Sequence[Hook] = (),
) -> dict[str, Any]:
    """Trains (or resumes) the run described by ``config`` in ``workdir``.

    Args:
      config: the experiment config (see :func:`rnnlab.train.config.base_config`).
      workdir: where everything the run produces goes; an existing run there resumes.
      source: the data module (``info``/``load``); ``rnnlab.data`` by default.
      hooks: ``hook(step, state)`` called on every process after each update, before
        logging and checkpointing (fault injection, custom probes). The state must not
        be kept: the next step donates its buffers.

    Returns:
      The summary (also written to ``summary.json``).

    Raises:
      ConfigError: a bad config, before any training.
      NonFiniteError: ``train.max_nonfinite`` consecutive skipped updates.
    """
    t_start = time.time()
    # ---------------------------------------------------------------- start-up
    run = Run(config, workdir, source=source)
    cfg, main = run.config, run.main
    if main:
        files.makedirs(workdir)
        _write_json(files.join(workdir, "config.json"), cfg_lib.to_dict(cfg))
    writer = metrics_lib.MetricWriter(workdir, enabled=main)
    total = int(cfg.train.steps)

    # ---------------------------------------------------------------- state
    early = EarlyStopping(
        run.best_metric,
        run.best_mode,
        patience=int(cfg.train.early_stopping.patience),
        min_delta=float(cfg.train.early_stopping.min_delta),
    )
    train_it = inputs.iterator(
        run.source,
        cfg,
        run.mesh,
        split="train",
        global_batch_size=int(cfg.train.batch_size),
        repeat=True,
    )

    def warn(text: str) -> None:
        if main:
            print(f"rnnlab: warning: {text}", file=sys.stderr, flush=True)

    found = run.restore_latest(report=warn)
    latest, lr_scale, restores, eval_pending = None, 1.0, 0, False
    if found is not None:
        latest, state, extra = found
        train_it.set_state(extra["data"][jax.process_index()])
        early.load(extra.get("early_stopping", {}))
        writer.truncate_after(latest)
        lr_scale = float(extra.get("lr_scale", 1.0))
        restores = int(extra.get("nonfinite_restores", 0))
        eval_pending = bool(extra.get("eval_pending", False))
        if lr_scale != 1.0:
            run.scale_lr(lr_scale)
    else:
        state = run.initial_state()
        # Records of an earlier attempt that died before its first checkpoint are replayed.
        writer.truncate_after(0)
    start = int(jax.device_get(state.step))
    num_params = state_lib.count_params(state.params)
    summary_path = files.join(workdir, "summary.json")
    if start >= total and files.exists(summary_path) and not eval_pending:
        # A finished run: report it as it ended instead of overwriting its summary.
        writer.close()
        run.checkpoints.close()
        return files.read_json(summary_path)

    # ---------------------------------------------------------------- steps
    train_step = run.jit_train_step()

    def save(
        step: int, eval_metrics: dict[str, float] | None = None, *, eval_pending: bool = False
    ) -> None:
        extra = {
            "data": ckpt_lib.gather_json(train_it.get_state()),
            "early_stopping": early.state(),
            "dataset": integrity.dataset_identity(run.info),
            "lr_scale": lr_scale,
            "nonfinite_restores": restores,
        }
        if eval_pending:  # preempted before the evaluation due at this step
            extra["eval_pending"] = True
        if len(acc):  # between two log steps: the resumed run completes this window
            extra["train_window"] = acc.state()
        run.checkpoints.save(step, state, extra, metrics=eval_metrics)

    progress = Progress(start, total, enabled=main)
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
    acc.load(extra.get("train_window", []) if found is not None else [])
    stop_reason = "completed" if start >= total else ""
    last_train: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    split = cfg.eval.split
    tokens, t_log, steps_since = 0, time.perf_counter(), 0
    step = start
    paths = None  # the recurrent layers' implementations, recorded at the first step
    guard = nonfinite.NonFiniteGuard(
        int(cfg.train.max_nonfinite), nonfinite.param_names(run.abstract.params)
    )
    nan_steps, poisoned = set(cfg.debug.nan_at_steps), set()
    grace, eval_seconds = float(cfg.train.preemption_grace_s), None
    if eval_pending:  # the evaluation a preempted run deferred
        last_eval = run.evaluate(state, split)
        state = run.observe_validation(state, last_eval)
        writer.write(start, split, last_eval)
        progress.write(f"step {start}: {split} (deferred) " + _fmt(last_eval))
        if early.update(start, last_eval):
            stop_reason = "early_stopping"
        elif start >= total:
            stop_reason = "completed"
    try:
        while step < total and not stop_reason:
            batch = next(train_it)
            if step + 1 in nan_steps and step + 1 not in poisoned:
                poisoned.add(step + 1)
                batch = nonfinite.poison(batch, step + 1)
            tokens += inputs.tokens_in(batch, jax.process_count())
            if paths is None:
                # The first call traces the step: record which implementation each
                # recurrent layer takes (and why a fallback happened) for the header.
                with dispatch.recording() as paths:
                    state, m = train_step(state, inputs.to_global(batch, run.mesh))
                if main:
                    progress.write("recurrence: " + dispatch.summary(paths))
            else:
                state, m = train_step(state, inputs.to_global(batch, run.mesh))
            step += 1
            steps_since += 1
            guard.add(step, m)
            acc.add(m)
            for hook in hooks:
                hook(step, state)
            if _is_due(step, int(cfg.train.log_every), total):
                last_train = acc.result()
                elapsed = time.perf_counter() - t_log
                last_train["steps_per_second"] = steps_since / elapsed
                last_train["tokens_per_second"] = tokens / elapsed
                last_train["step_time"] = elapsed / steps_since
                tokens, t_log, steps_since = 0, time.perf_counter(), 0
                writer.write(step, "train", last_train)
                progress.update(step, last_train)
            if guard.due() or _is_due(step, int(cfg.train.log_every), total):
                streak = guard.check()
                if streak is not None:
                    if cfg.train.nonfinite_action == "stop" or (
                        restores >= int(cfg.train.nonfinite_max_restores)
                    ):
                        done = f" after {restores} restore(s)" if restores else ""
                        raise NonFiniteError(
                            f"{streak.describe()}{done}. The last checkpoint before step "
                            f"{streak.first} holds the parameters before them; lower optim.lr, "
                            "set optim.clip_norm or train.nonfinite_action='restore'."
                        )
                    target = nonfinite.restore_target(run.checkpoints.all_steps(), streak)
                    if target is None:
                        raise NonFiniteError(
                            f"{streak.describe()}; no checkpoint before step {streak.first} is "
                            "left to restore (raise train.keep_checkpoints or lower "
                            "train.checkpoint_every)."
                        )
                    run.checkpoints.wait()
                    run.checkpoints.discard_after(target)
                    restores += 1
                    lr_scale *= float(cfg.train.nonfinite_lr_factor)
                    run.scale_lr(lr_scale)
                    train_step = run.jit_train_step()
                    state, extra = run.restore(target)
                    train_it.set_state(extra["data"][jax.process_index()])
                    early.load(extra.get("early_stopping", {}))
                    writer.truncate_after(target)
                    writer.write(
                        target,
                        "nonfinite_restore",
                        {"first": streak.first, "last": streak.last, "lr_scale": lr_scale},
                    )
                    progress.write(
                        f"{streak.describe()}; restored checkpoint {target} with the learning "
                        f"rate scaled by {lr_scale:g} (restore {restores} of "
                        f"{cfg.train.nonfinite_max_restores})"
                    )
                    step, acc = target, metrics_lib.MeanAccumulator()
                    acc.load(extra.get("train_window", []))
                    tokens, t_log, steps_since = 0, time.perf_counter(), 0
                    guard.reset()
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
                t_eval = time.perf_counter()
                last_eval = run.evaluate(state, split)
                # Before the save, so the checkpoint holds the trigger's view of this loss.
                state = run.observe_validation(state, last_eval)
                eval_seconds = time.perf_counter() - t_eval
                eval_metrics = last_eval
                writer.write(step, split, last_eval)
                progress.write(
                    f"step {step}: {split} "
                    + ", ".join(f"{k} {v:.4f}" for k, v in sorted(last_eval.items()))
                )
                if early.update(step, last_eval):
                    stop_reason = "early_stopping"
                    progress.write(
                        f"early stopping at step {step}: {run.best_metric} has not improved "
                        f"by {early.min_delta} for {early.patience} evaluations "
                        f"(best {early.best:.4f} at step {early.best_step})"
                    )
            if preempted:
                pending = defer and _is_due(step, int(cfg.train.eval_every), total)
                save(step, eval_metrics, eval_pending=pending)
                run.checkpoints.wait()
                stop_reason = "preempted"
                progress.write(
                    f"preempted at step {step}: checkpoint saved {preempt.elapsed():.1f} s after "
                    f"the signal (grace period {grace:g} s); rerun to resume"
                )
            elif eval_metrics is not None or _is_due(step, int(cfg.train.checkpoint_every), total):
                save(step, eval_metrics)
            if stop_reason == "" and step >= total:
                stop_reason = "completed"
    except KeyboardInterrupt:
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
    summary = {
        "steps": step,
        "stop_reason": stop_reason,
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
    if stop_reason != "preempted" and run.task.name == "lm" and cfg.sample.length > 0:
        # Restoring and gathering sharded parameters are collectives: every process joins.
        best = run.checkpoints.best_step()
        params_state = state if best is None or best == step else run.restore(best)[0]
        params_state = run.eval_state(params_state)
        host = parallel.to_host((params_state.params, params_state.rest))
        if main:
            text = sampling.sample_text(run, params_state.replace(params=host[0], rest=host[1]))
            files.write_text(files.join(workdir, "samples.txt"), text + "\n")
            summary["sample"] = text
    if stop_reason != "preempted" and run.task.report is not None:
        # The task's end-of-run report (baselines, decoded examples, figures) on the best
        # checkpoint; every process joins, as it may evaluate.
        best = run.checkpoints.best_step()
        report_state = state if best is None or best == step else run.restore(best)[0]
        report_state = run.eval_state(report_state)
        summary["report"] = run.task.report(run, report_state, workdir)
    if main and stop_reason != "preempted":
        plots.plot_workdir(workdir)
    if main:
        _write_json(files.join(workdir, "summary.json"), summary)
    writer.close()
    return summary
