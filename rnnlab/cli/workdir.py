"""What the subcommands share about a workdir: its config and the choice of a checkpoint."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from rnnlab.train import config as cfg_lib
from rnnlab.train import files, record

CHECKPOINT_CHOICES = "best, latest or a step number"


def checkpoint_arg(text: str) -> str:
    """argparse type of ``--checkpoint``: ``best``, ``latest`` or a step >= 0."""
    if text in ("best", "latest") or (text.isdigit() and int(text) >= 0):
        return text
    raise argparse.ArgumentTypeError(f"expected {CHECKPOINT_CHOICES}, got {text!r}")


def checkpoint_or_none_arg(text: str) -> str:
    """:func:`checkpoint_arg`, or ``none`` (a fresh model: ``rnnlab diagnose``)."""
    if text == "none":
        return text
    try:
        return checkpoint_arg(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected {CHECKPOINT_CHOICES} or none, got {text!r}"
        ) from None


def load_config(args: argparse.Namespace) -> cfg_lib.ConfigDict:
    """From ``--config`` (with overrides), else the workdir's saved ``config.json``.

    A missing or broken ``config.json`` raises :class:`~rnnlab.train.config.ConfigError`
    naming the file and what to do.
    """
    workdir = getattr(args, "workdir", None)
    if getattr(args, "config", None):
        config = cfg_lib.load(args.config)
    else:
        saved = record.saved_config(workdir) if workdir else None
        if saved is None:
            where = files.join(workdir, record.CONFIG_FILE) if workdir else "no --workdir"
            if workdir:  # a workdir was named: the run's own config, or no run there
                raise cfg_lib.ConfigError(
                    "config", f"no run in {workdir}: {where} does not exist; train one first"
                )
            raise cfg_lib.ConfigError(
                "config",
                f"give --config NAME[:variant] or PATH.py[:variant] ({where} does not exist)",
            )
        config = cfg_lib.from_dict(saved)
    return cfg_lib.override(config, getattr(args, "overrides", []) or [])


def pick_step(checkpoints: Any, which: str, workdir: str) -> int:
    """:func:`rnnlab.train.checkpoint.choose_step`, its error saying what to pass instead."""
    from rnnlab.train import checkpoint as ckpt_lib  # orbax, only where checkpoints are read

    try:
        return ckpt_lib.choose_step(checkpoints, which)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"{e} of {workdir}; pass --checkpoint best, latest or one of its steps"
        ) from None


def data_guard(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """The context a command that reads a workdir runs its data in: when the data options
    come from the workdir's ``config.json`` alone (no ``--config``, no ``--config.data.*``),
    datasets are only opened, never prepared (:mod:`rnnlab.data.preparing`): that file may
    come from someone else and name private files and where to copy them."""
    from rnnlab.data import preparing

    overrides = getattr(args, "overrides", None) or []
    if getattr(args, "config", None) or any(o.startswith("config.data.") for o in overrides):
        return contextlib.nullcontext()
    where = files.join(args.workdir, record.CONFIG_FILE)
    return preparing.prepared_only(
        f"rnnlab {args.command} does not prepare data from the paths in {where} (a workdir "
        "may come from someone else); name the data on the command line to prepare it "
        "(--config.data.path=... or --config experiments/<file>.py)"
    )


def has_checkpoints(workdir: str) -> bool:
    return files.is_dir(files.join(workdir, "checkpoints"))
