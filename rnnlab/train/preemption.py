"""Signals around checkpoints: SIGTERM and Ctrl-C become a flag the loop polls, and a
Ctrl-C never lands inside orbax's own save.

:class:`PreemptionFlag` turns the first SIGTERM or SIGINT into a checkpoint of the current
step and a clean stop; a second Ctrl-C interrupts at once (``KeyboardInterrupt``).
:func:`interrupts_held` delays that interrupt while orbax starts a save: raised inside
orbax's call, it left a half-started save of the step (its temporary directory made, its
commit never begun) that the loop's second save of the same step then met
(``FileExistsError``, a step directory never committed, once a hang).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class PreemptionFlag:
    """Turns SIGTERM (spot/preemptible VM shutdown) and SIGINT (Ctrl-C) into a flag the loop
    polls each step: it saves a checkpoint of the step and stops cleanly. After the first
    SIGINT the previous handler is back, so a second Ctrl-C interrupts at once.

    The previous handlers are restored by :meth:`close`. Only the main thread can install
    signal handlers; elsewhere (a test runner thread) the flag is simply never set.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
        self.event = threading.Event()
        self.time: float | None = None  # time.monotonic() of the first signal
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in signals:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        del frame
        if self.signum is None or signum == signal.SIGTERM:
            self.signum = signum
        if signum == signal.SIGINT and signum in self._previous:
            signal.signal(signum, self._previous[signum])
        if self.time is None:
            self.time = time.monotonic()
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def elapsed(self) -> float:
        """Seconds since the signal (0 when none came: a preemption the runtime announced)."""
        return 0.0 if self.time is None else time.monotonic() - self.time

    def close(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


@contextmanager
def interrupts_held() -> Iterator[None]:
    """A SIGINT that arrives inside the block is delivered when the block ends, to whatever
    handler was installed before it (the loop's flag, or Python's ``KeyboardInterrupt``);
    two are delivered as two (the flag's handler gives way to ``KeyboardInterrupt``).

    Wrapped around orbax's ``CheckpointManager.save``: it returns once the save is
    registered and its background commit started, which takes a fraction of a second, and
    an interrupt in between left the save neither running nor undone. Outside the main
    thread, or where SIGINT has no Python handler, the block runs unguarded.
    """
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    if not callable(previous):
        yield
        return
    held: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        for _ in held[:2]:  # each runs the handler installed now, in this thread
            signal.raise_signal(signal.SIGINT)
