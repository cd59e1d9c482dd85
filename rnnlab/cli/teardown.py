"""The end of the ``rnnlab`` process: everything Python does at exit that can write, then
no interpreter teardown.

After a run, the interpreter's own finalisation (collecting every module and object of jax,
XLA, orbax and matplotlib, then the C++ destructors) costs about 0.8 s of CPU and 2 s of
wall time, and writes nothing: every file of the run is closed by then (checkpoints
committed, metric and summary files closed). :func:`exit_process` keeps the steps of
``Py_FinalizeEx`` that can have an effect outside the process, in its order:

1. ``threading._shutdown``: the thread pools' exit hooks, then wait for the non-daemon
   threads;
2. run the ``atexit`` handlers (orbax's, logging's flush, multiprocessing's joins, ...);
3. flush ``sys.stdout`` and ``sys.stderr``;

then ends the process with ``os._exit``. Only for the command itself (:func:`rnnlab.cli.main`
without arguments): a program that calls ``main([...])`` keeps its interpreter.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading


def exit_process(status: int) -> None:
    """Ends the process with ``status`` after the non-daemon threads, the ``atexit``
    handlers and a flush of the standard streams; never returns."""
    # threading._shutdown is what the interpreter calls first: it runs the threading atexit
    # hooks (concurrent.futures tells its idle workers to stop there; joining them without
    # it waits forever), then waits for every non-daemon thread.
    threading._shutdown()
    try:
        atexit._run_exitfuncs()  # what Py_FinalizeEx runs; os._exit would skip them
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a reader gone (`| head`), a closed stream
                pass
        os._exit(status)


def status_of(error: SystemExit) -> int:
    """The exit status ``sys.exit(code)`` gives: 0 for None, the int, else 1 (the code
    printed to stderr, as the interpreter does)."""
    code = error.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
