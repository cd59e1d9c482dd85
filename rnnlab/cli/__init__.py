"""The ``rnnlab`` command.

::

    rnnlab train  --config experiments/charlm.py[:variant] --workdir DIR [--config.KEY=VALUE ...]
                  [--extend N [--extend-schedule stretch|keep]] [--restart] [--dry-run]
                  [--logger MODULE:FUNCTION]
    rnnlab eval   --workdir DIR [--split test] [--checkpoint best|latest|STEP] [--config.KEY=V]
    rnnlab sample --workdir DIR [--prompt TEXT] [--length N] [--temperature T] [--top-k K]
    rnnlab plot   --workdir DIR
    rnnlab predict --workdir DIR --input FILE --output FILE [--checkpoint best|latest|STEP]
                   [--origins last|all] [--quantiles 0.1,0.5,0.9]     # the last two: forecasts
    rnnlab export --workdir DIR --out DIR [--format params|stablehlo] [--platforms cpu,cuda,tpu]
    rnnlab list                       # experiments and their variants
    rnnlab diagnose --config ... [--workdir DIR]
    rnnlab compile --config ... --topology v5e-16 [--slices N] [--largest-batch]

Every command takes ``--verbose``: without it, third-party logging (orbax, absl, TFDS,
asyncio) is silenced and an error is one line, ``rnnlab: error: <what>``; with it, their
logs and the full traceback are shown. Exit status: 0 success, 1 a failure at run time
(non-finite or diverged training, a damaged or missing checkpoint, a locked workdir, a
disk that cannot be written), 2 bad input (usage, config, a config.json that does not
parse, a checkpoint of another model or dataset), 130 interrupted by Ctrl-C (a checkpoint
of the step was saved; rerun to resume).

Subcommands live in modules that define ``add_commands(subparsers)``; each parser sets
``func=callable(args) -> int`` with ``set_defaults``. The modules are those listed in
:data:`COMMAND_MODULES` plus any installed package's ``rnnlab.commands`` entry points, so a
new subcommand is one module and one line here.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
import sys
import traceback
from collections.abc import Callable, Sequence

COMMAND_MODULES: tuple[str, ...] = (
    "rnnlab.cli.commands",
    "rnnlab.cli.diagnose",
    "rnnlab.cli.compile",
    "rnnlab.cli.interop",
)

USAGE, RUNTIME, INTERRUPTED = 2, 1, 130


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
    parser.add_argument(
        "--verbose", action="store_true", help="show third-party logs and full tracebacks"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _modules():
        module.add_commands(sub)
    return parser


def quiet_third_party() -> Callable[[], None]:
    """Silences the logs of orbax, absl, TFDS and asyncio and the tracebacks of background
    threads: their failures reach the user as rnnlab's one-line errors instead. Returns a
    function that puts everything back (for callers of :func:`main` in a larger program)."""
    import logging
    import threading

    names = ("", "absl", "asyncio", "orbax", "jax", "tensorflow", "tensorflow_datasets")
    levels = {name: logging.getLogger(name).level for name in names}
    hooks = threading.excepthook, sys.unraisablehook
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    absl_level = None
    try:
        from absl import logging as absl_logging

        absl_level = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.FATAL)
    except ImportError:
        pass
    threading.excepthook = lambda args: None
    sys.unraisablehook = lambda unraisable: None

    def restore() -> None:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if absl_level is not None:
            absl_logging.set_verbosity(absl_level)
        threading.excepthook, sys.unraisablehook = hooks

    return restore


_NOISE = (
    re.compile(r"\s*\[tensorstore_spec='.*?'\]", re.S),
    re.compile(r"<bound method [^>]*>"),
    re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>"),
)


def one_line(error: BaseException, limit: int = 800) -> str:
    """``error``'s message on one line, without the object reprs third-party libraries
    embed, cut at ``limit`` characters."""
    from rnnlab.train.messages import strip_reprs

    text = strip_reprs(str(error) or type(error).__name__)
    for pattern in _NOISE:
        text = pattern.sub("", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _status(error: BaseException) -> int:
    from rnnlab.data.lm import DataTooSmallError
    from rnnlab.train.config import ConfigError
    from rnnlab.train.files import BadPathError
    from rnnlab.train.integrity import IncompatibleCheckpointError
    from rnnlab.train.predict import PredictInputError

    bad_input = (
        ConfigError
        | IncompatibleCheckpointError
        | DataTooSmallError
        | BadPathError
        | PredictInputError
    )
    return USAGE if isinstance(error, bad_input) else RUNTIME


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (module docstring). Without ``argv``
    (the command itself), ends the process instead (:mod:`rnnlab.cli.teardown`)."""
    if argv is None:
        from rnnlab.cli import teardown

        try:
            status = _command(None)
        except SystemExit as e:  # argparse: --help, usage errors
            status = teardown.status_of(e)
        teardown.exit_process(status)
    return _command(argv)


def _command(argv: Sequence[str] | None) -> int:
    as_command = argv is None
    if as_command:
        # Before the first step allocates: a process-wide setting, so only for the command
        # itself, not for a caller of main() inside a larger program.
        from rnnlab.train import allocator

        allocator.keep_freed_memory()
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    restore = (lambda: None) if verbose else quiet_third_party()
    try:
        return _main(argv, verbose)
    finally:
        # The command stays quiet until the interpreter exits (orbax's coroutines are
        # collected then); a caller in a larger program gets its logging back.
        if not as_command:
            restore()


def _main(argv: list[str], verbose: bool) -> int:
    from rnnlab.train.config import ConfigError, split_argv

    try:
        rest, overrides = split_argv(argv)
    except ConfigError as e:
        print(f"rnnlab: config error: {e}", file=sys.stderr)
        return USAGE
    parser = build_parser()
    args = parser.parse_args(rest)
    args.overrides = overrides
    args.verbose = verbose
    if overrides and not getattr(args, "accepts_overrides", False):
        parser.error(f"{args.command} takes no --config.* overrides (got {overrides})")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("rnnlab: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `rnnlab list | head`: the reader has gone, nothing to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        if verbose:
            traceback.print_exc()
        status = _status(e)
        kind = "config error" if isinstance(e, ConfigError) else "error"
        known = isinstance(e, OSError | ValueError | RuntimeError)
        text = one_line(e) if known else f"{type(e).__name__}: {one_line(e)}"
        hint = "" if known or verbose else " (rerun with --verbose for the traceback)"
        print(f"rnnlab: {kind}: {text}{hint}", file=sys.stderr, flush=True)
        return status


if __name__ == "__main__":
    sys.exit(main())
