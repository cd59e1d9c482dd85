"""``--logger`` and ``--callback`` of ``rnnlab train``: user code named ``module:name``."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from rnnlab.train import config as cfg_lib


def _load_object(spec: str, option: str, form: str) -> Any:
    """The object ``"package.module:name"`` names, for ``--option`` (errors name it)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise cfg_lib.ConfigError(option, f"expected --{option} {form}, got {spec!r}")
    # The current folder is importable, as for `python -m`: the `rnnlab` script's own
    # sys.path holds only its installation.
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise cfg_lib.ConfigError(option, f"cannot load {spec!r}: {e}") from e


def load_logger(spec: str) -> Callable[[int, str, dict[str, float]], None]:
    """``"package.module:name"`` -> the callable ``logger(step, split, metrics)`` there."""
    obj = _load_object(spec, "logger", "package.module:function")
    if not callable(obj):
        raise cfg_lib.ConfigError("logger", f"{spec!r} is not callable")
    return obj


def load_callback(spec: str):
    """``"package.module:Name"`` -> a :class:`rnnlab.train.Callback`: the object there, or
    an instance of the class there (made without arguments)."""
    from rnnlab.train.callbacks import Callback

    obj = _load_object(spec, "callback", "package.module:Name")
    if isinstance(obj, type) and issubclass(obj, Callback):
        obj = obj()
    if not isinstance(obj, Callback):
        raise cfg_lib.ConfigError(
            "callback", f"{spec!r} is not an rnnlab.train.Callback (class or instance)"
        )
    return obj
