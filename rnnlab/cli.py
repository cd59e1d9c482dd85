"""The ``rnnlab`` command.

::

    rnnlab train  --config experiments/charlm.py[:variant] --workdir DIR [--config.KEY=VALUE ...]
    rnnlab eval   --workdir DIR [--split test] [--checkpoint best|latest|STEP]
    rnnlab sample --workdir DIR [--prompt TEXT] [--length N] [--temperature T] [--top-k K]
    rnnlab plot   --workdir DIR

Subcommands live in modules that define ``add_commands(subparsers)``; each parser sets
``func=callable(args) -> int`` with ``set_defaults``. The modules are those listed in
:data:`COMMAND_MODULES` plus any installed package's ``rnnlab.commands`` entry points, so a
new subcommand (``diagnose``, ``faults``, ...) is one module and one line here.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence

COMMAND_MODULES: tuple[str, ...] = ("rnnlab.train.commands", "rnnlab.diagnose")


def _modules() -> list[object]:
    mods = [importlib.import_module(name) for name in COMMAND_MODULES]
    for ep in importlib.metadata.entry_points(group="rnnlab.commands"):
        mods.append(ep.load())
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnlab",
        description="Train, evaluate and sample recurrent networks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _modules():
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (0 success, 1 failure, 2 usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from rnnlab.train.config import ConfigError, split_argv
    from rnnlab.train.loop import NonFiniteError

    try:
        rest, overrides = split_argv(argv)
    except ConfigError as e:
        print(f"rnnlab: error: {e}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(rest)
    args.overrides = overrides
    if overrides and not getattr(args, "accepts_overrides", False):
        parser.error(f"{args.command} takes no --config.* overrides (got {overrides})")
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"rnnlab: config error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteError, OSError, ValueError) as e:
        # OSError: a workdir that cannot be written (disk full, read-only, permissions).
        print(f"rnnlab: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
