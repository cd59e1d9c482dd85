"""``Run``: everything built from a config that ``train``, ``evaluate`` and ``sample``
share: the mesh, the validated config, the dataset description and task, the abstract
model and optimizer, state shapes and shardings, the jitted initialiser and evaluation,
and the checkpoints (opened on first use)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
from flax import nnx

from rnnlab import optim, parallel, target, tasks
from rnnlab.optim import observe_validation
from rnnlab.train import checkpoint as ckpt_lib
from rnnlab.train import config as cfg_lib
from rnnlab.train import files, inputs, integrity
from rnnlab.train import metric_log as metrics_lib
from rnnlab.train import sharding as sharding_lib
from rnnlab.train import state as state_lib
from rnnlab.train.options import RunOptions
from rnnlab.train.step import make_eval_step, make_train_step


def guard_window(config: cfg_lib.ConfigDict | RunOptions) -> int:
    """How far back (steps) ``nonfinite_action = "restore"`` may have to go: the divergence
    guard's ``patience`` log windows, or twice ``max_nonfinite`` (the non-finite guard
    checks every ``max_nonfinite`` steps); 0 when the action is ``"stop"``."""
    t = config.train
    if t.nonfinite_action != "restore":
        return 0
    divergence = int(t.divergence_patience) * int(t.log_every) if t.log_every > 0 else 0
    return max(divergence, 2 * int(t.max_nonfinite))


class Run:
    """Everything built from a config that ``train``, ``evaluate`` and ``sample`` share."""

    def __init__(
        self,
        config: cfg_lib.ConfigDict,
        workdir: str,
        *,
        source: Any = None,
        devices: Sequence[Any] | None = None,
        read_only: bool = False,
    ):
        """``devices``: the devices of the mesh (default: all devices of all processes).
        ``read_only``: only read checkpoints (``eval``, ``sample``): a run training in the
        same workdir keeps its checkpoint writes in progress."""
        parallel.initialize()
        self.workdir = files.check_path(workdir)
        self.source = source if source is not None else inputs.default_source()
        self.mesh = sharding_lib.mesh_from_config(config, devices)
        config = cfg_lib.resolved(config)
        # From the mesh, not the local runtime: a run built on a TPU topology's devices to
        # compile for it (rnnlab compile) is checked against that slice's chips and hosts.
        context = {
            "num_devices": self.mesh.size,
            "data_parallel": parallel.data_parallel_size(self.mesh),
            "process_count": len({d.process_index for d in self.mesh.devices.flat}),
        }
        # The typed groups (rnnlab.train.options.RunOptions), which the engine reads, and the
        # config they came from (recorded as config.json).
        self.options = cfg_lib.validate(config, context)
        self.config = config
        self.info = inputs.dataset_info(self.source, config)
        self.task = tasks.get(self.info["task"])
        options = self.options
        model = state_lib.abstract_model(options, self.info)
        self.graphdef = nnx.split(model, nnx.Param, ...)[0]
        self.stateful = state_lib.stateful(model, options)
        self.tx = optim.make(**dataclasses.asdict(options.optim))
        es = options.train.early_stopping
        self.best_metric = es.metric or self.task.best_metric
        default_mode = self.task.best_mode if self.best_metric == self.task.best_metric else "min"
        self.best_mode = es.mode or default_mode
        self.main = jax.process_index() == 0
        self.read_only = read_only
        self._checkpoints: ckpt_lib.Checkpoints | None = None
        init = state_lib.initializer(options, self.info, self.tx, options.train.batch_size)
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
        self._set_lr_scale = jax.jit(
            lambda s, v: s.replace(opt_state=optim.set_lr_scale(s.opt_state, v)),
            out_shardings=self.shardings,
            donate_argnums=0,
        )
        self._observe = jax.jit(
            lambda s, v: s.replace(opt_state=observe_validation(s.opt_state, v)),
            out_shardings=self.shardings,
            donate_argnums=0,
        )

    @property
    def checkpoints(self) -> ckpt_lib.Checkpoints:
        """The checkpoint manager, opened on first use: orbax tidies the directory when it
        opens it, which ``train`` must do only once it holds the workdir's lock."""
        if self._checkpoints is None:
            cfg = self.options
            self._checkpoints = ckpt_lib.Checkpoints(
                files.join(self.workdir, "checkpoints"),
                keep=cfg.train.keep_checkpoints,
                best_metric=self.best_metric,
                best_mode=self.best_mode,
                async_save=cfg.train.async_checkpoints,
                read_only=self.read_only,
                keep_before=guard_window(cfg),
            )
        return self._checkpoints

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
                f"back intact (all moved to {ckpt_lib.CORRUPT_DIR}/); rerun with --restart to "
                "start over from step 0 (the old logs are kept), or restore one by hand",
            )
        return found

    def set_lr_scale(self, state: state_lib.TrainState, scale: float) -> state_lib.TrainState:
        """``state`` with the learning rate scaled by ``scale`` from its next update on
        (:func:`rnnlab.optim.set_lr_scale`; the jitted step is not compiled again). Donates
        ``state``."""
        return self._set_lr_scale(state, scale)

    # -- steps ----------------------------------------------------------------------------
    def jit_train_step(self) -> Callable[..., tuple[state_lib.TrainState, dict[str, Any]]]:
        """The jitted ``train_step(state, batch) -> (state, metrics)`` the loop runs: the
        state laid out by ``self.shardings`` and donated, the batch split over the mesh's
        data axes, the metrics replicated (means over the whole global batch)."""
        step_fn = make_train_step(self.graphdef, self.tx, self.task, stateful=self.stateful)
        return jax.jit(
            target.partitioned_over(self.mesh.size, step_fn),
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
        if self.options.optim.optimizer != "nt_asgd":
            return state
        return self._observe(state, jax.numpy.float32(metrics["loss"]))

    def batches(self, split: str):
        """This process's host batches of ``split`` at the evaluation batch size, once over."""
        return inputs.iterator(
            self.source,
            self.config,
            self.mesh,
            split=split,
            global_batch_size=self.options.eval.batch_size,
            repeat=False,
        )

    def to_global(self, batch):
        """A host batch as global arrays sharded over the run's mesh."""
        return inputs.to_global(batch, self.mesh)

    def evaluate(self, state: state_lib.TrainState, split: str) -> dict[str, float]:
        """Metrics of ``state`` on ``split`` (whole split, or ``eval.max_batches``), on the
        averaged weights when the optimizer keeps an average (:meth:`eval_state`)."""
        cfg = self.options
        state = self.eval_state(state)
        batch_size = cfg.eval.batch_size
        if self._eval_step is None:
            step = make_eval_step(self.graphdef, self.task, stateful=self.stateful)
            self._eval_step = jax.jit(
                target.partitioned_over(self.mesh.size, step),
                out_shardings=(parallel.replicated(self.mesh), None),
            )
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
