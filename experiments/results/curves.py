"""Learning curves across rows of the results table (one PNG per group of rows).

Each :class:`Group` draws one metric of one split against the training step for several
rows, read from their ``metrics.jsonl`` in ``workdirs/results/<row>``: the cells on the
adding problem, rnnlab's and Flax's cells on MNIST-1D, the character LM with and without
regularisation (training and validation together, which shows the overfitting gap), the
recurrent families on the character LM and on selective copying.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Collection
from typing import Any


@dataclasses.dataclass(frozen=True)
class Group:
    name: str
    title: str
    rows: tuple[str, ...]
    metric: str
    splits: tuple[str, ...] = ("validation",)
    log_y: bool = False
    scale: float = 1.0  # e.g. 1 / ln 2: nats to bits
    ylabel: str = ""
    lines: tuple[tuple[float, str], ...] = ()  # horizontal references: (value, label)


GROUPS: tuple[Group, ...] = (
    Group(
        "adding-T200-curves",
        "Adding problem, T = 200: validation MSE per cell (baseline 0.167, solved < 0.01)",
        (
            "adding-elman-T200",
            "adding-lstm-T200",
            "adding-gru-T200",
            "adding-indrnn-T200",
            "adding-orthogonal-T200",
            "adding-lru-T200",
        ),
        "mse",
        log_y=True,
        ylabel="validation MSE",
        lines=((1 / 6, "baseline 1/6"), (0.01, "solved")),
    ),
    Group(
        "mnist1d-curves",
        "MNIST-1D: validation accuracy, rnnlab's cells and Flax's GRU with the same budget",
        ("mnist1d-gru", "mnist1d-lstm", "mnist1d-flax-gru"),
        "accuracy",
        ylabel="validation accuracy",
    ),
    Group(
        "charlm-curves",
        "Character LM on one novel: training and validation bits per character",
        ("charlm-plain", "charlm-recipe"),
        "loss",
        splits=("train", "validation"),
        scale=1 / math.log(2),
        ylabel="bits per character",
    ),
    Group(
        "charlm-families-curves",
        "Character LM on the six novels, about 115 K parameters each: validation bits per "
        "character per recurrent family",
        tuple(f"charlm-family-{f}" for f in ("lstm", "gru", "hawk", "slstm", "mlstm", "s6")),
        "loss",
        scale=1 / math.log(2),
        ylabel="validation bits per character",
    ),
    Group(
        "selcopy-curves",
        "Selective copying (16 symbols among 128 steps): validation accuracy at the markers",
        ("selcopy-s6", "selcopy-lru", "selcopy-lstm"),
        "accuracy",
        ylabel="validation accuracy",
        lines=((1 / 14, "chance 1/14"),),
    ),
)


def read_metrics(workdir: str) -> list[dict[str, Any]]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def curve(records: list[dict[str, Any]], split: str, metric: str) -> tuple[list, list]:
    pts = sorted((r["step"], r[metric]) for r in records if r.get("split") == split and metric in r)
    return [s for s, _ in pts], [v for _, v in pts]


def plot_group(
    group: Group, workdirs: str, out_dir: str, recorded: Collection[str] = ()
) -> str | None:
    """Draws ``group`` from the rows' workdirs into ``out_dir/<name>.png``. When a row of
    the group that has a record (``recorded``) has no workdir here, or none has, the figure
    already there (from an earlier run) is kept rather than redrawn without those rows;
    ``None`` when there is none."""
    path = os.path.join(out_dir, f"{group.name}.png")
    series = {key: read_metrics(os.path.join(workdirs, key)) for key in group.rows}
    series = {k: v for k, v in series.items() if v}
    missing = [k for k in group.rows if k in recorded and k not in series]
    if not series or (missing and os.path.exists(path)):
        return path if os.path.exists(path) else None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (key, records) in enumerate(series.items()):
        for split in group.splits:
            steps, values = curve(records, split, group.metric)
            if steps:
                style = "-" if split != "train" else ":"
                label = key if len(group.splits) == 1 else f"{key} ({split})"
                values = [v * group.scale for v in values]
                ax.plot(steps, values, style, color=f"C{i}", label=label)
    for value, label in group.lines:
        ax.axhline(value, color="grey", lw=0.8, ls="--")
        ax.annotate(
            label,
            (0, value),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            color="grey",
            va="bottom",
        )
    if group.log_y:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(group.ylabel or group.metric)
    ax.set_title(group.title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
