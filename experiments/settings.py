"""Settings the experiment configs share (not an experiment itself): the check of a
variant name, the optimiser most experiments train with, and the length and cadence of a
run. Each takes the unlocked ``c`` of ``rnnlab.train.config.base_config`` and sets the
same keys the configs would set one by one."""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections


def variant(experiment: str, arg: str, variants: Sequence[str], default: str | None = None) -> str:
    """``arg`` if it is one of ``variants``, else a ValueError naming ``experiment``; with a
    ``default``, an empty ``arg`` reads as that."""
    if default is not None:
        arg = arg or default
    if arg not in variants:
        raise ValueError(f"{experiment} variant must be one of {variants}, got {arg!r}")
    return arg


def named_variant(
    experiment: str, arg: str, names: Sequence[str], default: str
) -> tuple[str, bool]:
    """``"<name>[,small]"`` -> ``(name, small)``: a name of ``names`` (``default`` when
    ``arg`` gives none) and whether the smoke-test variant is asked for; anything else is a
    ValueError naming ``experiment``."""
    tokens = [t.strip() for t in arg.split(",") if t.strip()]
    picked = [t for t in tokens if t != "small"]
    if len(picked) > 1 or (picked and picked[0] not in names):
        raise ValueError(
            f"{experiment} variant must be '<name>[,small]' with a name in {sorted(names)}, "
            f"got {arg!r}"
        )
    return (picked[0] if picked else default), "small" in tokens


def adam_cosine(
    c: ml_collections.ConfigDict, *, warmup_steps: int, lr: float = 3e-3, optimizer: str = "adam"
) -> None:
    """Adam (or another ``optimizer``) at ``lr``, gradients clipped to global norm 1, a
    linear warm-up over ``warmup_steps``, then a cosine decay to 5 % of ``lr``."""
    c.optim.optimizer = optimizer
    c.optim.lr = lr
    c.optim.clip_norm = 1.0
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = warmup_steps
    c.optim.final_lr_fraction = 0.05


def train_steps(
    c: ml_collections.ConfigDict,
    steps: int,
    *,
    batch_size: int | None = None,
    log_every: int | None = None,
    eval_every: int | None = None,
    checkpoint_every: int | None = None,
) -> None:
    """``train.steps`` and, of the batch size and how often the run logs, evaluates and
    checkpoints, those given (a smaller variant changes only what it shrinks)."""
    c.train.steps = steps
    given = {
        "batch_size": batch_size,
        "log_every": log_every,
        "eval_every": eval_every,
        "checkpoint_every": checkpoint_every,
    }
    for key, value in given.items():
        if value is not None:
            c.train[key] = value
