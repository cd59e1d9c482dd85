"""Metric logs of a run: ``metrics.jsonl`` (one JSON object per line) and TensorBoard.

Each record is ``{"step": s, "split": "train" | "validation" | ..., "time": unix seconds,
<metric>: value, ...}``. TensorBoard scalars are named ``<split>/<metric>``. Only the main
process writes; on the others every method is a no-op.

On a local disk each record is appended to ``metrics.jsonl`` as it is written; the file is
rewritten only when a resumed (or restored) run drops the records past its checkpoint. On
``gs://`` (see :mod:`rnnlab.train.files`) objects cannot be appended to, so the file is
rewritten whole, at most every :data:`REMOTE_FLUSH_S` seconds and at every
:meth:`MetricWriter.flush` (the loop flushes at each checkpoint and at the end). TensorBoard
events are purged the same way: the writer opened at a resumed step ``s`` records a purge
at ``s + 1``, so TensorBoard drops the events an interrupted run wrote past ``s``.

``loggers``: callables ``logger(step, split, metrics)`` that receive every record as it is
written (on the main process), for instance to forward it to an experiment tracker.

Training metrics stay on the device until a log step: :class:`MeanAccumulator` keeps the
per-step device scalars and averages them in one host transfer.
"""

from __future__ import annotations

import json
import math
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from rnnlab.train import files

METRICS_FILE = "metrics.jsonl"
REMOTE_FLUSH_S = 60.0

Logger = Callable[[int, str, Mapping[str, float]], None]


def _clean(value: Any) -> Any:
    """JSON-safe floats (NaN and infinities become strings JSON readers accept)."""
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return value


def _summary_writer():
    """tensorboardX's ``SummaryWriter``, imported without torch.

    tensorboardX imports torch (when installed) only to accept torch tensors; rnnlab logs
    Python floats, and the import costs several seconds at every start of a run.
    """
    if "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # makes `import torch` raise ImportError inside tensorboardX
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


class MetricWriter:
    """Appends metric records to ``<workdir>/metrics.jsonl`` and TensorBoard event files.

    Args:
      workdir: the run's directory.
      enabled: False on processes other than the main one.
      tensorboard: also write TensorBoard events.
      start_step: the step the run resumes from: records past it are dropped and the
        TensorBoard events past it purged (``None``: keep everything).
      loggers: ``logger(step, split, metrics)`` called with every record (module docstring).
    """

    def __init__(
        self,
        workdir: str,
        *,
        enabled: bool = True,
        tensorboard: bool = True,
        start_step: int | None = None,
        loggers: Sequence[Logger] = (),
    ):
        self.enabled = enabled
        self.path = files.join(workdir, METRICS_FILE)
        self.remote = files.is_remote(workdir)
        self.loggers = list(loggers)
        self._tb_dir = files.join(workdir, "tensorboard") if tensorboard else None
        self._tb = None
        self._lines: list[str] = []
        self._unflushed, self._flushed_at = False, time.monotonic()
        if enabled:
            files.makedirs(workdir)
            if files.exists(self.path):
                self._lines = _records(files.read_text(self.path), self.path)
            if start_step is not None:
                self.truncate_after(start_step)
            else:
                self._open_tensorboard(None)

    def _open_tensorboard(self, purge_step: int | None) -> None:
        if self._tb_dir is None:
            return
        if self._tb is not None:
            self._tb.close()
        # A unique suffix: a restore within the same second must not reuse the file name.
        suffix = f".{uuid.uuid4().hex[:8]}"
        self._tb = _summary_writer()(self._tb_dir, purge_step=purge_step, filename_suffix=suffix)

    def truncate_after(self, step: int) -> None:
        """Drops records past ``step`` (a resumed run re-logs the steps it repeats) and
        reopens TensorBoard with a purge at ``step + 1``."""
        if not self.enabled:
            return
        kept = [line for line in self._lines if int(json.loads(line)["step"]) <= step]
        text = files.read_text(self.path) if files.exists(self.path) else ""
        on_disk = "".join(line + "\n" for line in kept)
        self._lines = kept
        if text != on_disk:  # records to drop, or a line a kill cut short
            files.write_text(self.path, on_disk)
        self._open_tensorboard(step + 1 if step > 0 else None)

    def write(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
        """Records ``metrics`` of ``split`` at ``step`` (and hands them to the loggers)."""
        if not self.enabled:
            return
        record = {"step": int(step), "split": split, "time": round(time.time(), 3)}
        record.update({k: _clean(v) for k, v in metrics.items()})
        line = json.dumps(record)
        self._lines.append(line)
        if self.remote:
            self._unflushed = True
            if time.monotonic() - self._flushed_at >= REMOTE_FLUSH_S:
                self._rewrite()
        else:
            files.append_text(self.path, line + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(f"{split}/{k}", float(v), int(step))
        for logger in self.loggers:
            logger(int(step), split, dict(metrics))

    def records(self) -> list[dict[str, Any]]:
        """The records written so far (those of earlier runs kept on resume included)."""
        return [_parsed(line) for line in self._lines]

    def _rewrite(self) -> None:
        files.write_text(self.path, "".join(line + "\n" for line in self._lines))
        self._unflushed, self._flushed_at = False, time.monotonic()

    def flush(self) -> None:
        """Writes what is buffered (remote ``metrics.jsonl``, TensorBoard) through."""
        if self.enabled and self._unflushed:
            self._rewrite()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self.flush()
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _records(text: str, path: str = METRICS_FILE) -> list[str]:
    """The complete JSON records among the lines of ``text``; a kill may cut the last line
    short (skipped), but a complete record without an integer ``step`` would stop every
    resume later, so it raises a ValueError naming ``path`` and the line."""
    out = []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill: skip it
            continue
        step = record.get("step") if isinstance(record, dict) else None
        if type(step) is not int:  # bool is an int subclass: not a step either
            raise ValueError(
                f"{path} line {number} is not a metric record with an integer step "
                f"({line[:60]!r}); repair or delete that line, then rerun"
            )
        out.append(line)
    return out


def read(path: str) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (NaN/inf strings back to floats)."""
    if not files.exists(path):
        return []
    return [_parsed(line) for line in _records(files.read_text(path), path)]


def _parsed(line: str) -> dict[str, Any]:
    record = json.loads(line)
    for k, v in record.items():
        if isinstance(v, str) and v in ("nan", "inf", "-inf"):
            record[k] = float(v)
    return record


class MeanAccumulator:
    """Collects per-step device metric dicts; :meth:`result` averages them on the host."""

    def __init__(self):
        self._items: list[dict[str, jax.Array]] = []

    def add(self, metrics: Mapping[str, jax.Array]) -> None:
        self._items.append(dict(metrics))

    def __len__(self) -> int:
        return len(self._items)

    def state(self) -> list[dict[str, float]]:
        """The steps collected so far, as host floats: saved with a checkpoint taken between
        two log steps (preemption), so that the resumed run logs the same means."""
        return [{k: float(v) for k, v in h.items()} for h in jax.device_get(self._items)]

    def load(self, items: Iterable[Mapping[str, float]]) -> None:
        self._items = [dict(item) for item in items]

    def result(self) -> dict[str, float]:
        """Means over the collected steps (one device-to-host transfer), then reset."""
        if not self._items:
            return {}
        host = jax.device_get(self._items)
        self._items = []
        keys = host[0].keys()
        return {k: float(np.mean([float(h[k]) for h in host])) for k in keys}


def sum_sums(items: Iterable[Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    """Adds up ``{name: [sum, weight]}`` host arrays over batches."""
    total: dict[str, list[float]] = {}
    for item in items:
        for k, v in item.items():
            s, w = float(v[0]), float(v[1])
            acc = total.setdefault(k, [0.0, 0.0])
            acc[0] += s
            acc[1] += w
    return {k: (v[0], v[1]) for k, v in total.items()}
