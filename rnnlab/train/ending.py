"""The end of a run after its last checkpoint: samples, the task's report, plots, summary.

The training loop turns SIGTERM into a checkpoint and exit status 0 (preemption). Once the
loop has ended, the last checkpoint is written and only optional work remains; a SIGTERM
then used to kill the process with status 143 and no word, losing the summary. Within
:class:`EndOfRun`, SIGTERM (and a Ctrl-C) stops the optional work at once, the summary is
still written, and the run says so and exits 0 as the docs promise.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _Skip(BaseException):
    """Raised in the main thread by the handler to leave the optional work."""


class EndOfRun:
    """Handles SIGTERM and SIGINT from the end of the loop to the summary; a context manager.

    Args:
      step: the run's last step (for the message).
      enabled: print the message (the main process).
    """

    def __init__(self, step: int, *, enabled: bool = True):
        self.step, self.enabled = step, enabled
        self.signum: int | None = None
        self._armed = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> EndOfRun:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        del frame
        first = self.signum is None
        self.signum = signum
        if first and self.enabled:
            name = signal.Signals(signum).name
            print(
                f"rnnlab: {name} after the last checkpoint (step {self.step}): the remaining "
                "samples, report and plots are skipped; writing the summary",
                file=sys.stderr,
                flush=True,
            )
        if self._armed:
            self._armed = False
            raise _Skip

    @property
    def stopped(self) -> bool:
        """Whether a signal came: skip what optional work is left."""
        return self.signum is not None

    @contextmanager
    def optional(self) -> Iterator[None]:
        """The block of optional work, which a signal ends at once (the summary must not
        wait for it)."""
        self._armed = True
        try:
            yield
        except _Skip:
            pass
        finally:
            self._armed = False
