"""Checkpoints of a run: orbax ``CheckpointManager`` around the train state.

Each checkpoint ``<workdir>/checkpoints/<step>/`` holds two items:

- ``state``: the :class:`~rnnlab.train.state.TrainState` (step, parameters, model variables,
  optimizer state, base random key, carried recurrent state), saved by every process as
  orbax requires for sharded arrays;
- ``extra``: JSON: the data-iterator state of every process (exact resume of the input
  stream), early-stopping bookkeeping and anything else the loop keeps.

Saves are asynchronous (training continues while files are written) and atomic (orbax
writes to a temporary directory and renames it when complete, so a half-written checkpoint
is never picked up). The manager keeps the last ``keep`` checkpoints plus the best one by
a validation metric, which orbax tracks with rnnlab's tie rule (:mod:`rnnlab.train.retention`).
Directories may be ``gs://`` paths (``etils.epath``). A Ctrl-C during a save takes effect
once orbax has started it (:mod:`rnnlab.train.preemption`).

Every save is sealed with fingerprints of its arrays and JSON (:mod:`rnnlab.train.integrity`)
that every restore checks. :meth:`Checkpoints.restore_latest` walks back from the newest
checkpoint to the newest one that reads back intact, moving damaged ones aside to
``<workdir>/corrupt_checkpoints/`` (kept for inspection, never deleted). A save that cannot
be written (disk full, read-only or vanished directory) raises
:class:`CheckpointWriteError`; orbax deletes old checkpoints only after a new one is
committed, so the previous checkpoints stay intact.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies

from rnnlab.parallel import path_to_str
from rnnlab.train import integrity
from rnnlab.train.checkpoint_errors import (
    CheckpointVanishedError,
    CheckpointWriteError,
    describe_error,
)
from rnnlab.train.integrity import CorruptCheckpointError
from rnnlab.train.preemption import PreemptionFlag, interrupts_held
from rnnlab.train.retention import STEP_KEY, KeepOlderThan, Ranking, best_of, choose_step

__all__ = [
    "CORRUPT_DIR",
    "CheckpointVanishedError",
    "CheckpointWriteError",
    "Checkpoints",
    "PreemptionFlag",
    "abstract_with_shardings",
    "as_path",
    "best_of",
    "choose_step",
    "describe_error",
    "gather_json",
]

CORRUPT_DIR = "corrupt_checkpoints"


def as_path(directory: str | epath.Path) -> epath.Path:
    """``gs://...`` stays as is; local paths become absolute (orbax requires it)."""
    text = str(directory)
    if "://" in text:
        return epath.Path(text)
    return epath.Path(text).expanduser().resolve()


class Checkpoints:
    """Saves and restores train states; see the module docstring.

    Args:
      directory: where checkpoints go (``<workdir>/checkpoints``).
      keep: how many of the latest checkpoints to keep.
      best_metric: the metric (in the dict passed to :meth:`save`) that ranks checkpoints;
        the best one is kept in addition to the latest ``keep``.
      best_mode: ``"min"`` or ``"max"``.
      async_save: write in a background thread.
      read_only: only read (a reader beside the run that writes).
      keep_before: also keep the newest checkpoint at least this many steps older than
        the latest (:class:`KeepOlderThan`; 0: none).
    """

    def __init__(
        self,
        directory: str | epath.Path,
        *,
        keep: int = 2,
        best_metric: str | None = None,
        best_mode: str = "min",
        async_save: bool = True,
        read_only: bool = False,
        keep_before: int = 0,
    ):
        self.directory = as_path(directory)
        self.best_metric, self.best_mode = best_metric, best_mode
        # orbax tracks the best step and keeps it (BestN), ranked by best_of's tie rule.
        self.ranking = Ranking(best_metric, best_mode) if best_metric else None
        keepers: list[Any] = [policies.LatestN(n=keep)]
        if self.ranking is not None:
            keepers.append(
                policies.BestN(
                    get_metric_fn=self.ranking,
                    reverse=best_mode == "min",
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        if keep_before > 0:
            keepers.append(KeepOlderThan(keep_before))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(keepers),
            # best_fn also makes orbax write the metrics next to each checkpoint.
            best_fn=self.ranking,
            best_mode=best_mode,
            enable_async_checkpointing=async_save,
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "extra")
        )
        self._pending: int | None = None
        self.read_only = read_only

    # -- queries ---------------------------------------------------------------------------
    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def best_step(self) -> int | None:
        """The step whose saved metrics are best, the earliest of equal values (``None``
        without checkpoints ranked by ``best_metric``)."""
        if self.ranking is None:
            return None  # orbax would answer the latest step
        step = self.manager.best_step()
        if step is None or self.best_metric not in (self.metrics(step) or {}):
            return None
        return int(step)

    def metrics(self, step: int) -> dict[str, Any] | None:
        """The metrics saved with checkpoint ``step`` (``None`` when it has none)."""
        metrics = self.manager.metrics(step)
        if metrics is None:
            return None
        return {k: v for k, v in metrics.items() if k != STEP_KEY}

    # -- save / restore --------------------------------------------------------------------
    def save(
        self,
        step: int,
        state: Any,
        extra: dict[str, Any],
        metrics: dict[str, float] | None = None,
        *,
        force: bool = True,
    ) -> bool:
        """Starts saving ``state`` and ``extra`` as checkpoint ``step`` (asynchronously).

        Raises :class:`CheckpointWriteError` when this save, or the previous asynchronous
        one, could not be written. A Ctrl-C during orbax's part of the save takes effect
        when that part returns (:func:`~rnnlab.train.preemption.interrupts_held`).
        """
        if step == self._pending:
            # A save of this step is under way (a second Ctrl-C stopped the loop right after
            # starting it): finish it. Another save of the same step would meet its files.
            self.check_written()
            return False
        self.check_written()
        if step in self.manager.all_steps():
            return False
        if metrics is not None:  # the step ranks equal values (retention.Ranking)
            metrics = {**{k: float(v) for k, v in metrics.items()}, STEP_KEY: float(step)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            extra=ocp.args.JsonSave(integrity.seal(state, extra)),
        )
        self._pending = step
        try:
            # A Ctrl-C inside orbax's call left the save half started; it now lands once
            # orbax has registered the save and started its commit.
            with interrupts_held():
                saved = self.manager.save(step, args=args, metrics=metrics, force=force)
                if not saved:
                    self._pending = None
        except Exception as e:  # orbax raises OSError, ValueError or its own errors
            self._pending = None
            raise self._write_error(step, e) from e
        return saved

    def _write_error(self, step: int, cause: BaseException) -> CheckpointWriteError:
        return self.write_error(
            f"checkpoint {step} could not be written to {self.directory}", cause, failed=step
        )

    def write_error(
        self, what: str, cause: BaseException, *, failed: int | None = None
    ) -> CheckpointWriteError:
        """A :class:`CheckpointWriteError` for ``what`` failing with ``cause`` that names the
        newest checkpoint left intact (any write of the run: checkpoint, log, config)."""
        self.manager.reload()  # forget a failed step, see the intact ones on disk
        intact = [s for s in self.manager.all_steps() if s != failed]
        last = f"checkpoint {max(intact)} is intact" if intact else "no earlier checkpoint exists"
        return CheckpointWriteError(
            f"{what}: {describe_error(cause)}. Nothing was deleted; {last}. Free space "
            "or make the directory writable, then rerun to resume."
        )

    def check_written(self) -> None:
        """Raises :class:`CheckpointWriteError` if the last asynchronous save failed.

        orbax reports a failed background write only in its log (and then skips the
        commit), so the committed step directory is what tells.
        """
        step, self._pending = self._pending, None
        if step is None:
            return
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise self._write_error(step, e) from e
        if not (self.directory / str(step)).exists():
            raise self._write_error(step, OSError("the step directory was never committed"))

    def _read(self, step: int, **items: Any) -> dict[str, Any]:
        try:
            return self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # tensorstore, JSON and orbax errors: unreadable files
            raise CorruptCheckpointError(step, describe_error(e, 300)) from e

    def check_compatible(self, step: int, abstract_state: Any) -> None:
        """Raises ValueError (not corruption) when checkpoint ``step`` holds arrays of other
        names, shapes or dtypes than ``abstract_state``: another model or optimizer."""
        try:
            saved_tree = ocp.StandardCheckpointHandler().metadata(
                self.directory / str(step) / "state"
            )
        except Exception as e:
            raise CorruptCheckpointError(
                step, f"array metadata unreadable: {describe_error(e, 300)}"
            ) from e
        saved = {path_to_str(p): (tuple(x.shape), str(x.dtype)) for p, x in _flat(saved_tree)}
        now = {path_to_str(p): (tuple(x.shape), str(x.dtype)) for p, x in _flat(abstract_state)}
        if saved == now:
            return
        keys = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
        if any("lr_scale" in k for k in now) and not any("lr_scale" in k for k in saved):
            # The optimizer state gained the learning-rate scale (decision 71): the same
            # model and optimizer, written by an older rnnlab.
            raise integrity.IncompatibleCheckpointError(
                f"checkpoint {step} in {self.directory} was written by an older rnnlab, "
                "before the optimizer state held the learning-rate scale, and this version "
                "cannot resume it: finish the run with the version that wrote it, or start "
                "it over with --restart"
            )
        diffs = [
            f"{k}: checkpoint {saved.get(k, 'absent')}, config {now.get(k, 'absent')}" for k in keys
        ]
        raise integrity.IncompatibleCheckpointError(
            f"checkpoint {step} in {self.directory} was saved from another model or optimizer "
            f"than the config builds ({len(diffs)} arrays differ; {'; '.join(diffs[:3])}). "
            "Resume with the config the run was started with, or use another workdir."
        )

    def restore(
        self,
        abstract_state: Any,
        step: int | None = None,
        *,
        precheck: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> tuple[Any, dict]:
        """The state (placed with the shardings of ``abstract_state``'s leaves) and extra.

        ``abstract_state``: ``jax.ShapeDtypeStruct`` leaves with ``sharding`` set.
        ``precheck(step, extra)`` runs on the JSON item before any array is read (for
        example to refuse a checkpoint of another dataset). Raises
        :class:`CorruptCheckpointError` when the checkpoint cannot be read or reads back
        different from what was saved, and ValueError when it belongs to another model.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        try:
            return self._restore(abstract_state, step, precheck)
        except CorruptCheckpointError:
            if self._vanished(step):
                raise CheckpointVanishedError(
                    f"checkpoint {step} in {self.directory} was deleted while it was read "
                    "(the run training in this workdir keeps only its newest checkpoints)"
                ) from None
            raise

    def _vanished(self, step: int) -> bool:
        """Whether checkpoint ``step`` is gone. A reader beside a writer waits up to a
        second: orbax deletes a step's files before its directory."""
        path = self.directory / str(step)
        for _ in range(10 if self.read_only else 1):
            if not path.exists():
                return True
            if self.read_only:
                time.sleep(0.1)
        return False

    def _restore(self, abstract_state: Any, step: int, precheck: Any) -> tuple[Any, dict]:
        if not (self.directory / str(step)).exists():
            raise CorruptCheckpointError(step, "its directory is gone")
        extra = self._read(step, extra=ocp.args.JsonRestore())["extra"]
        if not isinstance(extra, dict):
            raise CorruptCheckpointError(step, f"item 'extra' is {type(extra).__name__}")
        if precheck is not None:
            precheck(step, extra)
        self.check_compatible(step, abstract_state)
        restored = self._read(
            step, state=ocp.args.StandardRestore(abstract_state), extra=ocp.args.JsonRestore()
        )
        return restored["state"], integrity.check(step, restored["state"], restored["extra"])

    def restore_latest(
        self,
        abstract_state: Any,
        *,
        report: Callable[[str], None] = print,
        precheck: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> tuple[int, Any, dict] | None:
        """``(step, state, extra)`` of the newest checkpoint that reads back intact, or
        ``None`` when there is none. Damaged checkpoints are reported and moved aside; a
        checkpoint of another model or dataset raises ValueError and is left alone."""
        for step in sorted(self.all_steps(), reverse=True):
            try:
                state, extra = self.restore(abstract_state, step, precheck=precheck)
            except CorruptCheckpointError as e:
                moved = self.quarantine(step)
                report(f"{e}; moved to {moved}, trying the previous checkpoint")
                continue
            return step, state, extra
        return None

    def discard_after(self, step: int) -> list[int]:
        """Deletes the checkpoints after ``step`` (a run rolled back to ``step`` must not
        resume from a trajectory it abandoned); returns their steps."""
        later = [s for s in self.all_steps() if s > step]
        for s in later:
            self.manager.delete(s)
        return later

    def quarantine(self, step: int) -> epath.Path:
        """Moves checkpoint ``step`` to ``<directory>/../corrupt_checkpoints/`` (a later save
        of the same step would otherwise be refused) and returns where it went."""
        target = self.directory.parent / CORRUPT_DIR / f"{step}-{int(time.time())}"
        if jax.process_index() == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            (self.directory / str(step)).rename(target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"rnnlab_quarantine_{step}")
        self.manager.reload()
        return target

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are complete; raises
        :class:`CheckpointWriteError` if one failed."""
        self.check_written()
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()

    def reached_preemption(self, step: int) -> bool:
        """True on every process once the runtime signalled preemption (multi-host TPU)."""
        try:
            return bool(self.manager.reached_preemption(step))
        except Exception:  # no distributed runtime: only the signal handler applies
            return False


def _flat(tree: Any) -> list[tuple[Any, Any]]:
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def abstract_with_shardings(abstract: Any, shardings: Any) -> Any:
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )


def gather_json(obj: Any) -> list[Any]:
    """``obj`` of every process, in process order (a collective: all processes call it)."""
    if jax.process_count() == 1:
        return [obj]
    data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    sizes = multihost_utils.process_allgather(np.array([data.size], np.int64))
    buf = np.zeros(int(np.max(sizes)), np.uint8)
    buf[: data.size] = data
    everything = multihost_utils.process_allgather(buf)
    return [
        json.loads(bytes(everything[i, : int(sizes[i][0])]).decode())
        for i in range(jax.process_count())
    ]
