"""Typed option groups: frozen dataclasses whose fields carry a default and a one-line help.

Every group of a run config (the engine's groups in :mod:`rnnlab.train.options`, each
model's ``<Model>Config`` next to the model, each dataset's group next to the dataset,
``rnnlab.optim.Options``) is written once this way, as recurrentgemma's ``GriffinConfig``
is::

    @dataclasses.dataclass(frozen=True)
    class Sample:
        length: int = opt(0, "characters/tokens sampled after training (0: none)")

The config machinery (:mod:`rnnlab.train.config`) reads defaults, help and checks from the
fields, so nothing is written twice.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple


class Option(NamedTuple):
    """One key of a group as :func:`table` lists it: its default and a one-line help."""

    default: Any
    help: str


class Check(NamedTuple):
    """A value check of one key: ``ok(value)``, else "expected <expected>, got <value>"."""

    ok: Callable[[Any], bool]
    expected: str


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


POSITIVE = Check(lambda v: _int(v) and v > 0, "a positive integer")
COUNT = Check(lambda v: _int(v) and v >= 0, "an integer >= 0")
# (train, validation, test) shares of a dataset cut in three.
SHARES = Check(
    lambda v: (
        len(v) == 3
        and all(type_problem(0.0, x) is None and x > 0 for x in v)
        and abs(sum(v) - 1) <= 1e-6
    ),
    "three positive fractions (train, validation, test) summing to 1",
)


class ConfigError(ValueError):
    """A bad config value; ``key`` is its dotted path (``'optim.lr'``)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"config key {key!r}: {message}")
        self.key = key


def one_of(*choices: Any, expected: str = "") -> Check:
    """The value is one of ``choices``."""
    return Check(lambda v: v in choices, expected or f"one of {list(choices)}")


def opt(default: Any, help: str, check: Check | None = None) -> Any:
    """A dataclass field with ``default``, its one-line ``help`` and an optional value
    ``check`` (in the metadata)."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check})


def unknown_option(key: str, fields: Iterable[str], owner: str) -> ConfigError:
    """The error of a ``key`` (dotted) that ``owner``'s group lacks, naming the closest."""
    head, _, leaf = key.rpartition(".")
    near = closest(leaf, fields)
    hint = f"; did you mean '{head}{'.' if head else ''}{near}'?" if near else ""
    return ConfigError(key, f"no such option of {owner}{hint}")


def build(group: type, values: Mapping[str, Any], prefix: str = "", owner: Any = "") -> Any:
    """``values`` as the dataclass ``group``, missing keys at their default, nested groups
    likewise, lists as tuples: the one place a group's values are checked. A value of the
    wrong type (the default's, unless its default is None, or the field is typed ``Any``
    and has a check, which then says what it takes)
    or one its field's check refuses raises :class:`ConfigError` naming ``prefix + key``;
    so does a key the group lacks (:func:`unknown_option`; ``owner`` names the group, or
    is a function of the key and the field names that makes the error)."""
    fields = {f.name: f for f in dataclasses.fields(group)}
    for key in values:
        if key not in fields:
            unknown = owner if callable(owner) else functools.partial(unknown_option, owner=owner)
            raise unknown(prefix + key, fields)
    out = {}
    for name, f in fields.items():
        key, value, check = prefix + name, values.get(name, f.default), f.metadata.get("check")
        if dataclasses.is_dataclass(f.default) and isinstance(value, Mapping):
            out[name] = build(type(f.default), value, f"{key}.", owner)
            continue
        loose = f.default is None or (f.type in ("Any", Any) and check is not None)
        problem = None if loose else type_problem(f.default, value)
        if problem is None and check is not None and value is not None and not check.ok(value):
            problem = f"expected {check.expected}, got {value!r}"
        if problem is not None:
            raise ConfigError(key, problem)
        out[name] = tuple(value) if isinstance(value, list) else value
    return group(**out)


def table(group: type) -> dict[str, Option]:
    """``{field: Option(default, help)}`` of a group dataclass, in field order."""
    return {f.name: Option(f.default, f.metadata["help"]) for f in dataclasses.fields(group)}


class Group(Mapping):
    """Base of a dataset's options group: the frozen dataclass also reads as a mapping
    (``group["seq_len"]``, ``.get``, ``.items()``), as the dataset readers take it."""

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)


def closest(key: str, choices: Iterable[str]) -> str | None:
    """The choice nearest ``key`` in spelling (difflib, ratio >= 0.6), or None."""
    close = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def type_problem(default: Any, value: Any) -> str | None:
    """Why ``value`` does not fit a key whose default is ``default`` (its type decides: a
    bool is not an int, an int is a float, NaN and infinities are never settings, a list
    is a tuple), or None when it fits."""
    kind = type(default)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = _int(value)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    elif isinstance(default, tuple | list):
        ok, kind = isinstance(value, tuple | list), tuple
    else:
        ok = isinstance(value, kind)
    if ok:
        return None
    return (
        f"expected type {kind.__name__} (default {default!r}), got {value!r} of type "
        f"{type(value).__name__}"
    )
