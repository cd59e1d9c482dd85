"""The terminal may go away during a run; the run goes on.

``rnnlab train ... | head -2``, a ``tee`` that dies or a dropped ssh session close the
reader of the run's output. Python then raises ``BrokenPipeError`` at the next ``print``,
which would end training at a random step. Under :func:`detachable`, a stream whose reader
has gone swallows further output instead: the run keeps training and keeps writing its
logs, checkpoints and summary to the workdir, where its results are read.
"""

from __future__ import annotations

import contextlib
import os
import sys
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
        except (BrokenPipeError, ConnectionResetError):
            self.gone = True
            # The interpreter flushes the stream again at exit: point its descriptor at
            # /dev/null so that last flush does not fail either.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
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
    """``sys.stdout`` and ``sys.stderr`` as :class:`DetachableStream` inside the block."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = DetachableStream(saved[0]), DetachableStream(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
