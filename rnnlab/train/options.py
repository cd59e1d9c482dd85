"""The training engine's config groups, one frozen dataclass each: every key the engine
reads, with its default and a one-line help, written once (:mod:`rnnlab.options`).

The ``optim`` group is :class:`rnnlab.optim.Options`; the ``model`` and ``data`` groups
are the named model's ``<Model>Config`` and the named dataset's group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import ml_collections

from rnnlab.optim import Options
from rnnlab.options import COUNT, POSITIVE, Check, one_of, opt
from rnnlab.options import ConfigError as ConfigError  # its home for the engine

ConfigDict = ml_collections.ConfigDict


AT_LEAST_0 = Check(lambda v: v >= 0, ">= 0")


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    metric: str = opt("", "validation metric watched (empty: the task's default)")
    mode: str = opt(
        "",
        "min or max (empty: the direction the metric is known for)",
        one_of("", "min", "max", expected="'min' or 'max'"),
    )
    patience: int = opt(0, "evaluations without improvement before stopping (0: off)", COUNT)
    min_delta: float = opt(0.0, "smallest change that counts as an improvement", AT_LEAST_0)


@dataclasses.dataclass(frozen=True)
class Train:
    steps: int = opt(1000, "optimizer updates of the run", POSITIVE)
    batch_size: int = opt(32, "global batch, over all devices and processes", POSITIVE)
    log_every: int = opt(50, "steps between metric lines", POSITIVE)
    eval_every: int = opt(500, "steps between evaluations (0: only at the end)", COUNT)
    checkpoint_every: int = opt(500, "steps between checkpoints (0: only the final one)", COUNT)
    keep_checkpoints: int = opt(2, "latest checkpoints kept (the best one is kept too)", POSITIVE)
    async_checkpoints: bool = opt(True, "write checkpoints in the background")
    stateful: bool = opt(True, "carry the state across batches (models with init_carry)")
    max_nonfinite: int = opt(20, "consecutive skipped updates before nonfinite_action", COUNT)
    nonfinite_action: str = opt(
        "stop",
        '"stop": raise naming the step; "restore": back to the last checkpoint '
        "with the learning rate scaled by nonfinite_lr_factor",
        one_of("stop", "restore", expected="'stop' or 'restore'"),
    )
    # Checked only with nonfinite_action="restore" (rnnlab.train.config).
    nonfinite_lr_factor: float = opt(0.5, "learning-rate factor of each restore, in (0, 1]")
    nonfinite_max_restores: int = opt(3, "restores before the run stops", COUNT)
    preemption_grace_s: float = opt(
        30.0,
        "seconds between SIGTERM and the hard kill (30 on GCE spot VMs); a due "
        "evaluation is deferred to the resumed run unless it fits",
        Check(lambda v: v >= 0, "seconds >= 0"),
    )
    divergence_patience: int = opt(
        3,
        "log windows in a row whose loss is off (above divergence_factor x its running "
        "baseline, or far above the uniform baseline) before nonfinite_action",
        Check(lambda v: v >= 0, "log windows >= 0"),
    )
    divergence_factor: float = opt(
        3.0,
        "loss over its running baseline that counts as off",
        Check(lambda v: v > 1, "a factor > 1"),
    )
    early_stopping: EarlyStopping = opt(EarlyStopping(), "when to stop on a validation metric")


@dataclasses.dataclass(frozen=True)
class Eval:
    split: str = opt("validation", "split evaluated during training")
    batch_size: int = opt(0, "global evaluation batch (0: train.batch_size)", COUNT)
    max_batches: int = opt(0, "batches per evaluation (0: the whole split)", COUNT)


@dataclasses.dataclass(frozen=True)
class Mesh:
    """The mesh's axis sizes; any axis name may be added (``--config.mesh.fsdp=2``)."""

    data: int = opt(
        -1,
        "size of the data axis (-1: the devices left over); add axes "
        "with --config.mesh.<name>=<size>, see rnnlab.train.sharding",
    )


SHARDING_RULES: tuple[str, ...] = ("replicated", "fsdp")


@dataclasses.dataclass(frozen=True)
class Sharding:
    rules: str = opt(
        "replicated",
        '"replicated", or "fsdp": matrices split on the mesh',
        one_of(*SHARDING_RULES),
    )
    fsdp_min_dim: int = opt(1024, "fsdp: smallest dimension that is split", POSITIVE)
    fsdp_axis: str = opt("fsdp", 'fsdp: mesh axes, comma-separated ("data,fsdp": ZeRO-3)')


@dataclasses.dataclass(frozen=True)
class Sample:
    length: int = opt(0, "characters/tokens sampled after training (0: none)", COUNT)
    temperature: float = opt(0.8, "softmax temperature of sampling (0: greedy)", AT_LEAST_0)
    top_k: int = opt(0, "sample among the k most likely tokens (0: all)", COUNT)
    top_p: float = opt(
        1.0, "nucleus sampling mass, in (0, 1]", Check(lambda v: 0 < v <= 1, "a number in (0, 1]")
    )
    prompt: str = opt("", "text the samples continue")
    num: int = opt(1, "samples drawn")


@dataclasses.dataclass(frozen=True)
class Debug:
    nan_at_steps: tuple[int, ...] = opt((), "fault injection: NaN weights on these steps' batches")


@dataclasses.dataclass(frozen=True)
class DataName:
    """The ``data`` group as the engine knows it; the named dataset's table adds the rest."""

    name: str = opt("", "dataset, one of rnnlab.data.names(); its options: docs/data.md")


@dataclasses.dataclass(frozen=True)
class ModelName:
    """The ``model`` group as the engine knows it; the named model's config adds the rest."""

    name: str = opt("language_model", "model, one of rnnlab.models.model_names()")
    dtype: str = opt("float32", 'compute dtype; "bfloat16" for mixed precision')


# The top-level groups of every run config, in the order config.json lists them.
GROUPS: dict[str, type] = {
    "data": DataName,
    "model": ModelName,
    "optim": Options,
    "train": Train,
    "eval": Eval,
    "mesh": Mesh,
    "sharding": Sharding,
    "sample": Sample,
    "debug": Debug,
}
SEED_HELP = "seed of the parameters, dropout and the data order"


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """A run config converted once into its typed groups
    (:func:`rnnlab.train.config.convert`): what the code below the command line reads."""

    seed: int
    data: Mapping[str, Any]  # the dataset's group (rnnlab.data.resolve), every option filled
    model_name: str
    model: Any  # the named model's <Model>Config
    optim: Options
    train: Train
    eval: Eval
    mesh: Mapping[str, int]  # axis sizes; axis names are the user's
    sharding: Sharding
    sample: Sample
    debug: Debug
