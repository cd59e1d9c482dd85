"""Learning-curve figures (PNG) from a run's ``metrics.jsonl``.

``plot_workdir(workdir)`` writes into ``<workdir>/plots/``:

- ``loss.png``: training and validation loss against the step;
- ``<metric>.png``: every other validation metric (accuracy, bpc, perplexity, ...) with its
  training counterpart when there is one;
- ``grad_norm.png``: gradient norm before and after clipping (log scale);
- ``lr.png``: the learning rate actually applied.

Every figure has a legend naming the split of each curve, the step on the x axis and the
metric's unit on the y axis (:data:`UNITS`).

Uses matplotlib's non-interactive Agg backend, so it works on headless machines.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from typing import Any

from rnnlab.train import files
from rnnlab.train import metric_log as metrics_lib

_SKIP = {"step", "split", "time", "lr", "grad_norm", "clipped_grad_norm", "clipped"}

# The unit of each metric the engine logs, for the y axis; others are plotted as named.
UNITS = {
    "loss": "nats per token",
    "perplexity": "tokens, exp(loss)",
    "bpc": "bits per character",
    "bits_per_token": "bits per token",
    "accuracy": "fraction correct",
    "error": "fraction wrong",
    "error_rate": "fraction wrong",
    "mse": "squared target units",
    "rmse": "target units",
    "lr": "learning rate per update",
    "grad_norm": "global L2 norm",
}


def ylabel(name: str, names: set[str] | frozenset[str] = frozenset()) -> str:
    """``name (unit)`` for a known metric, else ``name``; the unit of ``loss`` depends on
    the task, told by the other metric ``names`` logged."""
    if name == "loss" and not names & {"perplexity", "bpc", "bits_per_token"}:
        unit = "nats per example" if names & {"accuracy", "error"} else "the task's loss"
        return f"loss ({unit})"
    return f"{name} ({UNITS[name]})" if name in UNITS else name


_NOT_CURVES = {"steps_per_second", "tokens_per_second", "step_time", "nonfinite", "epoch"}


def _series(records: list[dict[str, Any]]) -> dict[str, dict[str, tuple[list, list]]]:
    """``{split: {metric: (steps, values)}}`` with non-finite values dropped."""
    out: dict[str, dict[str, tuple[list, list]]] = defaultdict(dict)
    for r in records:
        split = r.get("split", "train")
        for k, v in r.items():
            if k in ("step", "split", "time") or not isinstance(v, int | float):
                continue
            if not math.isfinite(v):
                continue
            xs, ys = out[split].setdefault(k, ([], []))
            xs.append(r["step"])
            ys.append(v)
    return out


def _figure(title: str, ylabel: str, curves: list[tuple[str, list, list]], path: str, log=False):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for label, xs, ys in curves:
        marker = "o" if len(xs) < 30 else None
        ax.plot(xs, ys, label=label, marker=marker, markersize=3)
    ax.set_xlabel("training step (updates)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log and all(v > 0 for _, _, ys in curves for v in ys):
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()  # even one curve: the legend says which split it is
    fig.tight_layout()
    png = io.BytesIO()  # through rnnlab.train.files, so that gs:// workdirs work
    fig.savefig(png, format="png")
    plt.close(fig)
    files.write_bytes(path, png.getvalue())


def plot_workdir(workdir: str) -> list[str]:
    """Writes the figures for ``workdir``'s metrics; returns the paths written."""
    records = metrics_lib.read(files.join(workdir, metrics_lib.METRICS_FILE))
    series = _series(records)
    out_dir = files.join(workdir, "plots")
    files.makedirs(out_dir)
    written = []
    train = series.get("train", {})
    evals = {s: m for s, m in series.items() if s != "train"}
    names = set(train) | {k for m in evals.values() for k in m}
    for name in sorted(names - _SKIP - _NOT_CURVES):
        curves = []
        if name in train:
            curves.append((f"train {name}", *train[name]))
        for split, m in sorted(evals.items()):
            if name in m:
                curves.append((f"{split} {name}", *m[name]))
        if not curves or (name not in ("loss",) and not evals):
            continue
        path = files.join(out_dir, f"{name}.png")
        _figure(name, ylabel(name, names), curves, path, log=name in ("loss", "perplexity"))
        written.append(path)
    grads = [(f"{k} (train)", *train[k]) for k in ("grad_norm", "clipped_grad_norm") if k in train]
    if grads:
        path = files.join(out_dir, "grad_norm.png")
        _figure("gradient norm", ylabel("grad_norm"), grads, path, log=True)
        written.append(path)
    if "lr" in train:
        path = files.join(out_dir, "lr.png")
        _figure("learning rate", ylabel("lr"), [("lr (train)", *train["lr"])], path)
        written.append(path)
    return written
