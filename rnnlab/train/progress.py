"""Progress reporting: a tqdm bar on an interactive terminal, plain log lines otherwise.

Both show the step, the loss, the throughput and the time left. Only the main process
reports. :class:`Throughput` measures the throughput of the training steps alone.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 1000 or (abs(value) < 1e-3 and value != 0):
        return f"{value:.3g}"
    return f"{value:.4f}"


def number(value: float) -> str:
    """A metric for people: four decimals, or four significant digits when large or tiny
    (the perplexity of a diverged run is ``1.2e+305``, not a 305-digit number)."""
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if abs(value) >= 1e5 or (abs(value) < 1e-4 and value != 0):
        return f"{value:.4g}"
    return f"{value:.4f}"


# Narrower than this, tqdm draws nothing (a terminal of 0 columns: some CI runners and
# `script` sessions report one): plain lines instead.
MIN_BAR_COLUMNS = 20


def _columns(stream: TextIO) -> int:
    """The width of the terminal behind ``stream`` (0 when it does not say)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


class Progress:
    """Reports training progress from ``start`` to ``total`` steps.

    Args:
      start, total: the step the run starts at and the last step.
      enabled: False on processes other than the main one.
      stream: where plain lines go (stderr by default).
      bar: ``True``/``False`` forces the bar on/off; ``None`` uses one on a TTY.
    """

    def __init__(
        self,
        start: int,
        total: int,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        bar: bool | None = None,
    ):
        self.enabled, self.start, self.total = enabled, start, total
        self.stream = stream or sys.stderr
        use_bar = self.stream.isatty() and _columns(self.stream) >= MIN_BAR_COLUMNS
        use_bar = use_bar if bar is None else bar
        self._bar = None
        self._t0 = time.perf_counter()
        if enabled and use_bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=start, file=self.stream, unit="step", dynamic_ncols=True
            )

    def update(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Called at log steps with the averaged training metrics."""
        if not self.enabled:
            return
        shown = {k: metrics[k] for k in ("loss", "tokens_per_second") if k in metrics}
        if self._bar is not None:
            self._bar.n = step
            post = {"loss": _fmt(shown.get("loss", float("nan")))}
            if "tokens_per_second" in shown:
                post["tok/s"] = f"{shown['tokens_per_second']:.0f}"
            self._bar.set_postfix(post, refresh=False)
            self._bar.refresh()
            return
        elapsed = time.perf_counter() - self._t0
        done = max(step - self.start, 1)
        eta = elapsed / done * (self.total - step)
        parts = [f"step {step}/{self.total}"]
        parts += [f"{k} {_fmt(float(v))}" for k, v in metrics.items() if k in ("loss", "lr")]
        if "tokens_per_second" in shown:
            parts.append(f"{shown['tokens_per_second']:.0f} tok/s")
        parts.append(f"eta {_duration(eta)}")
        self.write(" | ".join(parts))

    def write(self, text: str) -> None:
        """A message that does not break the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Throughput:
    """Steps and tokens per second of the training steps of one log window.

    Evaluation, checkpoint saves and compilation happen inside the window but are not
    training: the loop runs them under :meth:`paused`, and their time is left out. Without
    that, the window holding an evaluation on a large validation split reads a fraction of
    the true rate.

    Args:
      clock: seconds, monotonic (``time.perf_counter``; tests pass a fake one).
    """

    def __init__(self, clock: Callable[[], float] | None = None):
        self.clock = clock or (lambda: time.perf_counter())  # looked up at each reading
        self.reset()

    def reset(self) -> None:
        """Starts a new window now."""
        self.steps, self.tokens, self.paused_s = 0, 0, 0.0
        self.started = self.clock()

    def add(self, tokens: int) -> None:
        """Counts one training step of ``tokens`` tokens."""
        self.steps += 1
        self.tokens += tokens

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside is not training time."""
        t = self.clock()
        try:
            yield
        finally:
            self.paused_s += self.clock() - t

    def result(self) -> dict[str, float]:
        """``steps_per_second``, ``tokens_per_second`` and ``step_time`` of the window, then
        a new window."""
        elapsed = max(self.clock() - self.started - self.paused_s, 1e-9)
        out = {
            "steps_per_second": self.steps / elapsed,
            "tokens_per_second": self.tokens / elapsed,
            "step_time": elapsed / max(self.steps, 1),
        }
        self.reset()
        return out
