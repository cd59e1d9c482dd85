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
import difflib
import importlib.util
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from rnnlab import optim
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
    close = difflib.get_close_matches(key, flat_keys(config), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
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

Check = Callable[[ConfigDict, dict[str, Any]], None]
_CHECKS: list[Check] = []


def register_check(check: Check) -> Check:
    """Adds ``check(config, context)`` to :func:`validate`; it raises :class:`ConfigError`.

    ``context`` holds what validation learnt: ``num_devices``, ``data_parallel``,
    ``process_count``, ``info`` (dataset description, once known).
    """
    _CHECKS.append(check)
    return check


def _positive_int(config: ConfigDict, key: str, *, allow_zero: bool = False) -> None:
    node = config
    for part in key.split("."):
        node = node[part]
    ok = isinstance(node, int) and not isinstance(node, bool) and (node > 0 or allow_zero)
    if not ok or node < 0:
        expected = "an integer >= 0" if allow_zero else "a positive integer"
        raise ConfigError(key, f"expected {expected}, got {node!r}")


# Groups the engine reads all of; other top-level groups (a tool's own, e.g. diagnostics)
# and the keys of data, model and mesh belong to their readers.
ENGINE_GROUPS: tuple[str, ...] = ("train", "optim", "eval", "sample", "sharding", "debug")


def _type_error(key: str, default: Any, value: Any) -> ConfigError | None:
    """The error for ``value`` at ``key`` whose default is ``default``, or None if it fits."""
    kind = type(default)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):  # NaN or an infinity is never a meaningful setting
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
    elif isinstance(default, tuple | list):
        ok, kind = isinstance(value, tuple | list), tuple
    else:
        ok = isinstance(value, kind)
    if ok:
        return None
    return ConfigError(
        key,
        f"expected type {kind.__name__} (default {default!r}), got {value!r} of type "
        f"{type(value).__name__}",
    )


@register_check
def _check_keys_and_types(config: ConfigDict, context: dict[str, Any]) -> None:
    """Unknown keys in the engine's groups and values of the wrong type name their key."""
    del context
    base = base_config()
    known = set(flat_keys(base))
    for key in flat_keys(config):
        group = key.split(".")[0]
        if "." not in key or group in ENGINE_GROUPS:
            if key not in known:
                raise _unknown(base, key)
            node_b, node_c = base, config
            for part in key.split("."):
                node_b, node_c = node_b[part], node_c[part]
            error = _type_error(key, node_b, node_c)
            if error is not None:
                raise error


def check_model(config: ConfigDict) -> None:
    """The model group against the named model's options (see :func:`_check_groups`)."""
    _check_groups(config, ("model",))


@register_check
def _check_model_and_data(config: ConfigDict, context: dict[str, Any]) -> None:
    del context
    _check_groups(config, ("model", "data"))


def _check_groups(config: ConfigDict, groups: Sequence[str]) -> None:
    """Keys the named model or dataset does not take, and model values whose type differs
    from the constructor's default, name their key."""
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
                error = _type_error(f"model.{key}", default, value)
                if error is not None:
                    raise error


@register_check
def _check_train(config: ConfigDict, context: dict[str, Any]) -> None:
    for key in ("train.steps", "train.batch_size", "train.log_every", "train.keep_checkpoints"):
        _positive_int(config, key)
    for key in ("train.eval_every", "train.checkpoint_every", "train.max_nonfinite"):
        _positive_int(config, key, allow_zero=True)
    for key in ("eval.batch_size", "eval.max_batches", "sample.length", "sample.top_k"):
        _positive_int(config, key, allow_zero=True)
    es = config.train.early_stopping
    if es.mode not in ("", "min", "max"):
        raise ConfigError("train.early_stopping.mode", f"expected 'min' or 'max', got {es.mode!r}")
    _positive_int(config, "train.early_stopping.patience", allow_zero=True)
    if es.min_delta < 0:
        raise ConfigError("train.early_stopping.min_delta", f"expected >= 0, got {es.min_delta}")


@register_check
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


@register_check
def _check_optim(config: ConfigDict, context: dict[str, Any]) -> None:
    kwargs = dict(config.optim.to_dict())
    if kwargs.get("total_steps", 0) == 0:
        kwargs["total_steps"] = config.train.steps
    try:  # the optimiser's one validation, without building the chain
        optim.check(**kwargs)
    except TypeError as e:
        raise ConfigError("optim", str(e)) from e
    except ValueError as e:
        raise ConfigError(f"optim.{getattr(e, 'argument', '?')}", str(e)) from e


@register_check
def _check_sample(config: ConfigDict, context: dict[str, Any]) -> None:
    s = config.sample
    if s.temperature < 0:
        raise ConfigError("sample.temperature", f"expected >= 0, got {s.temperature}")
    if not 0 < s.top_p <= 1:
        raise ConfigError("sample.top_p", f"expected a number in (0, 1], got {s.top_p}")


@register_check
def _check_faults(config: ConfigDict, context: dict[str, Any]) -> None:
    t = config.train
    if t.nonfinite_action not in ("stop", "restore"):
        raise ConfigError(
            "train.nonfinite_action", f"expected 'stop' or 'restore', got {t.nonfinite_action!r}"
        )
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
    _positive_int(config, "train.nonfinite_max_restores", allow_zero=True)
    if not t.preemption_grace_s >= 0:
        raise ConfigError(
            "train.preemption_grace_s", f"expected seconds >= 0, got {t.preemption_grace_s!r}"
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


def validate(config: ConfigDict, context: dict[str, Any] | None = None) -> None:
    """Runs every registered check; the first failure raises :class:`ConfigError`."""
    context = dict(context or {})
    if not config.data.get("name"):
        raise ConfigError("data.name", "no dataset named (set --config.data.name=...)")
    for check in _CHECKS:
        check(config, context)
