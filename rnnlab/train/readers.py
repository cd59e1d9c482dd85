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

ATTEMPTS = 5


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
    for attempt in range(attempts):
        step = ckpt_lib.choose_step(checkpoints, which)
        try:
            return step, read(step)
        except ckpt_lib.CheckpointVanishedError as e:
            if which not in ("best", "latest"):
                raise ckpt_lib.CheckpointVanishedError(
                    f"{e}; pass --checkpoint latest, or read step {step} after the run ends"
                ) from None
            if attempt == attempts - 1:
                raise
            checkpoints.manager.reload()
            note(f"{e}; reading the {which} checkpoint again")
    raise AssertionError("unreachable")
