"""Reading a checkpoint beside the run that writes it: ``eval``, ``sample`` and export
may run while the same workdir trains.

The trainer keeps only its newest ``train.keep_checkpoints`` (plus the best), so the step a
reader chose can be deleted while it is read. Such a checkpoint is not damaged, and the
reader must not say so: :class:`~rnnlab.train.checkpoint.Checkpoints` raises
:class:`~rnnlab.train.checkpoint.CheckpointVanishedError` for it, and :func:`restore`
chooses again (``best`` and ``latest`` name another step by then) and says so. A step
asked for by number cannot be replaced by another: that error says what to pass instead.
Readers write nothing into the workdir (it may be read-only, or someone else's), so the
trainer is not asked to keep the step: the retry is the whole protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from rnnlab.train import checkpoint as ckpt_lib

T = TypeVar("T")

ATTEMPTS = 10


def opened(factory: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """``factory()`` (opening a checkpoint directory), tried again when a step vanishes while
    orbax lists the steps (it reads each step's metadata: a FileNotFoundError)."""
    for attempt in range(attempts):
        try:
            return factory()
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def restore(
    checkpoints: ckpt_lib.Checkpoints,
    which: str | int,
    read: Callable[[int], T],
    *,
    note: Callable[[str], None],
    attempts: int = ATTEMPTS,
) -> tuple[int, T]:
    """``(step, read(step))`` for the checkpoint ``which`` names (``best``, ``latest`` or a
    step), chosen again when the step is deleted while ``read`` runs.

    Args:
      checkpoints: the workdir's checkpoints, opened read-only.
      which: as for :func:`rnnlab.train.checkpoint.choose_step`.
      read: restores one step (raises ``CheckpointVanishedError`` when it vanished).
      note: receives one line per retry.
      attempts: how many vanished steps to step over before giving up.
    """
    step = None
    for attempt in range(attempts):
        try:
            step = ckpt_lib.choose_step(checkpoints, which)
            return step, read(step)
        except FileNotFoundError as e:
            vanished = isinstance(e, ckpt_lib.CheckpointVanishedError)
            if which not in ("best", "latest"):
                if not vanished:
                    raise
                raise ckpt_lib.CheckpointVanishedError(
                    f"{e}; pass --checkpoint latest, or read step {step} after the run ends"
                ) from None
            if not vanished and step is None:
                raise  # no checkpoint at all: nothing to choose again
            if attempt == attempts - 1:
                raise ckpt_lib.CheckpointVanishedError(
                    f"{e}; the {which} checkpoint vanished {attempts} times while it was read: "
                    "the run training in this workdir rotates its checkpoints faster than "
                    "they can be read (raise its train.keep_checkpoints, or read after it ends)"
                ) from None
            opened(checkpoints.manager.reload)
            if vanished:
                note(f"{e}; reading the {which} checkpoint again")
            step = None
    raise AssertionError("unreachable")
