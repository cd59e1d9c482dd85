"""The training loop: ``train(config, workdir)``.

Sections, in order: start-up (processes, mesh, config validation), data description and
model, optimizer, state (restore or init), jitted steps, the loop (log, evaluate, early
stopping, checkpoint, preemption, non-finite guard), and the end of the run (final
evaluation, summary, plots, samples). Running ``train`` again on the same workdir resumes
from the latest checkpoint with the same data position and random numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
from flax import nnx

from rnnlab import optim, parallel
from rnnlab.train import checkpoint as ckpt_lib
from rnnlab.train import config as cfg_lib
from rnnlab.train import files, inputs, plots, sampling, tasks
from rnnlab.train import metrics as metrics_lib
from rnnlab.train import sharding as sharding_lib
from rnnlab.train import state as state_lib
from rnnlab.train.early_stopping import EarlyStopping
from rnnlab.train.progress import Progress
from rnnlab.train.step import make_eval_step, make_train_step


class NonFiniteError(RuntimeError):
    """Too many consecutive non-finite updates; the message names the step and the loss."""


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
        init = lambda: state_lib.init_state(config, self.info, self.tx, config.train.batch_size)
        self.abstract = jax.eval_shape(init)
        self.rules = sharding_lib.rules(config, self.mesh)
        self.shardings = state_lib.state_shardings(self.abstract, self.mesh, self.rules)
        self._init = jax.jit(init, out_shardings=self.shardings)
        self._eval_step = None

    # -- state ----------------------------------------------------------------------------
    def initial_state(self) -> state_lib.TrainState:
        return self._init()

    def restore(self, step: int | None = None) -> tuple[state_lib.TrainState, dict]:
        target = ckpt_lib.abstract_with_shardings(self.abstract, self.shardings)
        return self.checkpoints.restore(target, step)

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
    def evaluate(self, state: state_lib.TrainState, split: str) -> dict[str, float]:
        """Metrics of ``state`` on ``split`` (whole split, or ``eval.max_batches``)."""
        cfg = self.config
        batch_size = int(cfg.eval.batch_size)
        if self._eval_step is None:
            step = make_eval_step(self.graphdef, self.task, stateful=self.stateful)
            self._eval_step = jax.jit(step, out_shardings=(parallel.replicated(self.mesh), None))
        carry = None
        if self.stateful:
            graphdef = self.graphdef
            make_carry = lambda p, r: nnx.merge(graphdef, p, r).init_carry(batch_size)
            carry = jax.jit(make_carry, out_shardings=parallel.data_sharding(self.mesh))(
                state.params, state.rest
            )
        it = inputs.iterator(
            self.source, cfg, self.mesh, split=split, global_batch_size=batch_size, repeat=False
        )
        results = []
        for i, batch in enumerate(it):
            if cfg.eval.max_batches and i >= cfg.eval.max_batches:
                break
            sums, carry = self._eval_step(
                state.params, state.rest, carry, inputs.to_global(batch, self.mesh)
            )
            results.append(sums)
        totals = metrics_lib.sum_sums(parallel.to_host(results))
        means = tasks.means(totals)
        means.update(self.task.derive(means, self.info))
        return means


def _is_due(step: int, every: int, last: int) -> bool:
    return step == last or (every > 0 and step % every == 0)


def _write_json(path: str, obj: Any) -> None:
    files.write_json(path, obj)  # atomic, and works on gs:// workdirs


def train(config: cfg_lib.ConfigDict, workdir: str, *, source: Any = None) -> dict[str, Any]:
    """Trains (or resumes) the run described by ``config`` in ``workdir``.

    Returns the summary (also written to ``summary.json``). Raises :class:`ConfigError`
    before any training for a bad config, :class:`NonFiniteError` after
    ``train.max_nonfinite`` consecutive skipped updates.
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
    latest = run.checkpoints.latest_step()
    if latest is not None:
        state, extra = run.restore(latest)
        train_it.set_state(extra["data"][jax.process_index()])
        early.load(extra.get("early_stopping", {}))
        writer.truncate_after(latest)
    else:
        state = run.initial_state()
    start = int(jax.device_get(state.step))
    num_params = state_lib.count_params(state.params)

    # ---------------------------------------------------------------- steps
    train_step = run.jit_train_step()

    def save(step: int, eval_metrics: dict[str, float] | None = None) -> None:
        extra = {
            "data": ckpt_lib.gather_json(train_it.get_state()),
            "early_stopping": early.state(),
        }
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
    stop_reason = "completed" if start >= total else ""
    last_train: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    split = cfg.eval.split
    tokens, t_log, steps_since = 0, time.perf_counter(), 0
    step = start
    try:
        while step < total and not stop_reason:
            batch = next(train_it)
            tokens += inputs.tokens_in(batch, jax.process_count())
            state, m = train_step(state, inputs.to_global(batch, run.mesh))
            step += 1
            steps_since += 1
            acc.add(m)
            if _is_due(step, int(cfg.train.log_every), total):
                last_train = acc.result()
                elapsed = time.perf_counter() - t_log
                last_train["steps_per_second"] = steps_since / elapsed
                last_train["tokens_per_second"] = tokens / elapsed
                last_train["step_time"] = elapsed / steps_since
                tokens, t_log, steps_since = 0, time.perf_counter(), 0
                writer.write(step, "train", last_train)
                progress.update(step, last_train)
                streak = int(jax.device_get(state.nonfinite))
                if cfg.train.max_nonfinite and streak >= cfg.train.max_nonfinite:
                    raise NonFiniteError(
                        f"{streak} consecutive non-finite updates (steps {step - streak + 1} to "
                        f"{step}, all skipped); last logged loss {last_train.get('loss')}, "
                        f"gradient norm {last_train.get('grad_norm')}. The last checkpoint holds "
                        "the parameters before them; lower optim.lr or set optim.clip_norm."
                    )
            eval_metrics = None
            if _is_due(step, int(cfg.train.eval_every), total):
                last_eval = run.evaluate(state, split)
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
            if eval_metrics is not None or _is_due(step, int(cfg.train.checkpoint_every), total):
                save(step, eval_metrics)
            if preempt.is_set() or run.checkpoints.reached_preemption(step):
                save(step)
                stop_reason = "preempted"
                progress.write(f"preempted at step {step}: checkpoint saved; rerun to resume")
            elif stop_reason == "" and step >= total:
                stop_reason = "completed"
    except KeyboardInterrupt:
        save(step)
        run.checkpoints.wait()
        progress.close()
        raise
    finally:
        preempt.close()
        writer.flush()
    run.checkpoints.wait()
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
        "workdir": files.absolute(workdir),
        "plots": files.join(files.absolute(workdir), "plots"),
    }
    if stop_reason != "preempted" and run.task.name == "lm" and cfg.sample.length > 0:
        # Restoring and gathering sharded parameters are collectives: every process joins.
        best = run.checkpoints.best_step()
        params_state = state if best is None or best == step else run.restore(best)[0]
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
        summary["report"] = run.task.report(run, report_state, workdir)
    if main and stop_reason != "preempted":
        plots.plot_workdir(workdir)
    if main:
        _write_json(files.join(workdir, "summary.json"), summary)
    writer.close()
    return summary
