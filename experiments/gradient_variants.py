"""Shared by experiments/adding.py and experiments/copy.py: the cells compared and the
variant strings that pick one (not an experiment itself).

A variant is a comma-separated list: a cell name, optionally ``T=<steps>`` and ``noclip``,
for example ``lstm``, ``indrnn,T=400`` or ``elman,T=100,noclip``; ``ci`` alone is the
smoke-test variant. Gradient clipping (by global norm 1, Pascanu et al. 2013) is on unless
``noclip`` is given.

The sweep, one run per variant, and its results table::

    for v in $(python -m experiments.gradient_variants list adding); do
      rnnlab train --config "experiments/adding.py:$v" --workdir "workdirs/adding/$v"
    done
    python -m experiments.gradient_variants table adding workdirs/adding
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import ml_collections

from experiments import settings

# Per cell: the registered cell name, its keyword arguments, depth, width and Adam's lr.
# Settings follow each cell's paper where it gives them for these tasks.
CELLS: dict[str, dict[str, Any]] = {
    # Elman (1990): tanh units, orthogonal recurrent init.
    "elman": {"cell": "elman", "kwargs": {}, "layers": 1, "hidden": 128, "lr": 1e-3},
    # Le, Jaitly & Hinton (2015): ReLU units, identity recurrent init; small lr, as theirs.
    "irnn": {"cell": "irnn", "kwargs": {}, "layers": 1, "hidden": 128, "lr": 1e-4},
    "lstm": {
        "cell": "lstm",
        "kwargs": {"forget_bias": 1.0},
        "layers": 1,
        "hidden": 128,
        "lr": 1e-3,
    },
    "layernorm_lstm": {
        "cell": "layernorm_lstm",
        "kwargs": {},
        "layers": 1,
        "hidden": 128,
        "lr": 1e-3,
    },
    "gru": {"cell": "gru", "kwargs": {}, "layers": 1, "hidden": 128, "lr": 1e-3},
    # Li et al. (2018): two ReLU layers, |u| <= 2^(1/T) (the horizon is set to T below).
    "indrnn": {
        "cell": "indrnn",
        "kwargs": {"max_gain": 2.0},
        "layers": 2,
        "hidden": 128,
        "lr": 5e-4,
    },
    # Lezcano-Casado & Martinez-Rubio (2019): modReLU, W = expm(A - A^T).
    "orthogonal": {"cell": "orthogonal", "kwargs": {}, "layers": 1, "hidden": 128, "lr": 1e-3},
    # Orvieto et al. (2023): two LRU blocks (GLU readout), eigenvalues on the 0.9..0.999 ring.
    "lru": {
        "cell": "lru",
        "kwargs": {"r_min": 0.9, "r_max": 0.999, "max_phase": 0.314, "glu": True},
        "layers": 2,
        "hidden": 128,
        "lr": 1e-3,
    },
}

HORIZON_CELLS = ("indrnn",)  # cells whose kwargs take the sequence length as a horizon


def parse(arg: str, default_t: int) -> dict[str, Any]:
    """``"indrnn,T=400,noclip"`` -> ``{"cell": "indrnn", "T": 400, "clip": False}``."""
    out: dict[str, Any] = {"cell": "lstm", "T": default_t, "clip": True, "ci": False}
    for token in filter(None, (t.strip() for t in arg.split(","))):
        if token in ("small", "ci"):  # "ci": the smoke run's earlier name, kept as an alias
            out["ci"] = True
        elif token == "noclip":
            out["clip"] = False
        elif token == "clip":
            out["clip"] = True
        elif token.startswith("T="):
            try:
                out["T"] = int(token[2:])
            except ValueError as e:
                raise ValueError(f"variant {arg!r}: T must be an integer, got {token!r}") from e
            if out["T"] < 2:
                raise ValueError(f"variant {arg!r}: T must be at least 2, got {out['T']}")
        elif token in CELLS:
            out["cell"] = token
        else:
            raise ValueError(
                f"variant {arg!r}: unknown token {token!r}; expected a cell in {sorted(CELLS)}, "
                "'T=<int>', 'noclip' or 'small'"
            )
    return out


def cell_settings(name: str, steps: int) -> dict[str, Any]:
    """The cell's entry with the sequence length filled in where the cell needs it."""
    entry = dict(CELLS[name])
    kwargs = dict(entry["kwargs"])
    if name in HORIZON_CELLS:
        kwargs["horizon"] = steps
    entry["kwargs"] = kwargs
    return entry


def sweep(lengths: tuple[int, ...]) -> list[str]:
    """Every variant of the comparison: each cell at each ``T``, with and without clipping."""
    return [
        f"{cell},T={t}{'' if clip else ',noclip'}"
        for t in lengths
        for cell in CELLS
        for clip in (True, False)
    ]


def set_training(
    c: ml_collections.ConfigDict,
    variant: dict[str, Any],
    cell: dict[str, Any],
    *,
    steps: int,
    compare: tuple[str, ...] = tuple(CELLS),
) -> None:
    """The optimiser, the loop, the diagnostics group and the ``ci`` shrinking, shared by
    the adding and copy experiments (``c`` from ``base_config``, unlocked)."""
    c.model.cell = cell["cell"]
    c.model.cell_kwargs = cell["kwargs"]
    c.model.hidden_features = cell["hidden"]
    c.model.num_layers = cell["layers"]

    c.optim.optimizer = "adam"
    c.optim.lr = cell["lr"]
    c.optim.clip_norm = 1.0 if variant["clip"] else 0.0

    settings.train_steps(
        c, steps, batch_size=64, log_every=100, eval_every=500, checkpoint_every=500
    )
    c.train.stateful = False
    c.train.max_nonfinite = 50
    c.eval.split = "validation"

    # Read by `rnnlab diagnose` and its training hook (rnnlab.cli.diagnose): gradient flow on
    # `batch_size` validation sequences, every `every` steps of training (0: off), compared
    # across every cell of CELLS (their settings in `cell_kwargs`) on fresh models.
    horizon = variant["horizon"]
    c.diagnostics = ml_collections.ConfigDict(
        {
            "every": 0,
            "batch_size": 32,
            "cells": tuple(compare),
            "cell_kwargs": {n: cell_settings(n, horizon)["kwargs"] for n in compare},
        }
    )

    if variant["ci"]:
        c.model.hidden_features = 16
        settings.train_steps(c, 40, batch_size=16, log_every=10, eval_every=20, checkpoint_every=20)
        c.eval.max_batches = 2
        c.diagnostics.batch_size = 8


# -- the sweep and its table -------------------------------------------------------------------

EXPERIMENTS = {
    # name: (lengths, validation metric, baseline(T), solved(value, T))
    "adding": ((100, 200, 400), "mse", lambda t: 1.0 / 6.0, lambda v, t: v < 0.01),
    "copy": (
        (100,),
        "loss",
        lambda t: 10 * math.log(8) / (t + 20),
        lambda v, t: v < 0.1 * 10 * math.log(8) / (t + 20),
    ),
}


def results_table(experiment: str, root: str) -> str:
    """Markdown table of the sweep's runs in ``root/<variant>`` (their summary.json)."""
    lengths, metric, baseline, solved = EXPERIMENTS[experiment]
    lines = [
        f"| cell | T | clipping | validation {metric} | baseline | solved | steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in sweep(lengths):
        v = parse(variant, lengths[0])
        path = os.path.join(root, variant, "summary.json")
        if not os.path.exists(path):
            row = ["not run", f"{baseline(v['T']):.3f}", "", ""]
        else:
            with open(path) as f:
                summary = json.load(f)
            value = (summary["final"].get("validation") or {}).get(metric, float("nan"))
            ok = "yes" if math.isfinite(value) and solved(value, v["T"]) else "no"
            row = [f"{value:.4f}", f"{baseline(v['T']):.3f}", ok, str(summary["steps"])]
        clip = "norm 1" if v["clip"] else "none"
        lines.append(f"| {v['cell']} | {v['T']} | {clip} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """``python -m experiments.gradient_variants list|table adding|copy [ROOT]``."""
    if len(argv) < 2 or argv[0] not in ("list", "table") or argv[1] not in EXPERIMENTS:
        print(__doc__.split("\n\n")[0])
        print("usage: python -m experiments.gradient_variants list|table adding|copy [ROOT]")
        return 2
    if argv[0] == "list":
        print("\n".join(sweep(EXPERIMENTS[argv[1]][0])))
    else:
        root = argv[2] if len(argv) > 2 else os.path.join("workdirs", argv[1])
        print(results_table(argv[1], root), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
