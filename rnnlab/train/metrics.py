"""Metric logs of a run: ``metrics.jsonl`` (one JSON object per line) and TensorBoard.

Each record is ``{"step": s, "split": "train" | "validation" | ..., "time": unix seconds,
<metric>: value, ...}``. TensorBoard scalars are named ``<split>/<metric>``. Only the main
process writes; on the others every method is a no-op. The workdir may be on ``gs://``
(see :mod:`rnnlab.train.files`): ``metrics.jsonl`` is rewritten whole at every write, since
Cloud Storage objects cannot be appended to.

Training metrics stay on the device until a log step: :class:`MeanAccumulator` keeps the
per-step device scalars and averages them in one host transfer.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np

from rnnlab.train import files

METRICS_FILE = "metrics.jsonl"


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
    """Appends metric records to ``<workdir>/metrics.jsonl`` and TensorBoard event files."""

    def __init__(self, workdir: str, *, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = files.join(workdir, METRICS_FILE)
        self._tb = None
        self._lines: list[str] = []
        if enabled:
            files.makedirs(workdir)
            if files.exists(self.path):
                self._lines = _records(files.read_text(self.path))
            if tensorboard:
                self._tb = _summary_writer()(files.join(workdir, "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drops records past ``step`` (a resumed run re-logs the steps it repeats)."""
        if not self.enabled:
            return
        self._lines = [line for line in self._lines if int(json.loads(line)["step"]) <= step]
        files.write_text(self.path, "".join(line + "\n" for line in self._lines))

    def write(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split, "time": round(time.time(), 3)}
        record.update({k: _clean(v) for k, v in metrics.items()})
        self._lines.append(json.dumps(record))
        files.write_text(self.path, "".join(line + "\n" for line in self._lines))
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _records(text: str) -> list[str]:
    """The complete JSON records among the lines of ``text``."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill: skip it
            continue
        if isinstance(record, dict) and "step" in record:
            out.append(line)
    return out


def read(path: str) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (NaN/inf strings back to floats)."""
    if not files.exists(path):
        return []
    out = []
    for line in _records(files.read_text(path)):
        record = json.loads(line)
        for k, v in record.items():
            if isinstance(v, str) and v in ("nan", "inf", "-inf"):
                record[k] = float(v)
        out.append(record)
    return out


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
