"""``rnnlab diagnose``: gradient flow and recurrent Jacobian spectra of an experiment's model.

::

    rnnlab diagnose --config experiments/adding.py:lstm,T=200 [--workdir DIR]
                    [--checkpoint latest|best|STEP|none] [--cells elman,lstm] [--train]

On the model of a run (its checkpoint in ``--workdir``, or a fresh model) and one batch of
validation data it computes, with :mod:`rnnlab.diagnostics`:

- ``||dL/dh_t||`` at every step of every recurrent layer (``gradient_flow.png``);
- the same on fresh models of each cell in ``--cells`` (or ``config.diagnostics.cells``,
  built with ``config.diagnostics.cell_kwargs[cell]``), first layer, one line per cell
  (``gradient_flow_cells.png``): vanishing gradients side by side with their cures;
- ``||dL/dh_t||`` at every checkpoint kept in the workdir and every step logged during
  training, as a heatmap over training (``gradient_heatmap.png``);
- the singular values of ``dh_t/dh_{t-1}`` along the first sequences
  (``jacobian_spectrum.png``);

and writes them with ``report.json`` and ``report.md`` into ``<workdir>/diagnostics`` (or
``--out``). ``--train`` first trains (or resumes) the run with :class:`TrainingDiagnostics`
as a hook, which appends the gradient flow every ``config.diagnostics.every`` steps (or
``--every``) to ``diagnostics/history.jsonl`` and redraws the heatmap.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rnnlab import diagnostics as diag
from rnnlab import tasks as tasks_lib
from rnnlab.cli.workdir import checkpoint_or_none_arg, load_config, pick_step
from rnnlab.train import config as cfg_lib
from rnnlab.train import inputs
from rnnlab.train import state as state_lib

HISTORY = "history.jsonl"


def _settings(config: cfg_lib.ConfigDict) -> dict[str, Any]:
    """``config.diagnostics`` with defaults (experiments may leave the group out)."""
    group = config.get("diagnostics") or {}
    kwargs = group.get("cell_kwargs", {})
    return {
        "every": int(group.get("every", 0)),
        "batch_size": int(group.get("batch_size", 32)),
        "cells": tuple(group.get("cells", ())),
        "cell_kwargs": {k: dict(v) for k, v in dict(kwargs).items()},
    }


def load_batch(config: cfg_lib.ConfigDict, batch_size: int, split: str = "validation") -> dict:
    """The first ``batch_size`` sequences of ``split`` as jnp arrays (one process, no mesh)."""
    source = inputs.default_source()
    it = source.load(
        config.data,
        split=split,
        batch_size=batch_size,
        seed=int(config.seed),
        shard_index=0,
        shard_count=1,
        repeat=False,
    )
    return {k: jnp.asarray(v) for k, v in next(iter(it)).items()}


def model_loss(task: tasks_lib.Task, batch: Mapping[str, Any]):
    """``loss(model)``: the task's loss of the model on ``batch``, in evaluation mode."""

    def loss(model):
        outputs, aux = model(batch, train=False)
        total, weight = task.metrics(outputs, aux, batch)["loss"]
        return total / jnp.maximum(weight, 1e-12)

    return loss


def fresh_model(
    config: cfg_lib.ConfigDict,
    info: Mapping[str, Any],
    cell: str | None = None,
    cell_kwargs: Mapping[str, Any] | None = None,
):
    """The config's model at initialisation; ``cell`` swaps its cell, built with
    ``cell_kwargs`` (the cell's defaults when None)."""
    if cell is not None:
        data = cfg_lib.to_dict(config)
        data["model"]["cell"] = cell
        data["model"]["cell_kwargs"] = dict(cell_kwargs or {})
        config = cfg_lib.from_dict(data)
    return state_lib.build_model(config, info, int(config.seed))


def _restored(config, workdir: str, which: str):
    """``(run, model, step)`` from the workdir's checkpoints, or ``None`` when there are none."""
    from rnnlab.train.loop import Run

    if which == "none" or not os.path.isdir(os.path.join(workdir, "checkpoints")):
        return None
    run = Run(config, workdir, read_only=True)
    if which in ("best", "latest") and not run.checkpoints.all_steps():
        return None
    step = pick_step(run.checkpoints, which, workdir)
    state, _ = run.restore(step)
    return run, nnx.merge(run.graphdef, state.params, state.rest), step


def _curve_summary(norms: np.ndarray) -> dict[str, Any]:
    first, last = float(norms[0]), float(norms[-1])
    ratio = first / last if last > 0 else float("inf")
    return {
        "first": first,
        "last": last,
        "log10_first_over_last": math.log10(ratio) if 0 < ratio < float("inf") else None,
        "norms": [float(x) for x in norms],
    }


def _flows(model, loss_fn) -> tuple[float, dict[str, np.ndarray]]:
    flow = diag.hidden_state_gradients(model, loss_fn)
    return flow.loss, flow.norms


# -- training hook -----------------------------------------------------------------------------


class TrainingDiagnostics:
    """Training hook: every ``every`` steps, ``||dL/dh_t||`` on a fixed validation batch.

    Appends ``{"step", "loss", "norms": {layer: [T]}}`` to ``<workdir>/diagnostics/
    history.jsonl`` and redraws ``gradient_heatmap.png`` (first layer). Pass it in
    ``rnnlab.train.train(..., hooks=[...])``; :func:`hooks_from_config` builds it from
    ``config.diagnostics.every``.
    """

    def __init__(self, config: cfg_lib.ConfigDict, workdir: str, every: int):
        if every <= 0:
            raise ValueError(f"every must be a positive number of steps, got {every}")
        config = cfg_lib.resolved(config)
        self.every, self.out = every, os.path.join(workdir, "diagnostics")
        info = inputs.dataset_info(inputs.default_source(), config)
        self.graphdef = nnx.split(state_lib.abstract_model(config, info), nnx.Param, ...)[0]
        batch = load_batch(config, _settings(config)["batch_size"])
        self.loss_fn = model_loss(tasks_lib.get(info["task"]), batch)
        self.main = jax.process_index() == 0

    def __call__(self, step: int, state: state_lib.TrainState) -> None:
        if step % self.every or not self.main:
            return
        model = nnx.merge(self.graphdef, state.params, state.rest)
        loss, norms = _flows(model, self.loss_fn)
        os.makedirs(self.out, exist_ok=True)
        record = {"step": step, "loss": loss, "norms": {k: v.tolist() for k, v in norms.items()}}
        with open(os.path.join(self.out, HISTORY), "a") as f:
            f.write(json.dumps(record) + "\n")
        plot_history(self.out)


def hooks_from_config(config: cfg_lib.ConfigDict, workdir: str, every: int | None = None):
    """``[TrainingDiagnostics]`` when ``every`` (or ``config.diagnostics.every``) > 0."""
    every = _settings(config)["every"] if every is None else every
    return [TrainingDiagnostics(config, workdir, every)] if every > 0 else []


def read_history(out_dir: str) -> list[dict[str, Any]]:
    path = os.path.join(out_dir, HISTORY)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    # A resumed run logs some steps again: keep the latest record of each step.
    return sorted({r["step"]: r for r in records}.values(), key=lambda r: r["step"])


def plot_history(out_dir: str, extra: Sequence[dict[str, Any]] = ()) -> str | None:
    """Heatmap of the first layer's ``||dL/dh_t||`` over the logged and ``extra`` steps."""
    records = {r["step"]: r for r in [*read_history(out_dir), *extra]}
    if not records:
        return None
    steps = sorted(records)
    layer = sorted(records[steps[0]]["norms"])[0]
    rows = [records[s]["norms"][layer] for s in steps if layer in records[s]["norms"]]
    if len({len(r) for r in rows}) != 1:
        return None
    return diag.plot_gradient_heatmap(
        steps,
        np.asarray(rows),
        os.path.join(out_dir, "gradient_heatmap.png"),
        title=f"||dL/dh_t|| over training ({layer})",
    )


# -- the report --------------------------------------------------------------------------------


def diagnose(
    config: cfg_lib.ConfigDict,
    workdir: str | None,
    *,
    out_dir: str | None = None,
    checkpoint: str = "best",
    cells: Sequence[str] | None = None,
    batch_size: int | None = None,
    spectrum_examples: int = 4,
) -> dict[str, Any]:
    """Computes the diagnostics, writes the plots and reports; returns the JSON report."""
    settings = _settings(config)
    batch_size = batch_size or settings["batch_size"]
    cells = settings["cells"] if cells is None else tuple(cells)
    out_dir = out_dir or os.path.join(workdir or ".", "diagnostics")
    os.makedirs(out_dir, exist_ok=True)
    config = cfg_lib.resolved(config)
    info = inputs.dataset_info(inputs.default_source(), config)
    task = tasks_lib.get(info["task"])
    batch = load_batch(config, batch_size)
    loss_fn = model_loss(task, batch)

    restored = _restored(config, workdir, checkpoint) if workdir else None
    model, step = (restored[1], restored[2]) if restored else (fresh_model(config, info), None)
    loss, norms = _flows(model, loss_fn)
    report: dict[str, Any] = {
        "config": cfg_lib.to_dict(config),
        "checkpoint_step": step,
        "batch_size": batch_size,
        "loss": loss,
        "layers": {name: _curve_summary(v) for name, v in norms.items()},
    }
    label = f"step {step}" if step is not None else "initialisation"
    files = [
        diag.plot_gradient_flow(
            {f"{name} ({label})": v for name, v in norms.items()},
            os.path.join(out_dir, "gradient_flow.png"),
            title=f"{config.model.cell} on {config.data.name}: ||dL/dh_t||",
        )
    ]

    small = jax.tree.map(lambda a: a[:spectrum_examples], batch)
    spectra = diag.jacobian_spectra(model, lambda m: m(small, train=False))
    mean_spectra = {name: sv.reshape(-1, *sv.shape[-2:]).mean(0) for name, sv in spectra.items()}
    report["jacobian"] = {
        name: {
            "largest_mean": float(sv[:, 0].mean()),
            "largest_max": float(sv[:, 0].max()),
            "smallest_mean": float(sv[:, -1].mean()),
        }
        for name, sv in mean_spectra.items()
    }
    files.append(
        diag.plot_jacobian_spectra(mean_spectra, os.path.join(out_dir, "jacobian_spectrum.png"))
    )

    if cells:
        curves, report["cells"] = {}, {}
        for cell in cells:
            model_c = fresh_model(config, info, cell, settings["cell_kwargs"].get(cell))
            cell_loss, cell_norms = _flows(model_c, loss_fn)
            first = sorted(cell_norms)[0]
            curves[cell] = cell_norms[first]
            report["cells"][cell] = {"loss": cell_loss, **_curve_summary(cell_norms[first])}
        files.append(
            diag.plot_gradient_flow(
                curves,
                os.path.join(out_dir, "gradient_flow_cells.png"),
                title=f"||dL/dh_t|| at initialisation, first layer, on {config.data.name}",
            )
        )

    checkpoints = []
    if restored:
        run = restored[0]
        for s in run.checkpoints.all_steps():
            state, _ = run.restore(s)
            _, n = _flows(nnx.merge(run.graphdef, state.params, state.rest), loss_fn)
            checkpoints.append({"step": int(s), "norms": {k: v.tolist() for k, v in n.items()}})
        report["checkpoints"] = [c["step"] for c in checkpoints]
    heatmap = plot_history(out_dir, checkpoints)
    if heatmap:
        files.append(heatmap)
    report["plots"] = files
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(markdown(report))
    return report


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def markdown(report: Mapping[str, Any]) -> str:
    """The report as a short Markdown page."""
    cfg = report["config"]
    step = report["checkpoint_step"]
    lines = [
        f"# Gradient diagnostics: {cfg['model']['cell']} on {cfg['data']['name']}",
        "",
        f"Model at {'step ' + str(step) if step is not None else 'initialisation'}; loss "
        f"{report['loss']:.4f} on {report['batch_size']} validation sequences.",
        "",
        "## ||dL/dh_t|| per layer",
        "",
        "| layer | t = 1 | t = T | log10 ratio |",
        "|---|---|---|---|",
    ]
    for name, s in report["layers"].items():
        lines.append(
            f"| {name} | {_fmt(s['first'])} | {_fmt(s['last'])} | "
            f"{_fmt(s['log10_first_over_last'])} |"
        )
    lines += ["", "## Recurrent Jacobian dh_t/dh_{t-1}", ""]
    lines += [
        "| layer | mean largest sv | max largest sv | mean smallest sv |",
        "|---|---|---|---|",
    ]
    for name, s in report["jacobian"].items():
        lines.append(
            f"| {name} | {_fmt(s['largest_mean'])} | {_fmt(s['largest_max'])} | "
            f"{_fmt(s['smallest_mean'])} |"
        )
    if report.get("cells"):
        lines += ["", "## Cells at initialisation (first layer)", ""]
        lines += ["| cell | loss | t = 1 | t = T | log10 ratio |", "|---|---|---|---|---|"]
        for cell, s in report["cells"].items():
            lines.append(
                f"| {cell} | {s['loss']:.4f} | {_fmt(s['first'])} | {_fmt(s['last'])} | "
                f"{_fmt(s['log10_first_over_last'])} |"
            )
    lines += ["", "Plots: " + ", ".join(os.path.basename(p) for p in report["plots"]), ""]
    return "\n".join(lines)


# -- command line ------------------------------------------------------------------------------


def cmd_diagnose(args: argparse.Namespace) -> int:
    if args.workdir is None and args.config is None:
        raise cfg_lib.ConfigError("config", "give --config, --workdir or both")
    if args.workdir is None:
        config = cfg_lib.override(cfg_lib.load(args.config), args.overrides)
    else:
        config = load_config(args)
    if args.train:
        from rnnlab.train.loop import train

        if args.workdir is None:
            raise ValueError("--train needs --workdir")
        every = args.every if args.every is not None else (_settings(config)["every"] or 100)
        train(config, args.workdir, hooks=hooks_from_config(config, args.workdir, every))
    cells = None if args.cells is None else [c for c in args.cells.split(",") if c]
    report = diagnose(
        config,
        args.workdir,
        out_dir=args.out,
        checkpoint=args.checkpoint,
        cells=cells,
        batch_size=args.batch_size,
    )
    for path in report["plots"]:
        print(path)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Adds ``diagnose`` to the ``rnnlab`` command."""
    p = sub.add_parser(
        "diagnose",
        help="gradient flow through time and recurrent Jacobian spectra",
        description="Writes report.json, report.md and PNG plots of ||dL/dh_t|| and of the "
        "recurrent Jacobian's singular values for an experiment's model.",
    )
    p.add_argument("--config", help="NAME[:variant] or PATH.py[:variant] (default: the workdir's)")
    p.add_argument("--workdir", default=None, help="a run to diagnose (its checkpoints)")
    p.add_argument("--out", default=None, help="output folder (default <workdir>/diagnostics)")
    p.add_argument(
        "--checkpoint",
        default="best",
        type=checkpoint_or_none_arg,
        help="best (default), latest, a step, or none (fresh)",
    )
    p.add_argument("--cells", default=None, help="comma-separated cells to compare")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    p.add_argument("--train", action="store_true", help="train (or resume) first, with the hook")
    p.add_argument("--every", type=int, default=None, help="hook interval with --train")
    p.set_defaults(func=cmd_diagnose, accepts_overrides=True)
