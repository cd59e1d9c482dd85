"""Learning-curve figures (PNG) from a run's ``metrics.jsonl``.

``plot_workdir(workdir)`` writes into ``<workdir>/plots/``, one figure per question:

- ``loss.png``: is it learning? Training and validation loss against the step;
- ``<metric>.png``: how good is it? The task's validation metric (:data:`TASK_METRICS`:
  bpc, accuracy, BLEU, MASE, ...) with its training counterpart when there is one; the
  other metrics and the counts they are computed from stay in ``metrics.jsonl``;
- ``throughput.png``: how fast? Tokens per second of the training steps;
- ``grad_norm.png``: are the gradients healthy? The norm before clipping, and after it
  where clipping is on;
- ``lr.png``: the learning rate of every step, from the run's schedule.

Every figure has a legend naming each curve's split, the step on the x axis and the
metric's unit on the y axis (:data:`UNITS`). A curve of one point is no curve: a metric
measured once (at the end) is left out. Axes are logarithmic only where the values span
more than a decade (ticks like ``3.6x10^0`` say nothing).

Uses matplotlib's non-interactive Agg backend, so it works on headless machines.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from typing import Any

from rnnlab.train import files, readable
from rnnlab.train import metric_log as metrics_lib

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
    "tokens_per_second": "tokens per second",
    "bleu": "corpus BLEU-4, 0 to 100",
    "exact_match": "fraction of sequences",
    "token_accuracy": "fraction of tokens",
    "mae": "standardised units",
    "mase": "MAE over the seasonal naive's in-sample MAE",
}


def ylabel(name: str, names: set[str] | frozenset[str] = frozenset()) -> str:
    """``name (unit)`` for a known metric, else ``name``; the unit of ``loss`` depends on
    the task, told by the other metric ``names`` logged."""
    if name == "loss" and not names & {"perplexity", "bpc", "bits_per_token"}:
        unit = "nats per example" if names & {"accuracy", "error"} else "the task's loss"
        return f"loss ({unit})"
    return f"{name} ({UNITS[name]})" if name in UNITS else name


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


def spans_a_decade(values: list[float]) -> bool:
    """Whether a log axis helps: all values positive, the largest over 10 x the smallest."""
    return bool(values) and min(values) > 0 and max(values) > 10 * min(values)


# Fixed margins, in figure fractions of the 6.4 x 4.0 inch figure, instead of a layout
# engine: tight_layout measures every text by drawing the figure once more (about a third
# of the cost of a figure). These fit a tick label of six characters, the axis labels and
# the title at the default font size.
_MARGINS = {"left": 0.13, "right": 0.97, "bottom": 0.12, "top": 0.92}


def _figure(title: str, ylabel: str, curves: list[tuple], path: str, log=False, styles=None):
    # A Figure with its own Agg canvas, without pyplot: no global figure registry and no
    # backend selection, and nothing to close (the figure goes with its last reference).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(**_MARGINS)
    ax = fig.add_subplot()
    for i, (label, xs, ys) in enumerate(curves):
        style = (styles or {}).get(label, {})
        marker = "o" if len(xs) < 30 else None
        ax.plot(xs, ys, label=label, marker=marker, markersize=3, zorder=2 + i, **style)
    ax.set_xlabel("training step (updates)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log and spans_a_decade([v for _, _, ys in curves for v in ys]):
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()  # even one curve: the legend says which split it is
    _save(fig, path)


def _save(fig, path: str) -> None:
    """Writes ``fig`` as a PNG to ``path`` (through rnnlab.train.files, so that gs://
    workdirs work)."""
    png = io.BytesIO()
    fig.savefig(png, format="png")
    files.write_bytes(path, png.getvalue())


def _curves(curves: list[tuple[str, list, list]]) -> list[tuple[str, list, list]]:
    return [c for c in curves if len(c[1]) >= 2]  # one point is not a curve


def lr_per_step(workdir: str, last_step: int) -> tuple[list, list] | None:
    """The learning rate of every step 1..``last_step`` from the run's recorded schedule
    (``config.json``), times the scale of non-finite restores; None where the schedule
    cannot be rebuilt (a plateau schedule's reductions depend on the run)."""
    from rnnlab import optim

    path = files.join(workdir, "config.json")
    if not files.exists(path):
        return None
    o = files.read_json(path).get("optim", {})
    if o.get("schedule") == "plateau" or int(o.get("accumulate_steps", 1)) != 1:
        return None
    keys = ("lr", "schedule", "warmup_steps", "total_steps", "final_lr_fraction")
    keys += ("decay_every", "decay_factor")
    try:
        fn = optim.lr_schedule(**{k: o[k] for k in keys if k in o})
    except (TypeError, ValueError):
        return None
    summary = files.join(workdir, "summary.json")
    scale = float(files.read_json(summary).get("lr_scale", 1.0)) if files.exists(summary) else 1.0
    import jax
    import numpy as np

    steps = list(range(1, last_step + 1))
    # Step s applies the rate of optimizer count s - 1 (optax counts from 0). One compiled
    # call over all counts: calling the schedule per step dispatches (and the first time
    # compiles) each of its operations once per step. Float counts: exact below 2**24, and
    # an int32 array meets the schedules' float constants only under standard promotion.
    rates = np.asarray(jax.jit(jax.vmap(fn))(np.arange(last_step, dtype=np.float32)))
    return steps, [scale * float(r) for r in rates]


# The metric that answers "how good is it" per task, the first logged one wins: a character
# model's bits, translation's BLEU (it logs perplexity too), a word model's perplexity (it
# logs accuracy too), the copy task's bits, a classifier's accuracy, CTC's label error
# rate, a forecaster's MASE, then plain errors.
TASK_METRICS = (
    "bpc", "bleu", "perplexity", "bits_per_token", "accuracy", "error_rate", "mase", "mae", "mse",
)  # fmt: skip


def task_metric(names: set[str]) -> list[str]:
    """``[the task's validation metric]`` among the logged ``names`` (:data:`TASK_METRICS`),
    or ``[]``; its other metrics stay in metrics.jsonl, one figure per question."""
    shown = readable.shown_names(names)
    return next(([m] for m in TASK_METRICS if m in shown), [])


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
    for name in ["loss", *task_metric(names)]:
        curves = []
        if name in train:
            curves.append(("train", *train[name]))
        for split, m in sorted(evals.items()):
            if name in m:
                curves.append((split, *m[name]))
        curves = _curves(curves)
        if not curves or (name not in ("loss",) and not any(c[0] != "train" for c in curves)):
            continue
        path = files.join(out_dir, f"{name}.png")
        _figure(name, ylabel(name, names), curves, path, log=name in ("loss", "perplexity"))
        written.append(path)
    if _curves([("train", *train.get("tokens_per_second", ([], [])))]):
        path = files.join(out_dir, "throughput.png")
        curve = [("train", *train["tokens_per_second"])]
        _figure("throughput", ylabel("tokens_per_second"), curve, path)
        written.append(path)
    grads = [
        (label, *train[k])
        for k, label in (("grad_norm", "before clipping"), ("clipped_grad_norm", "after clipping"))
        if k in train
    ]
    if len(grads) == 2 and grads[0][2] == grads[1][2]:
        grads = [("before clipping = after (never clipped)", *grads[0][1:])]
    grads = _curves(grads)
    if grads:
        path = files.join(out_dir, "grad_norm.png")
        # The clipped norm dashed and on top: where it equals the norm, both stay visible.
        styles = {"after clipping": {"linestyle": "--", "linewidth": 1.2}}
        _figure("gradient norm (train)", ylabel("grad_norm"), grads, path, True, styles)
        written.append(path)
    last = max((r["step"] for r in records), default=0)
    per_step = lr_per_step(workdir, last) if last else None
    lr = ("schedule, per step", *per_step) if per_step else ("train, mean of each log window",)
    if per_step is None and "lr" in train:
        lr = (*lr, *train["lr"])
    if len(lr) == 3 and _curves([lr]):
        path = files.join(out_dir, "lr.png")
        _figure("learning rate", ylabel("lr"), [lr], path)
        written.append(path)
    return written
