"""The terminal may go away during a run; the run goes on.

``rnnlab train ... | head -2``, a ``tee`` that dies or a dropped ssh session close the
reader of the run's output. Python then raises ``BrokenPipeError`` (``EIO`` on a terminal
that hung up) at the next ``print``, which would end training at a random step, and the
hang-up's SIGHUP would kill it. Under :func:`detachable`, a stream whose reader has gone
swallows further output instead, and SIGHUP is ignored, as under ``nohup``: the run keeps
training and keeps writing its logs, checkpoints and summary to the workdir, where its
results are read. SIGTERM and Ctrl-C still stop it with a checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO


class DetachableStream:
    """Writes to ``stream`` until its reader has gone, then to nowhere."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.gone = False

    def _guard(self, call, *args: Any, default: Any = None) -> Any:
        if self.gone:
            return default
        try:
            return call(*args)
        except OSError as e:
            if not isinstance(e, BrokenPipeError | ConnectionResetError) and e.errno != errno.EIO:
                raise
            self.gone = True
            # The interpreter flushes the stream again at exit: point its descriptor at
            # /dev/null so that last flush does not fail either.
            with contextlib.suppress(OSError, ValueError):
                null = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(null, self._stream.fileno())
                finally:
                    os.close(null)
            return default

    def write(self, text: str) -> int:
        self._guard(self._stream.write, text)
        return len(text)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def isatty(self) -> bool:
        return not self.gone and self._stream.isatty()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, ...
        return getattr(self._stream, name)


@contextlib.contextmanager
def detachable() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` as :class:`DetachableStream`, and SIGHUP ignored
    (main thread only), inside the block."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = DetachableStream(saved[0]), DetachableStream(saved[1])
    hangup = getattr(signal, "SIGHUP", None)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(hangup, signal.SIG_IGN) if hangup and main else None
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        if previous is not None:
            signal.signal(hangup, previous)
