"""Overfitting study: a character LM large for its data, each regulariser alone, and the recipe.

A one-layer LSTM of 256 units (353 K parameters) reads the first 2 % of *Pride and
Prejudice* (13.7 K training characters, about 26 parameters per character) for 800 steps
of 16 x 64 characters (60 epochs). Without regularisation its validation bits per character
reach their minimum half-way (step 400) and then climb while the training text is learnt
by heart. Every variant trains the same model on the same data for the same budget
(seed 0); only the regulariser changes:

=====================  ================================================================
variant                what is switched on (``rnnlab.regularizers.Regularization``)
=====================  ================================================================
``none``               nothing: the plain language model, bit for bit
``dropout``            locked (variational) dropout, input 0.1, output 0.4
                       (Gal & Ghahramani 2016)
``recurrent_dropout``  recurrent dropout on ``h_{t-1}``, 0.25, one mask per sequence (Gal)
``weight_drop``        DropConnect on ``W_hh``, 0.5 (Merity et al. 2017)
``embedding_dropout``  whole character types dropped, 0.1
``ar_tar``             AR 2, TAR 1 (Merity et al. 2017)
``weight_decay``       AdamW, decoupled weight decay 0.5 (Loshchilov & Hutter 2019)
``recipe``             AWD-LSTM-style: locked dropout 0.1 / 0.4, weight drop 0.5,
                       AR 2, TAR 1, weight decay 0.5
``small``              CI smoke run of the recipe (10 steps of a 32-unit LSTM)
=====================  ================================================================

Zoneout is not in the study, which was run when the language model still refused it. The
model now accepts it (its sampler steps apply zoneout's expectation, as the whole-sequence
evaluation does), so a zoneout variant is a candidate for the next run of the study.

Commands::

    rnnlab train --config experiments/overfitting.py:recipe --workdir workdirs/overfitting/recipe
    python -m experiments.overfitting --run-all --out workdirs/overfitting   # the whole study
    python -m experiments.overfitting --table-only --out workdirs/overfitting --publish

The driver trains every variant (two at a time), evaluates the last checkpoint on the
training split in evaluation mode (every dropout off: the "train" column is not the noisy
training loss), and prints the table; with ``--publish`` it also writes it into the
section "The overfitting study" of docs/overfitting.md and the validation curves into
experiments/results/figures/overfitting.png.

Expected result (measured, table in docs/overfitting.md): train/validation gap 1.15 bits
per character for ``none`` (train 1.69, validation 2.85 in evaluation mode) and 0.32 for
``recipe`` (2.60 / 2.92); every single technique narrows the gap except AR/TAR alone,
which memorises faster (gap 3.88). At this budget the recipe is still improving at step 800
and its validation bpc stays above the best of ``none`` (2.81 at step 400); recurrent
dropout alone ends lowest (2.67).

Hardware: 2 CPU cores of the development machine, shared with other jobs (load average 7
to 12), one JAX CPU device. Wall time: 1.5 to 2.5 minutes a variant, 8.7 minutes for the
whole study two at a time; ``small`` about 20 seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ml_collections

from experiments import settings
from rnnlab.regularizers import Regularization
from rnnlab.train.config import base_config, lock

# Each technique alone, at a strength usual for character models, then the AWD-LSTM recipe
# (Merity et al. 2017). No embedding dropout in the recipe: with 81 symbols it blanks out
# whole letters of the alphabet (75 symbols). Weight decay is an optimiser setting: see OPTIM_DECAY.
TECHNIQUES: dict[str, Regularization] = {
    "none": Regularization(),
    "dropout": Regularization(input_dropout=0.1, output_dropout=0.4, variational=True),
    "recurrent_dropout": Regularization(recurrent_dropout=0.25, recurrent_dropout_kind="gal"),
    "weight_drop": Regularization(weight_drop=0.5),
    "embedding_dropout": Regularization(embedding_dropout=0.1),
    "ar_tar": Regularization(ar=2.0, tar=1.0),
    "weight_decay": Regularization(),
    "recipe": Regularization.awd_lstm(
        input_dropout=0.1,
        hidden_dropout=0.0,
        output_dropout=0.4,
        embedding_dropout=0.0,
        weight_drop=0.5,
    ),
}
STUDY = tuple(TECHNIQUES)
VARIANTS = (*STUDY, "small")
WEIGHT_DECAY = 0.5
OPTIM_DECAY = ("weight_decay", "recipe", "small")


def get_config(arg: str = "recipe") -> ml_collections.ConfigDict:
    """One of :data:`VARIANTS` (``""`` is ``recipe``)."""
    arg = settings.variant("overfitting", arg, VARIANTS, default="recipe")
    c = base_config()
    c.seed = 0
    c.data.name = "austen"
    c.data.novels = ("prideprejudice",)
    # The first 2 % of the novel trains, the next 5 % validates (split by position).
    c.data.split_fractions = (0.02, 0.05, 0.93)
    c.data.seq_len = 64

    c.model.name = "regularized_language_model"
    c.model.cell = "lstm"
    c.model.embed_features = 64
    c.model.hidden_features = 256
    c.model.num_layers = 1
    c.model.regularization = TECHNIQUES["recipe" if arg == "small" else arg].to_dict()

    settings.adam_cosine(c, warmup_steps=20, optimizer="adamw" if arg in OPTIM_DECAY else "adam")
    c.optim.weight_decay = WEIGHT_DECAY if arg in OPTIM_DECAY else 0.0

    settings.train_steps(c, 800, batch_size=16, log_every=50, eval_every=50, checkpoint_every=800)
    c.train.keep_checkpoints = 1
    c.sample.length = 0

    if arg == "small":
        c.data.seq_len = 32
        c.model.embed_features = 16
        c.model.hidden_features = 32
        c.optim.warmup_steps = 5
        settings.train_steps(c, 10, batch_size=8, log_every=5, eval_every=10, checkpoint_every=10)
        c.eval.max_batches = 4
    return lock(c)


# ------------------------------------------------------------------------------ the driver
REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "experiments" / "overfitting.py"
DOC = REPO / "docs" / "overfitting.md"
FIGURE = REPO / "experiments" / "results" / "figures" / "overfitting.png"
TABLE_BEGIN = "<!-- overfitting-study-table:begin -->"
TABLE_END = "<!-- overfitting-study-table:end -->"
MAX_JOBS = 2  # the development machine has 2 cores, shared


def bits(record: dict[str, Any]) -> float:
    """Bits per token of a metric record: its cross-entropy ``loss`` (nats) / ln 2."""
    return float(record["loss"]) / math.log(2)


def study_row(workdir: str | Path) -> dict[str, Any]:
    """One row of the study table (bits per character) from a finished run's files.

    ``train`` is the evaluation-mode loss on the training split (``eval_train.json``,
    written by ``rnnlab eval --split train``) when present, else the last logged training
    loss, which is a mean over the logging interval taken with the regularisers on
    (``train_logged``, always reported). ``validation`` is the last validation record,
    ``gap = validation - train``. The best step minimises the validation loss (the first
    such step on ties); ``best`` is the validation bpc there.
    """
    workdir = Path(workdir)
    records = _read_jsonl(workdir / "metrics.jsonl")
    evals = [r for r in records if r["split"] == "validation" and "loss" in r]
    trains = [r for r in records if r["split"] == "train" and "loss" in r]
    if not evals or not trains:
        raise ValueError(
            f"workdir must hold training and validation loss records in metrics.jsonl, got "
            f"{len(trains)} training and {len(evals)} validation records in {workdir}"
        )
    best = min(evals, key=lambda r: (float(r["loss"]), int(r["step"])))
    train_logged = bits(trains[-1])
    eval_file = workdir / "eval_train.json"
    train = bits(json.loads(eval_file.read_text())) if eval_file.exists() else train_logged
    validation = bits(evals[-1])
    row = {
        "variant": workdir.name,
        "steps": int(evals[-1]["step"]),
        "train": train,
        "train_logged": train_logged,
        "train_eval_mode": eval_file.exists(),
        "validation": validation,
        "gap": validation - train,
        "best_step": int(best["step"]),
        "best": bits(best),
        "curve": [(int(r["step"]), bits(r)) for r in evals],
    }
    summary = workdir / "summary.json"
    if summary.exists():
        row["wall_time_s"] = float(json.loads(summary.read_text()).get("wall_time_s", math.nan))
    return row


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise ValueError(f"workdir must hold metrics.jsonl, got no file at {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def markdown_table(rows: Sequence[dict[str, Any]], *, steps_per_epoch: float = 0.0) -> str:
    """The study table (bits per character): train (evaluation mode), validation, the gap,
    the best validation and its step (and epoch when ``steps_per_epoch`` is given)."""
    head = [
        "variant",
        "train bpc",
        "validation bpc",
        "gap",
        "best validation bpc",
        "best step" + (" (epoch)" if steps_per_epoch else ""),
        "train bpc, regularisers on",
        "training time",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        best_at = str(r["best_step"])
        if steps_per_epoch:
            best_at += f" ({r['best_step'] / steps_per_epoch:.0f})"
        wall = r.get("wall_time_s")
        cells = [
            f"`{r['variant']}`",
            f"{r['train']:.3f}" + ("" if r["train_eval_mode"] else " (logged)"),
            f"{r['validation']:.3f}",
            f"{r['gap']:+.3f}",
            f"{r['best']:.3f}",
            best_at,
            f"{r['train_logged']:.3f}",
            f"{wall / 60:.1f} min" if wall is not None and math.isfinite(wall) else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(doc: Path, table: str) -> None:
    """Replaces the text between the table markers of ``doc``."""
    text = doc.read_text()
    if TABLE_BEGIN not in text or TABLE_END not in text:
        raise ValueError(f"doc must hold the markers {TABLE_BEGIN} and {TABLE_END}, got {doc}")
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    doc.write_text(f"{head}{TABLE_BEGIN}\n{table}{TABLE_END}{tail}")


def plot_curves(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Validation bpc against the step for every variant (the best step marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        steps, values = zip(*r["curve"], strict=True)
        width = 2.4 if r["variant"] in ("none", "recipe") else 1.2
        (line,) = ax.plot(steps, values, label=r["variant"], linewidth=width)
        ax.plot([r["best_step"]], [r["best"]], "o", color=line.get_color(), markersize=4)
    ax.set_xlabel("training step (16 x 64 characters)")
    ax.set_ylabel("validation bits per character")
    ax.set_title("LSTM-256 on 2 % of Pride and Prejudice: validation curves (dots: best)")
    low = min(min(v for _, v in r["curve"]) for r in rows)
    ax.set_ylim(low - 0.1, low + 1.2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_variant(variant: str, workdir: Path) -> None:
    """Trains ``variant`` in ``workdir``, then evaluates its last checkpoint on the training
    split in evaluation mode (regularisers off); one process, so JAX starts once."""
    from rnnlab import cli

    spec = f"{CONFIG}:{variant}"
    if cli.main(["train", "--config", spec, "--workdir", str(workdir)]) != 0:
        raise RuntimeError(f"training {variant} failed")
    if cli.main(["eval", "--workdir", str(workdir), "--split", "train", "--checkpoint", "latest"]):
        raise RuntimeError(f"evaluating {variant} on the training split failed")


def _launch(variant: str, out: Path) -> float:
    """Runs one variant in a subprocess (its output in ``<out>/<variant>.log``)."""
    t0 = time.time()
    cmd = [sys.executable, "-m", "experiments.overfitting", "--worker", variant]
    cmd += ["--out", str(out)]
    with open(out / f"{variant}.log", "w") as log:
        code = subprocess.call(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise RuntimeError(f"variant {variant} failed (exit {code}); see {out}/{variant}.log")
    return time.time() - t0


def run_all(out: Path, variants: Sequence[str] = STUDY, jobs: int = MAX_JOBS) -> None:
    """Every variant, at most ``jobs`` at a time (the corpus is prepared once first)."""
    if not 1 <= jobs <= MAX_JOBS:
        raise ValueError(f"jobs must be in [1, {MAX_JOBS}], got {jobs}")
    from rnnlab import data

    data.info(get_config("none").data)  # prepare the split before parallel readers start
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for variant, seconds in zip(
            variants, pool.map(lambda v: _launch(v, out), variants), strict=True
        ):
            print(f"{variant}: {seconds / 60:.1f} min", flush=True)


def steps_per_epoch(variant: str = "none") -> float:
    """Training steps per pass over the training split of ``variant``'s config."""
    from rnnlab import data

    cfg = get_config(variant)
    train_chars = data.info(cfg.data)["num_tokens"]["train"]
    return train_chars / (cfg.train.batch_size * cfg.data.seq_len)


def report(out: Path, variants: Sequence[str], doc: Path | None, figure: Path | None) -> str:
    rows = [study_row(out / v) for v in variants]
    try:
        per_epoch = steps_per_epoch()
    except (KeyError, TypeError):
        per_epoch = 0.0
    table = markdown_table(rows, steps_per_epoch=per_epoch)
    if doc is not None:
        write_table(doc, table)
    if figure is not None:
        plot_curves(rows, figure)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.overfitting", description=__doc__)
    p.add_argument("--out", default="workdirs/overfitting", help="one workdir per variant")
    p.add_argument("--run-all", action="store_true", help="train every variant, then report")
    p.add_argument("--table-only", action="store_true", help="report from existing workdirs")
    p.add_argument("--variants", default=",".join(STUDY), help="comma-separated subset")
    p.add_argument(
        "--jobs", type=int, default=MAX_JOBS, help=f"trainings at a time (<= {MAX_JOBS})"
    )
    # The published table and figure are rewritten only when asked: a rerun of the study
    # (often of a subset, or with other settings) must not replace them unnoticed.
    p.add_argument(
        "--publish",
        action="store_true",
        help=f"write the table into {DOC.name} and the curves into {FIGURE.name}",
    )
    p.add_argument("--doc", default="", help="Markdown file with the table markers")
    p.add_argument("--figure", default="", help="curves figure")
    p.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = Path(args.out).absolute()
    if args.worker:
        run_variant(args.worker, out / args.worker)
        return 0
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise ValueError(f"--variants must be among {VARIANTS}, got {bad}")
    if not (args.run_all or args.table_only):
        p.error("give --run-all or --table-only")
    t0 = time.time()
    if args.run_all:
        run_all(out, variants, args.jobs)
    doc = args.doc or (str(DOC) if args.publish else "")
    figure = args.figure or (str(FIGURE) if args.publish else "")
    table = report(out, variants, Path(doc) if doc else None, Path(figure) if figure else None)
    print(table)
    if args.run_all:
        print(f"study wall time: {(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
