"""``rnnlab train`` as a real subprocess that the suite can watch, signal and kill.

Each run is ``python -m rnnlab.cli train --config experiments/faults.py --workdir DIR`` with
its output read line by line on a thread (with the time each line arrived), so that a
scenario can wait for "training has started", for a step, or for an asynchronous checkpoint
write in progress, and then send ``SIGTERM`` or ``SIGKILL`` at that moment.

Runs share a persistent XLA compilation cache (``<root>/xla_cache``): the first run compiles,
the others load the same executables, which keeps the suite fast and changes no result.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "experiments" / "faults.py"
TMP_MARK = ".orbax-checkpoint-tmp"

_STEP_LINE = re.compile(r"^step (\d+)/(\d+) \|")
_START_LINE = re.compile(r"(starting at|resuming from) step (\d+) of (\d+)")


@dataclasses.dataclass
class Outcome:
    """How a run ended: exit status, its output, and what the suite did to it."""

    returncode: int
    output: str
    seconds: float
    signal_sent: str = ""
    signal_step: int | None = None  # the last step logged before the signal
    during_write: bool = False  # a checkpoint was being written when the signal was sent
    committed_at_signal: tuple[int, ...] = ()
    loop_seconds: float = 0.0  # from the start-up line to the last step line
    step_seconds: float = 0.0  # per step, between the second and the last step line

    @property
    def resumed_from(self) -> int | None:
        m = _START_LINE.search(self.output)
        if not m or m.group(1) != "resuming from":
            return None
        return int(m.group(2))


def one_cpu_device(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the forced CPU device count dropped from ``XLA_FLAGS`` (one CPU device,
    whatever the caller simulates); its other XLA flags (how code is compiled, e.g. make
    test's) are kept."""
    flags = env.pop("XLA_FLAGS", "").split()
    kept = [f for f in flags if not f.startswith("--xla_force_host_platform_device_count")]
    if kept:
        env["XLA_FLAGS"] = " ".join(kept)
    return env


def child_env(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = one_cpu_device(dict(os.environ))
    env.update(
        {
            "JAX_PLATFORMS": "cpu",
            "PYTHONUNBUFFERED": "1",
            "JAX_COMPILATION_CACHE_DIR": str(root / "xla_cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
    )
    env.setdefault("RNNLAB_DATA_DIR", str(REPO / "data"))
    env.update(extra or {})
    return env


def train_command(workdir: Path, overrides: Sequence[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "rnnlab.cli", "train", "--config", str(CONFIG)]
    return cmd + ["--workdir", str(workdir)] + [f"--config.{o}" for o in overrides]


def committed_steps(workdir: Path) -> tuple[int, ...]:
    """Checkpoint steps whose directories are complete (renamed from their temporary name)."""
    d = Path(workdir) / "checkpoints"
    if not d.is_dir():
        return ()
    return tuple(sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()))


def writing(workdir: Path) -> bool:
    """True while an asynchronous checkpoint write is in progress (a temporary directory)."""
    d = Path(workdir) / "checkpoints"
    try:
        return any(TMP_MARK in p.name for p in d.iterdir())
    except FileNotFoundError:
        return False


class TrainProcess:
    """One ``rnnlab train`` subprocess (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        workdir: Path,
        overrides: Sequence[str] = (),
        *,
        env: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
    ):
        self.workdir = Path(workdir)
        self.lines: list[tuple[float, str]] = []
        self.t0 = time.monotonic()
        cmd = list(command) if command is not None else train_command(self.workdir, overrides)
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=child_env(root, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._signal: tuple[str, int | None, bool, tuple[int, ...]] = ("", None, False, ())

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    # -- what the run has done so far --------------------------------------------------------
    def started(self) -> bool:
        """The loop has begun (the start-up line is out)."""
        return any(_START_LINE.search(text) for _, text in self.lines)

    def last_step(self) -> int | None:
        steps = [int(m.group(1)) for _, t in self.lines if (m := _STEP_LINE.match(t))]
        return steps[-1] if steps else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, cond: Callable[[], bool], timeout: float, poll: float = 0.002) -> bool:
        """Polls ``cond`` until true (returns True), the process ends or ``timeout`` passes."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            if not self.alive():
                return cond()
            time.sleep(poll)
        return False

    # -- faults ------------------------------------------------------------------------------
    def send(self, sig: signal.Signals) -> None:
        """Sends ``sig`` now, recording the moment (step, checkpoint write in progress)."""
        during = writing(self.workdir)
        committed = committed_steps(self.workdir)
        if self.alive():
            self.proc.send_signal(sig)
        self._signal = (sig.name, self.last_step(), during, committed)

    def finish(self, timeout: float = 600) -> Outcome:
        """Waits for the process to end (killing it after ``timeout``)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        name, step, during, committed = self._signal
        start = [t for t, text in self.lines if _START_LINE.search(text)]
        steps = [t for t, text in self.lines if _STEP_LINE.match(text)]
        loop = steps[-1] - start[0] if start and steps else 0.0
        numbered = [(int(m.group(1)), t) for t, text in self.lines if (m := _STEP_LINE.match(text))]
        per_step = 0.0
        if len(numbered) >= 3:  # the first window holds the compilation
            (s0, t0), (s1, t1) = numbered[1], numbered[-1]
            per_step = (t1 - t0) / max(s1 - s0, 1)
        return Outcome(
            returncode=self.proc.returncode,
            output="\n".join(t for _, t in self.lines),
            seconds=time.monotonic() - self.t0,
            signal_sent=name,
            signal_step=step,
            during_write=during,
            committed_at_signal=committed,
            loop_seconds=loop,
            step_seconds=per_step,
        )


def run_to_end(root: Path, workdir: Path, overrides: Sequence[str] = (), **kw) -> Outcome:
    """Starts a run and waits for it to end by itself."""
    return TrainProcess(root, workdir, overrides, **kw).finish()
