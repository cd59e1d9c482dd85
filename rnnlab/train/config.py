"""Experiment configs: loading ``experiments/<file>.py:<arg>``, command-line overrides and
validation that names the offending key. The defaults and help of every key are in
:mod:`rnnlab.train.defaults` (re-exported here).

An experiment file defines ``get_config(arg: str) -> ml_collections.ConfigDict``, normally
starting from :func:`base_config` so that every key the engine reads exists (and a
misspelled key on the command line is an error, not a silently added field)::

    def get_config(arg=""):
        config = base_config()
        config.data.name = "austen"
        ...
        return lock(config)
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import sys
import types
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from rnnlab import models, optim
from rnnlab.options import closest, type_problem
from rnnlab.train import sharding
from rnnlab.train.defaults import (  # noqa: F401 (the config API, re-exported)
    ConfigError,
    Key,
    base_config,
    describe,
    fill_defaults,
    flat_keys,
    group_options,
    help_strings,
    same_value,
    unknown_option,
)
from rnnlab.train.options import GROUPS, RunOptions

ConfigDict = ml_collections.ConfigDict


def lock(config: ConfigDict) -> ConfigDict:
    config.lock()
    return config


SHIPPED_EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def experiment_path(path_text: str) -> Path:
    """The file of ``--config``'s part before the colon: a path to one's own file, or the
    name of a shipped experiment (``charlm`` is ``experiments/charlm.py`` beside the
    package), so that a shipped experiment runs from any folder."""
    path = Path(path_text)
    if path.is_file():
        return path
    shipped = SHIPPED_EXPERIMENTS / f"{path.stem}.py"
    if path.name == path_text and not path.suffix and shipped.is_file():
        return shipped
    hint = f"; the shipped one is --config {path.stem}" if shipped.is_file() else ""
    raise ConfigError("config", f"no experiment file at {path_text!r}{hint}")


def load(spec: str) -> ConfigDict:
    """``'charlm:small'`` or ``'experiments/charlm.py:small'`` -> the locked config from
    ``get_config('small')``."""
    path_text, _, arg = spec.partition(":")
    path = experiment_path(path_text)
    name = f"rnnlab_experiment_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError("config", f"{path_text} is not a Python file (expected <file>.py)")
    module = importlib.util.module_from_spec(module_spec)
    # Experiment files may import their siblings (experiments/__init__.py helpers), and
    # one's own helpers in the current folder, as ``python -m`` would allow.
    sys.path[:0] = [str(path.resolve().parent.parent), str(Path.cwd())]
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as e:  # bad input (exit status 2), not a failure at run time
        raise ConfigError("config", f"{e.filename}:{e.lineno}: {e.msg}") from e
    finally:
        del sys.path[:2]
    if not hasattr(module, "get_config"):
        raise ConfigError("config", f"{path_text} defines no get_config(arg)")
    try:
        config = module.get_config(arg)
    except ConfigError:
        raise
    except (ValueError, KeyError) as e:  # experiments refuse unknown variants this way
        raise ConfigError("config", f"{path_text}:{arg}: {e}") from e
    if not isinstance(config, ConfigDict):
        raise ConfigError("config", f"get_config({arg!r}) must return a ConfigDict")
    fill_defaults(config)
    config.lock()
    return config


def _unknown(config: ConfigDict, key: str) -> ConfigError:
    near = closest(key, flat_keys(config))
    hint = f"; did you mean {near!r}?" if near else ""
    return ConfigError(key, f"no such key{hint}")


def parse_value(text: str, current: Any, key: str = "") -> Any:
    """Parses ``text`` as the type of the field's current value."""
    try:
        if isinstance(current, bool):
            low = text.strip().lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, str):
            return text
        if isinstance(current, tuple | list):
            value = ast.literal_eval(text) if text.strip() else ()
            value = (value,) if not isinstance(value, tuple | list) else value
            return type(current)(value)
    except (ValueError, SyntaxError) as e:
        raise ConfigError(
            key, f"expected a {type(current).__name__} like {current!r}, got {text!r}"
        ) from e
    try:  # None or another type: best effort, falling back to the raw string
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# Groups whose keys are the user's to name (mesh axes); elsewhere an unknown key is an error.
OPEN_GROUPS: tuple[str, ...] = ("mesh",)


def override(config: ConfigDict, assignments: Iterable[str]) -> ConfigDict:
    """Applies ``'optim.lr=3e-4'`` style assignments in place; unknown keys raise, except
    new axes of ``mesh`` (``'mesh.fsdp=2'``), whose values are ints."""
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if key.startswith("config."):
            key = key[len("config.") :]
        if not sep:
            raise ConfigError(key, f"override must look like key=value, got {item!r}")
        *parents, leaf = key.split(".")
        node = config
        for i, part in enumerate(parents):
            if part not in node or not isinstance(node[part], ConfigDict):
                raise _unknown(config, ".".join(parents[: i + 1]) + "." + leaf)
            node = node[part]
        if leaf not in node and ".".join(parents) in OPEN_GROUPS:
            # Mesh axes are named by the user: a new one is an int size, appended last.
            with node.unlocked():
                node[leaf] = parse_value(text, 0, key)
            continue
        if leaf not in node:
            raise _unknown(config, key)
        if isinstance(node[leaf], ConfigDict):
            raise ConfigError(key, "is a group of keys; set one of its fields")
        value = parse_value(text, node[leaf], key)
        renames = key in ("model.name", "data.name")
        before = {g: group_options(config, g) for g in ("model", "data")} if renames else None
        try:
            node[leaf] = value
        except TypeError as e:
            raise ConfigError(key, str(e)) from e
        if renames:  # the new model's (dataset's) options replace the old defaults
            fill_defaults(config, before)
    return config


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separates ``--config.a.b=v`` / ``--config.a.b v`` overrides from other arguments."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            body = arg[2:]
            if "=" not in body:
                if i + 1 >= len(argv):
                    raise ConfigError(body[len("config.") :], "override has no value")
                body = f"{body}={argv[i + 1]}"
                i += 1
            overrides.append(body)
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def to_dict(config: ConfigDict) -> dict[str, Any]:
    """Plain JSON-able dict (tuples become lists)."""
    return json.loads(config.to_json())


def from_dict(data: dict[str, Any]) -> ConfigDict:
    """Inverse of :func:`to_dict` on :func:`base_config`'s keys (lists back to tuples)."""
    config = base_config()

    def fill(node: ConfigDict, values: dict[str, Any], prefix: str = ""):
        for key, value in values.items():
            if isinstance(value, dict):
                if key not in node or not isinstance(node[key], ConfigDict):
                    node[key] = ConfigDict()
                fill(node[key], value, f"{prefix}{key}.")
            else:
                try:
                    node[key] = tuple(value) if isinstance(value, list) else value
                except TypeError as e:  # a hand-edited config.json with a wrong type
                    raise ConfigError(f"{prefix}{key}", str(e)) from e

    if not isinstance(data, dict):
        raise ConfigError("config", f"expected a JSON object, got {type(data).__name__}")
    fill(config, data)
    return lock(config)


def resolved(config: ConfigDict) -> ConfigDict:
    """A copy with defaults that depend on other keys filled in (what the run uses)."""
    out = ConfigDict(config.to_dict())
    fill_defaults(out)
    if out.optim.total_steps == 0:
        out.optim.total_steps = int(out.train.steps)
    if out.eval.batch_size == 0:
        out.eval.batch_size = int(out.train.batch_size)
    return lock(out)


# -- validation ----------------------------------------------------------------------------


# Groups the engine reads all of; other top-level groups (a tool's own, e.g. diagnostics)
# and the keys of data, model and mesh belong to their readers.
ENGINE_GROUPS: tuple[str, ...] = ("train", "optim", "eval", "sample", "sharding", "debug")


def check_model(config: ConfigDict) -> None:
    """The model group against the named model's options (see :func:`_check_groups`)."""
    _check_groups(config, ("model",))


def _check_groups(config: ConfigDict, groups: Sequence[str]) -> None:
    """Keys the named model or dataset does not take, and model values whose type differs
    from the option's default, name their key."""
    for group in groups:
        options = group_options(config, group)
        if options is None:
            continue
        owner = f"{group} {config[group].get('name')!r}"
        for key, value in config[group].items():
            if key == "name":
                continue
            if key not in options:
                raise unknown_option(group, key, options, owner)
            default = options[key].default
            # Dataset options are checked by their readers (which name the key); a None
            # default takes any type.
            if group == "model" and default is not None and not isinstance(value, ConfigDict):
                problem = type_problem(default, value)
                if problem is not None:
                    raise ConfigError(f"model.{key}", problem)


def _typed(group: type, node: ConfigDict, prefix: str) -> Any:
    """``node`` as the dataclass ``group`` (nested groups likewise, lists as tuples). A key
    the group lacks names the closest key; a value of the wrong type, or one its field's
    check refuses (:mod:`rnnlab.train.options`), names its key."""
    fields = {f.name: f for f in dataclasses.fields(group)}
    for key in node:
        if key not in fields:
            raise _unknown(base_config(), f"{prefix}{key}")
    values = {}
    for name, f in fields.items():
        key, value = f"{prefix}{name}", node.get(name, f.default)
        if dataclasses.is_dataclass(f.default) and isinstance(value, ConfigDict):
            values[name] = _typed(type(f.default), value, f"{key}.")
            continue
        problem = type_problem(f.default, value)
        check = f.metadata.get("check")
        if problem is None and check is not None and not check.ok(value):
            problem = f"expected {check.expected}, got {value!r}"
        if problem is not None:
            raise ConfigError(key, problem)
        values[name] = tuple(value) if isinstance(value, list) else value
    return group(**values)


def convert(config: ConfigDict) -> RunOptions:
    """The config's typed groups (:class:`~rnnlab.train.options.RunOptions`), converted
    once; an unknown key (the closest one named), a value of the wrong type or one its
    field's check refuses raises :class:`ConfigError` naming its key."""
    for key, value in config.items():  # top-level keys: the seed and groups
        if key != "seed" and not isinstance(value, ConfigDict):
            raise _unknown(base_config(), key)
    problem = type_problem(0, config.seed)
    if problem is not None:
        raise ConfigError("seed", problem)
    engine = {g: _typed(GROUPS[g], config[g], f"{g}.") for g in ENGINE_GROUPS if g != "optim"}
    typed_optim = _typed(optim.Options, config.optim, "optim.")
    _check_groups(config, ("model", "data"))
    model = config.model.to_dict()
    name = model.pop("name")
    return RunOptions(
        seed=config.seed,
        data=types.MappingProxyType(config.data.to_dict()),
        model_name=name,
        model=models.config_class(name)(**model),
        optim=typed_optim,
        mesh=types.MappingProxyType(config.mesh.to_dict()),
        **engine,
    )


def _check_batch(config: ConfigDict, context: dict[str, Any]) -> None:
    dp, procs = context.get("data_parallel", 1), context.get("process_count", 1)
    sizes = {
        "train.batch_size": config.train.batch_size,
        "eval.batch_size": config.eval.batch_size or config.train.batch_size,
    }
    for key, size in sizes.items():
        if size % dp:
            raise ConfigError(
                key,
                f"global batch {size} is not divisible by the {dp} devices of the data axes "
                "of the mesh",
            )
        if size % procs:
            raise ConfigError(key, f"global batch {size} is not divisible by {procs} processes")


def _check_optim(config: ConfigDict) -> None:
    kwargs = dict(config.optim.to_dict())
    if kwargs.get("total_steps", 0) == 0:
        kwargs["total_steps"] = config.train.steps
    try:  # the optimiser's one validation, without building the chain
        optim.check(**kwargs)
    except TypeError as e:
        raise ConfigError("optim", str(e)) from e
    except ValueError as e:
        raise ConfigError(f"optim.{getattr(e, 'argument', '?')}", str(e)) from e


def _check_faults(config: ConfigDict) -> None:
    """The settings of the fault guards that depend on each other."""
    t = config.train
    if t.nonfinite_action == "restore":
        if not 0 < t.nonfinite_lr_factor <= 1:
            raise ConfigError(
                "train.nonfinite_lr_factor",
                f"expected a number in (0, 1], got {t.nonfinite_lr_factor!r}",
            )
        if t.max_nonfinite == 0:
            raise ConfigError(
                "train.max_nonfinite", "nonfinite_action='restore' needs max_nonfinite > 0"
            )
        if t.checkpoint_every == 0 and t.eval_every == 0:
            raise ConfigError(
                "train.checkpoint_every",
                "nonfinite_action='restore' needs checkpoints during the run "
                "(checkpoint_every > 0), but only the final step is saved",
            )
    if t.early_stopping.patience > 0 and t.eval_every == 0:
        raise ConfigError(
            "train.early_stopping.patience",
            f"early stopping after {t.early_stopping.patience} evaluations needs "
            "train.eval_every > 0 (with 0 the run is evaluated only at the end)",
        )
    for i, step in enumerate(config.debug.nan_at_steps):
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ConfigError("debug.nan_at_steps", f"entry {i} must be a step >= 1, got {step!r}")


def validate(config: ConfigDict, context: dict[str, Any] | None = None) -> RunOptions:
    """Every check of a run config, one fixed list (whichever modules were imported); the
    first failure raises :class:`ConfigError`. Returns the config's typed groups
    (:func:`convert`).

    ``context`` holds what the run learnt: ``num_devices``, ``data_parallel``,
    ``process_count``.
    """
    context = dict(context or {})
    if not config.data.get("name"):
        raise ConfigError("data.name", "no dataset named (set --config.data.name=...)")
    options = convert(config)
    _check_batch(config, context)
    _check_optim(config)
    _check_faults(config)
    sharding.check(config, context)
    return options
