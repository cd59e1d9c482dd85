"""What the subcommands share about a workdir: its config and the choice of a checkpoint."""

from __future__ import annotations

import argparse
from typing import Any

from rnnlab.train import config as cfg_lib
from rnnlab.train import files, record

CHECKPOINT_CHOICES = "best, latest or a step number"


def checkpoint_arg(text: str) -> str:
    """argparse type of ``--checkpoint``: ``best``, ``latest``, ``none`` or a step >= 0."""
    if text in ("best", "latest", "none") or (text.isdigit() and int(text) >= 0):
        return text
    raise argparse.ArgumentTypeError(f"expected {CHECKPOINT_CHOICES}, got {text!r}")


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
            raise cfg_lib.ConfigError(
                "config", f"give --config experiments/<file>.py[:variant] ({where} does not exist)"
            )
        config = cfg_lib.from_dict(saved)
    return cfg_lib.override(config, getattr(args, "overrides", []) or [])


def pick_step(checkpoints: Any, which: str, workdir: str) -> int:
    """The step ``which`` (``best``, ``latest`` or a number) names among ``checkpoints``;
    FileNotFoundError naming the workdir and the steps there when it does not exist."""
    steps = sorted(checkpoints.all_steps())
    if which == "best":
        step = checkpoints.best_step() or checkpoints.latest_step()
    elif which == "latest":
        step = checkpoints.latest_step()
    else:
        step = int(which) if int(which) in steps else None
    if step is None:
        have = f"it has {steps}" if steps else "it has none"
        raise FileNotFoundError(
            f"no checkpoint {which} in {files.join(workdir, 'checkpoints')} ({have}); "
            "pass --checkpoint best, latest or one of its steps"
        )
    return step


def has_checkpoints(workdir: str) -> bool:
    return files.is_dir(files.join(workdir, "checkpoints"))
