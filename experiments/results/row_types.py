"""The types of the results table's rows (:class:`Row`, its :class:`Metric`, published or peer
:class:`Baseline` and :class:`Extra` columns) and the constants several row modules share.

The rows themselves are in :mod:`experiments.results.rows` (built by
:mod:`experiments.results.row_builders`) and :mod:`experiments.results.rows_families`.
"""

from __future__ import annotations

import dataclasses
import math

TIERS = ("make", "long", "accelerator")

ADDING_BASELINE = 1.0 / 6.0  # predicting the mean of the sum: MSE 1/6 (Le et al. 2015)
ADDING_SOLVED = 0.01
COPY_T = 100


def copy_baseline(delay: int) -> float:
    """``10 log 8 / (T + 20)`` nats per step (Arjovsky et al. 2016)."""
    return 10 * math.log(8) / (delay + 20)


@dataclasses.dataclass(frozen=True)
class Metric:
    """Our number: ``label`` as shown, where it is read, which direction is better."""

    label: str
    path: str
    better: str = "min"
    percent: bool = False
    digits: int = 4

    def __post_init__(self):
        if self.better not in ("min", "max"):
            raise ValueError(f"better must be 'min' or 'max', got {self.better!r}")


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A number to compare with: published (``value``, ``source`` = paper and year) or
    computed in the same run (``path`` into this row's files, or ``"row:<key>"``).

    ``target``: the row reaches its goal when its metric is at least as good as this one.
    """

    label: str
    value: float | None = None
    path: str = ""
    source: str = ""
    target: bool = False

    def __post_init__(self):
        if (self.value is None) == (not self.path):
            raise ValueError(f"baseline {self.label!r}: give exactly one of value and path")


@dataclasses.dataclass(frozen=True)
class Extra:
    """A further number of the run shown in the row's notes (``value * scale``)."""

    label: str
    path: str
    scale: float = 1.0
    digits: int = 3


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table (see the module docstring)."""

    key: str
    experiment: str
    dataset: str
    model: str
    config: str
    metric: Metric
    baselines: tuple[Baseline, ...] = ()
    tier: str = "make"
    overrides: tuple[str, ...] = ()
    eval_split: str = ""  # score a checkpoint on this split with `rnnlab eval`
    eval_checkpoint: str = ""  # which one: "" (the best by validation), "latest"
    also_eval: tuple[str, ...] = ()  # more splits scored on the same checkpoint
    extras: tuple[Extra, ...] = ()
    solved_below: float | None = None  # "solved" when the metric falls below this
    control: bool = False  # a row expected to miss its target (a demonstration)
    diagnose: str = ""  # cells for `rnnlab diagnose --cells ...` after training
    figures: tuple[str, ...] = ("plots/loss.png",)
    note: str = ""
    # `rnnlab eval` reads the experiment file too: its model is registered by that file
    # (a peer outside the package), not by the workdir's config.json alone.
    eval_reads_config: bool = False

    def __post_init__(self):
        if self.tier not in TIERS:
            raise ValueError(f"row {self.key}: tier must be one of {TIERS}, got {self.tier!r}")

    @property
    def workdir_name(self) -> str:
        return self.key

    def train_args(self, workdir: str) -> list[str]:
        """Arguments of ``rnnlab`` that train this row into ``workdir``."""
        return ["train", "--config", self.config, "--workdir", workdir] + [
            f"--config.{o}" for o in self.overrides
        ]

    def commands(self, workdir: str = "") -> list[list[str]]:
        """Every ``rnnlab`` invocation of the row, in order."""
        workdir = workdir or f"workdirs/results/{self.key}"
        out = [self.train_args(workdir)]
        which = ["--checkpoint", self.eval_checkpoint] if self.eval_checkpoint else []
        if self.eval_reads_config:
            which += ["--config", self.config, *(f"--config.{o}" for o in self.overrides)]
        for split in (self.eval_split, *self.also_eval) if self.eval_split else ():
            out.append(["eval", "--workdir", workdir, "--split", split, *which])
        if self.diagnose:
            out.append(["diagnose", "--workdir", workdir, "--cells", self.diagnose])
        return out


# bits per character from a loss in nats
BITS = 1 / math.log(2)
