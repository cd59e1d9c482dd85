"""Experiment configs at the command line's edge: loading ``experiments/<file>.py:<arg>``
(``get_config(arg)`` returning a ConfigDict, normally from :func:`base_config`), overrides,
the named model's and dataset's defaults, and the one conversion into the typed groups
(:func:`convert`), whose fields hold every key's default, help and check
(:mod:`rnnlab.options`). Errors name the offending key."""

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

from rnnlab import data, models, optim
from rnnlab.options import build, closest, table, type_problem, unknown_option
from rnnlab.train import sharding
from rnnlab.train.options import GROUPS, SEED_HELP, ConfigDict, ConfigError, RunOptions

SHIPPED_EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
# Groups the engine reads all of, in the order they are checked; the keys of data, model and
# mesh belong to their readers, other top-level groups (a tool's own) to the tool.
ENGINE_GROUPS: tuple[str, ...] = ("train", "eval", "sample", "sharding", "debug", "optim")
OPEN_GROUPS: tuple[str, ...] = ("mesh",)  # keys the user names (mesh axes): new ones allowed


def lock(config: ConfigDict) -> ConfigDict:
    """``config`` locked (no new keys) and returned, for ``return lock(config)``."""
    config.lock()
    return config


def base_config() -> ConfigDict:
    """Every key the engine reads, with its default (unlocked; fill then lock); ``model``
    and ``data`` hold only their names until :func:`load` fills in their options."""
    groups = {name: dataclasses.asdict(group()) for name, group in GROUPS.items()}
    return ConfigDict({"seed": 0, **groups})


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
    ``get_config('small')``, the named model's and dataset's defaults filled in."""
    path_text, _, arg = spec.partition(":")
    path = experiment_path(path_text)
    module_spec = importlib.util.spec_from_file_location(f"rnnlab_experiment_{path.stem}", path)
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
    return lock(config)


def _unknown(config: ConfigDict, key: str) -> ConfigError:
    near = closest(key, flat_keys(config))
    return ConfigError(key, "no such key" + (f"; did you mean {near!r}?" if near else ""))


def parse_value(text: str, current: Any, key: str = "") -> Any:
    """Parses ``text`` as the type of the field's current value."""
    kind = type(current)
    try:
        if kind is bool:
            low = text.strip().lower()
            if low not in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                raise ValueError(text)
            return low in ("true", "1", "yes", "on")
        if kind in (int, float, str):
            return kind(text)
        if kind in (tuple, list):
            value = ast.literal_eval(text) if text.strip() else ()
            return kind(value if isinstance(value, tuple | list) else (value,))
    except (ValueError, SyntaxError) as e:
        raise ConfigError(key, f"expected a {kind.__name__} like {current!r}, got {text!r}") from e
    try:  # None or another type: best effort, falling back to the raw string
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def override(config: ConfigDict, assignments: Iterable[str]) -> ConfigDict:
    """Applies ``'optim.lr=3e-4'`` style assignments in place; unknown keys raise, except
    new axes of ``mesh`` (``'mesh.fsdp=2'``), whose values are ints. A new ``model.name``
    or ``data.name`` swaps in that model's (dataset's) defaults."""
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip().removeprefix("config.")
        if not sep:
            raise ConfigError(key, f"override must look like key=value, got {item!r}")
        *parents, leaf = key.split(".")
        node = config
        for i, part in enumerate(parents):
            if part not in node or not isinstance(node[part], ConfigDict):
                raise _unknown(config, ".".join(parents[: i + 1]) + "." + leaf)
            node = node[part]
        if leaf not in node and ".".join(parents) in OPEN_GROUPS:
            with node.unlocked():  # a new mesh axis: an int size, appended last
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
        if renames:
            fill_defaults(config, before)
    return config


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separates ``--config.a.b=v`` / ``--config.a.b v`` overrides from other arguments."""
    rest, overrides = [], []
    args = iter(argv)
    for arg in args:
        if not arg.startswith("--config."):
            rest.append(arg)
        elif "=" in arg:
            overrides.append(arg[2:])
        else:
            value = next(args, None)
            if value is None:
                raise ConfigError(arg[len("--config.") :], "override has no value")
            overrides.append(f"{arg[2:]}={value}")
    return rest, overrides


def to_dict(config: ConfigDict) -> dict[str, Any]:
    """Plain JSON-able dict (tuples become lists)."""
    return json.loads(config.to_json())


def from_dict(values: dict[str, Any]) -> ConfigDict:
    """Inverse of :func:`to_dict` on :func:`base_config`'s keys (lists back to tuples)."""
    if not isinstance(values, dict):
        raise ConfigError("config", f"expected a JSON object, got {type(values).__name__}")

    def fill(node: ConfigDict, values: dict[str, Any], prefix: str = ""):
        for key, value in values.items():
            if isinstance(value, dict):
                if not isinstance(node.get(key), ConfigDict):
                    node[key] = ConfigDict()
                fill(node[key], value, f"{prefix}{key}.")
                continue
            try:
                node[key] = tuple(value) if isinstance(value, list) else value
            except TypeError as e:  # a hand-edited config.json with a wrong type
                raise ConfigError(f"{prefix}{key}", str(e)) from e

    config = base_config()
    fill(config, values)
    return lock(config)


def resolved(config: ConfigDict) -> ConfigDict:
    """A copy with defaults that depend on other keys filled in (what the run uses)."""
    out = ConfigDict(config.to_dict())
    fill_defaults(out)
    out.optim.total_steps = out.optim.total_steps or int(out.train.steps)
    out.eval.batch_size = out.eval.batch_size or int(out.train.batch_size)
    return lock(out)


# -- the named model's and dataset's options -----------------------------------------------


def group_options(config: ConfigDict, group: str) -> dict[str, Any] | None:
    """``{key: Option(default, help)}`` of the model (``group='model'``) or dataset
    (``'data'``) the config names; None for a dataset that ``rnnlab.data`` does not
    register (a test's own data source checks its options itself)."""
    name = config[group].get("name")
    if group == "data":
        return data.options(name) if name in data.names() else None
    return table(_model_class(name))


def _model_class(name: str) -> type:
    try:
        return models.config_class(name)
    except ValueError as e:
        raise ConfigError("model.name", str(e)) from e


def _check_names(config: ConfigDict, group: str, options: dict[str, Any] | None) -> None:
    for key in config[group].keys() if options is not None else ():
        if key != "name" and key not in options:
            raise unknown_option(f"{group}.{key}", options, f"{group} {config[group].name!r}")


def fill_defaults(config: ConfigDict, previous: dict[str, Any] | None = None) -> None:
    """Completes the ``model`` and ``data`` groups in place with the defaults of the named
    model and dataset, so that every key can be overridden and is recorded in
    ``config.json``. ``previous``: the options before a ``name`` changed: keys the new one
    does not take are dropped, keys still at the old defaults take the new ones.

    Raises:
      ConfigError: a key the model or dataset does not take, naming the closest one.
    """
    for group in ("model", "data"):
        options, node = group_options(config, group), config[group]
        old = (previous or {}).get(group) or {}
        with node.unlocked():
            for key in [k for k in node.keys() if k != "name" and k in old]:
                if options is not None and key not in options:
                    del node[key]
                elif same_value(node[key], old[key].default):
                    if options is None:
                        del node[key]
                    else:
                        node[key] = options[key].default
            _check_names(config, group, options)
            for key, option in (options or {}).items():
                if key not in node:
                    node[key] = option.default


def same_value(value: Any, default: Any) -> bool:
    """Whether a config value is the option's default (lists as tuples, types equal)."""
    value = value.to_dict() if isinstance(value, ConfigDict) else value
    value = tuple(value) if isinstance(value, list) else value
    return type(value) is type(default) and value == default


# -- help ----------------------------------------------------------------------------------


def help_strings(config: ConfigDict | None = None) -> dict[str, str]:
    """``{dotted key: one-line help}`` of every key of :func:`base_config` and, given a
    config, of the options of its model and dataset."""
    out = {"seed": SEED_HELP}
    for name, group in GROUPS.items():
        out.update(_helps(group, f"{name}."))
    for group in ("model", "data") if config is not None else ():
        for key, option in (group_options(config, group) or {}).items():
            out.setdefault(f"{group}.{key}", option.help)
    return out


def _helps(group: type, prefix: str) -> dict[str, str]:
    """``{dotted key: help}`` of a group's fields, nested groups' fields likewise."""
    out = {}
    for f in dataclasses.fields(group):
        nested = dataclasses.is_dataclass(f.default)
        key = prefix + f.name
        out.update(_helps(type(f.default), f"{key}.") if nested else {key: f.metadata["help"]})
    return out


def _flat(config: ConfigDict, prefix: str = "") -> dict[str, Any]:
    """``{dotted key: value}`` of every leaf."""
    out = {}
    for key, value in config.items():
        is_group = isinstance(value, ConfigDict)
        out.update(_flat(value, f"{prefix}{key}.") if is_group else {prefix + key: value})
    return out


def flat_keys(config: ConfigDict) -> list[str]:
    """Every leaf key as a dotted path."""
    return list(_flat(config))


def describe(config: ConfigDict) -> str:
    """Every key of ``config`` with its value and help, one per line (``--help-config``)."""
    helps = help_strings(config)
    lines = (f"{k} = {v!r}  # {helps.get(k, '')}".rstrip(" #") for k, v in _flat(config).items())
    return "\n".join(lines)


# -- conversion and validation -------------------------------------------------------------


def convert(config: ConfigDict) -> RunOptions:
    """The config's typed groups (:class:`~rnnlab.train.options.RunOptions`), converted
    once; a bad key or value raises :class:`ConfigError` naming it (an unknown key with the
    closest one; values: :func:`rnnlab.options.build`)."""
    for key, value in config.items():  # top-level keys: the seed and groups
        if key != "seed" and not isinstance(value, ConfigDict):
            raise _unknown(base_config(), key)
    problem = type_problem(0, config.seed)
    if problem is not None:
        raise ConfigError("seed", problem)

    def unknown(key, fields):
        return _unknown(base_config(), key)

    engine = {g: build(GROUPS[g], config[g].to_dict(), f"{g}.", unknown) for g in ENGINE_GROUPS}
    model, dataset = config.model.to_dict(), config.data.to_dict()
    name = model.pop("name")
    model = build(_model_class(name), model, "model.", f"model {name!r}")
    registered = dataset.get("name") in data.names()  # else a test's own source reads it
    return RunOptions(
        seed=config.seed,
        data=data.resolve(dataset, "data.") if registered else types.MappingProxyType(dataset),
        model_name=name,
        model=model,
        mesh=types.MappingProxyType(config.mesh.to_dict()),
        **engine,
    )


def _check_batch(options: RunOptions, context: dict[str, Any]) -> None:
    dp, procs = context.get("data_parallel", 1), context.get("process_count", 1)
    sizes = {"train.batch_size": options.train.batch_size}
    sizes["eval.batch_size"] = options.eval.batch_size or options.train.batch_size
    for key, size in sizes.items():
        if size % dp:
            raise ConfigError(
                key,
                f"global batch {size} is not divisible by the {dp} devices of the data axes "
                "of the mesh",
            )
        if size % procs:
            raise ConfigError(key, f"global batch {size} is not divisible by {procs} processes")


def _check_optim(options: RunOptions) -> None:
    kwargs = dataclasses.asdict(options.optim)
    kwargs["total_steps"] = kwargs["total_steps"] or options.train.steps
    try:  # the optimiser's one validation, without building the chain
        optim.check(**kwargs)
    except ValueError as e:
        raise ConfigError(f"optim.{getattr(e, 'argument', '?')}", str(e)) from e


def _check_faults(options: RunOptions) -> None:
    """The settings of the fault guards that depend on each other."""
    t = options.train
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
    for i, step in enumerate(options.debug.nan_at_steps):
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ConfigError("debug.nan_at_steps", f"entry {i} must be a step >= 1, got {step!r}")


def validate(config: ConfigDict, context: dict[str, Any] | None = None) -> RunOptions:
    """Every check of a run config, one fixed list (whichever modules were imported); the
    first failure raises :class:`ConfigError`. Returns the config's typed groups
    (:func:`convert`). ``context`` holds what the run learnt: ``num_devices``,
    ``data_parallel``, ``process_count``."""
    if not config.data.get("name"):
        raise ConfigError("data.name", "no dataset named (set --config.data.name=...)")
    options = convert(config)
    _check_batch(options, dict(context or {}))
    _check_optim(options)
    _check_faults(options)
    sharding.check(config, context)
    return options


def typed(config: ConfigDict | RunOptions) -> RunOptions:
    """``config``'s typed groups (:func:`convert`); typed groups pass through, so library
    callers may hand the engine either."""
    return config if isinstance(config, RunOptions) else convert(config)
