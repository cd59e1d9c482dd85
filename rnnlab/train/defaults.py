"""The defaults of every config key, written once, with a one-line help each.

The engine's groups are written here (:func:`_spec`); the optimiser's are the fields of
:class:`rnnlab.optim.Options`; the ``model`` and ``data`` groups are completed by
:func:`fill_defaults` from the named model's constructor (:func:`rnnlab.models.options`) and
the named dataset's declared options (:func:`rnnlab.data.options`).
"""

from __future__ import annotations

import difflib
from typing import Any, NamedTuple

import ml_collections

from rnnlab import data, models, optim

ConfigDict = ml_collections.ConfigDict


class ConfigError(ValueError):
    """A bad config value; ``key`` is its dotted path (``'optim.lr'``)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"config key {key!r}: {message}")
        self.key = key


class Key(NamedTuple):
    """A leaf of :func:`base_config`: its default and a one-line help."""

    default: Any
    help: str


def _spec() -> dict[str, Any]:
    """The engine's keys, the one place their defaults and help are written (the optimiser's
    come from :class:`rnnlab.optim.Options`; the options of the named model and dataset
    from their own modules, see :func:`fill_defaults`)."""
    helps = optim.help_strings()
    return {
        "seed": Key(0, "seed of the parameters, dropout and the data order"),
        "data": {
            "name": Key("", "dataset, one of rnnlab.data.names(); its options: docs/data.md"),
        },
        "model": {
            "name": Key("language_model", "model, one of rnnlab.models.model_names()"),
            "dtype": Key("float32", 'compute dtype; "bfloat16" for mixed precision'),
        },
        "optim": {k: Key(v, helps[k]) for k, v in optim.defaults().items()},
        "train": {
            "steps": Key(1000, "optimizer updates of the run"),
            "batch_size": Key(32, "global batch, over all devices and processes"),
            "log_every": Key(50, "steps between metric lines"),
            "eval_every": Key(500, "steps between evaluations (0: only at the end)"),
            "checkpoint_every": Key(500, "steps between checkpoints (0: only the final one)"),
            "keep_checkpoints": Key(2, "latest checkpoints kept (the best one is kept too)"),
            "async_checkpoints": Key(True, "write checkpoints in the background"),
            "stateful": Key(True, "carry the state across batches (models with init_carry)"),
            "max_nonfinite": Key(20, "consecutive skipped updates before nonfinite_action"),
            "nonfinite_action": Key(
                "stop",
                '"stop": raise naming the step; "restore": back to the last checkpoint '
                "with the learning rate scaled by nonfinite_lr_factor",
            ),
            "nonfinite_lr_factor": Key(0.5, "learning-rate factor of each restore, in (0, 1]"),
            "nonfinite_max_restores": Key(3, "restores before the run stops"),
            "preemption_grace_s": Key(
                30.0,
                "seconds between SIGTERM and the hard kill (30 on GCE spot VMs); a due "
                "evaluation is deferred to the resumed run unless it fits",
            ),
            "divergence_patience": Key(
                3,
                "log windows in a row whose loss is off (above divergence_factor x its running "
                "baseline, or far above the uniform baseline) before nonfinite_action",
            ),
            "divergence_factor": Key(3.0, "loss over its running baseline that counts as off"),
            "early_stopping": {
                "metric": Key("", "validation metric watched (empty: the task's default)"),
                "mode": Key("", "min or max (empty: the direction the metric is known for)"),
                "patience": Key(0, "evaluations without improvement before stopping (0: off)"),
                "min_delta": Key(0.0, "smallest change that counts as an improvement"),
            },
        },
        "eval": {
            "split": Key("validation", "split evaluated during training"),
            "batch_size": Key(0, "global evaluation batch (0: train.batch_size)"),
            "max_batches": Key(0, "batches per evaluation (0: the whole split)"),
        },
        # Any axis name may be added from the command line (--config.mesh.fsdp=2).
        "mesh": {
            "data": Key(
                -1,
                "size of the data axis (-1: the devices left over); add axes "
                "with --config.mesh.<name>=<size>, see rnnlab.train.sharding",
            ),
        },
        "sharding": {
            "rules": Key("replicated", '"replicated", or "fsdp": matrices split on the mesh'),
            "fsdp_min_dim": Key(1024, "fsdp: smallest dimension that is split"),
            "fsdp_axis": Key("fsdp", 'fsdp: mesh axes, comma-separated ("data,fsdp": ZeRO-3)'),
        },
        "sample": {
            "length": Key(0, "characters/tokens sampled after training (0: none)"),
            "temperature": Key(0.8, "softmax temperature of sampling (0: greedy)"),
            "top_k": Key(0, "sample among the k most likely tokens (0: all)"),
            "top_p": Key(1.0, "nucleus sampling mass, in (0, 1]"),
            "prompt": Key("", "text the samples continue"),
            "num": Key(1, "samples drawn"),
        },
        "debug": {
            "nan_at_steps": Key((), "fault injection: NaN weights on these steps' batches"),
        },
    }


def _walk(spec: dict[str, Any], prefix: str = ""):
    for key, value in spec.items():
        if isinstance(value, Key):
            yield prefix + key, value
        else:
            yield from _walk(value, f"{prefix}{key}.")


def base_config() -> ConfigDict:
    """Every key the training engine reads, with its default (unlocked; fill then lock).

    The ``model`` and ``data`` groups hold only ``name`` (and ``model.dtype``) here;
    :func:`load` completes them with the options of the named model and dataset.
    """

    def build(spec):
        return ConfigDict(
            {k: v.default if isinstance(v, Key) else build(v) for k, v in spec.items()}
        )

    return build(_spec())


def group_options(config: ConfigDict, group: str) -> dict[str, Any] | None:
    """``{key: Option(default, help)}`` of the model (``group='model'``) or dataset
    (``'data'``) the config names; None for a dataset that ``rnnlab.data`` does not
    register (a test's own data source checks its options itself).

    Raises:
      ConfigError: ``model.name`` is not a registered model.
    """
    name = config[group].get("name")
    if group == "model":
        try:
            return models.options(name)
        except ValueError as e:
            raise ConfigError("model.name", str(e)) from e
    if name in data.names():
        return data.options(name)
    return None


def help_strings(config: ConfigDict | None = None) -> dict[str, str]:
    """``{dotted key: one-line help}`` of every key of :func:`base_config` and, given a
    config, of the options of its model and dataset."""
    out = {key: k.help for key, k in _walk(_spec())}
    for group in ("model", "data"):
        options = group_options(config, group) if config is not None else None
        for key, option in (options or {}).items():
            out.setdefault(f"{group}.{key}", option.help)
    return out


def describe(config: ConfigDict) -> str:
    """Every key of ``config`` with its value and help, one per line (``--help-config``)."""
    helps = help_strings(config)
    return "\n".join(
        f"{key} = {_get(config, key)!r}  # {helps.get(key, '')}".rstrip(" #")
        for key in flat_keys(config)
    )


def _get(config: ConfigDict, key: str) -> Any:
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def unknown_option(group: str, key: str, options: dict[str, Any], owner: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
    hint = f"; did you mean '{group}.{close[0]}'?" if close else ""
    return ConfigError(f"{group}.{key}", f"no such option of {owner}{hint}")


def fill_defaults(config: ConfigDict, previous: dict[str, dict[str, Any] | None] | None = None):
    """Completes the ``model`` and ``data`` groups in place with the defaults of the named
    model (its constructor's keyword arguments) and dataset (its declared options), so that
    every key can be overridden and is recorded in ``config.json``.

    ``previous``: the options before a ``name`` changed (an override of ``model.name`` or
    ``data.name``): keys the new model or dataset does not take are dropped (they belonged
    to the old one), and keys still at the old defaults take the new ones.

    Raises:
      ConfigError: a key the model or dataset does not take, naming the closest one.
    """
    for group in ("model", "data"):
        options = group_options(config, group)
        node = config[group]
        old = (previous or {}).get(group)
        with node.unlocked():
            for key in list(node.keys()) if old is not None else ():
                if key == "name" or key not in old:
                    continue
                if options is not None and key not in options:
                    del node[key]
                elif same_value(node[key], old[key].default):
                    if options is None:
                        del node[key]
                    else:
                        node[key] = options[key].default
            if options is None:
                continue
            owner = f"{group} {node.get('name')!r}"
            for key in node.keys():
                if key != "name" and key not in options:
                    raise unknown_option(group, key, options, owner)
            for key, option in options.items():
                if key not in node:
                    node[key] = option.default


def same_value(value: Any, default: Any) -> bool:
    """Whether a config value is the option's default (lists as tuples, types equal)."""
    value = value.to_dict() if isinstance(value, ConfigDict) else value
    if isinstance(value, list):
        value = tuple(value)
    return type(value) is type(default) and value == default


def flat_keys(config: ConfigDict, prefix: str = "") -> list[str]:
    """Every leaf key as a dotted path."""
    out = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, ConfigDict):
            out.extend(flat_keys(value, path + "."))
        else:
            out.append(path)
    return out
