"""The defaults and help of every config key, read from the groups that declare them.

The engine's groups are the dataclasses of :mod:`rnnlab.train.options`; the optimiser's are
the fields of :class:`rnnlab.optim.Options`; the ``model`` and ``data`` groups are completed
by :func:`fill_defaults` from the named model's config class (:func:`rnnlab.models.options`)
and the named dataset's declared options (:func:`rnnlab.data.options`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from rnnlab import data, models, optim
from rnnlab.options import Option, closest, table
from rnnlab.train.options import GROUPS, SEED_HELP

ConfigDict = ml_collections.ConfigDict


class ConfigError(ValueError):
    """A bad config value; ``key`` is its dotted path (``'optim.lr'``)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"config key {key!r}: {message}")
        self.key = key


Key = Option  # a leaf of base_config: its default and a one-line help


def _nested(group: type) -> dict[str, Any]:
    """``{key: Option}`` of a group dataclass, a nested group as its own dict."""
    return {
        key: _nested(type(o.default)) if dataclasses.is_dataclass(o.default) else o
        for key, o in table(group).items()
    }


def _spec() -> dict[str, Any]:
    """The engine's keys (:mod:`rnnlab.train.options`) and the optimiser's
    (:class:`rnnlab.optim.Options`); the options of the named model and dataset come from
    their own modules, see :func:`fill_defaults`."""
    spec: dict[str, Any] = {"seed": Option(0, SEED_HELP)}
    for name, group in GROUPS.items():
        spec[name] = _nested(group)
        if name == "model":
            spec["optim"] = _nested(optim.Options)
    return spec


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
    near = closest(key, options)
    hint = f"; did you mean '{group}.{near}'?" if near else ""
    return ConfigError(f"{group}.{key}", f"no such option of {owner}{hint}")


def fill_defaults(config: ConfigDict, previous: dict[str, dict[str, Any] | None] | None = None):
    """Completes the ``model`` and ``data`` groups in place with the defaults of the named
    model (its config class) and dataset (its declared options), so that
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
