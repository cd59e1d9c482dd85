"""The options of the optimizer chain: one frozen dataclass, their defaults, help and checks.

:class:`Options` is the one place every option of :func:`rnnlab.optim.build` is written, with
its default and a one-line help; :func:`check` turns keyword arguments into a validated
:class:`Options` (the engine's config check calls it without building the chain).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from typing import Any

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "nt_asgd")
SCHEDULES = ("constant", "cosine", "step", "plateau")


def argument_error(argument: str, expected: str, got: Any) -> ValueError:
    """A ValueError naming the argument; ``.argument`` lets config layers name their key."""
    err = ValueError(f"optim.make: argument {argument!r} expected {expected}, got {got!r}")
    err.argument = argument  # type: ignore[attr-defined]
    return err


def _opt(default: Any, text: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": text})


@dataclasses.dataclass(frozen=True)
class Options:
    """Every option of :func:`build`, with its default and a one-line help: the one place
    they are written (``rnnlab.train.config.base_config`` reads its ``optim`` group here).

    See :func:`build` for what each does and the papers behind them.
    """

    optimizer: str = _opt("adam", f"one of {OPTIMIZERS}")
    lr: float = _opt(1e-3, "peak learning rate (> 0)")
    momentum: float = _opt(0.9, "momentum of sgd and rmsprop, in [0, 1)")
    nesterov: bool = _opt(False, "Nesterov momentum for sgd and rmsprop")
    b1: float = _opt(0.9, "Adam's first-moment decay, in [0, 1)")
    b2: float = _opt(0.999, "Adam's second-moment decay, in [0, 1)")
    eps: float = _opt(1e-8, "Adam/RMSProp denominator offset (> 0 for adaptive optimizers)")
    decay: float = _opt(0.9, "RMSProp's squared-gradient decay, in [0, 1)")
    weight_decay: float = _opt(0.0, "decoupled decay for adamw, an L2 penalty otherwise (0: off)")
    clip_norm: float = _opt(0.0, "clip the gradient to this global norm (0: off)")
    clip_value: float = _opt(0.0, "clip every gradient element to [-c, c] (0: off)")
    clip_adaptive: float = _opt(0.0, "adaptive unit-wise clipping ratio (0: off)")
    schedule: str = _opt("constant", f"learning-rate schedule, one of {SCHEDULES}")
    warmup_steps: int = _opt(0, "linear warm-up steps before the schedule")
    total_steps: int = _opt(0, "length of the cosine schedule (0 in a run config: train.steps)")
    final_lr_fraction: float = _opt(0.0, "cosine: final learning rate as a fraction of lr")
    decay_every: int = _opt(0, "step schedule: steps between decays")
    decay_factor: float = _opt(0.1, "step schedule: factor applied at each decay, in (0, 1]")
    plateau_factor: float = _opt(0.5, "plateau: factor applied at each reduction, in (0, 1)")
    plateau_patience: int = _opt(10, "plateau: observations without improvement to reduce")
    plateau_accumulation: int = _opt(50, "plateau: updates averaged into one observation")
    plateau_rtol: float = _opt(1e-4, "plateau: relative improvement that counts")
    plateau_cooldown: int = _opt(0, "plateau: observations to wait after a reduction")
    plateau_min_scale: float = _opt(0.0, "plateau: smallest scale of the learning rate")
    accumulate_steps: int = _opt(1, "average gradients over this many steps per update")
    freeze: tuple[str, ...] = _opt((), "regexes on parameter paths that get no updates")
    nonmono: int = _opt(5, "nt_asgd: validations worse than the best before averaging")
    ema_decay: float = _opt(0.0, "> 0: evaluate on an EMA of the weights with this decay")


def defaults() -> dict[str, Any]:
    """``{option: default}`` for every option of :func:`build`."""
    return {f.name: f.default for f in dataclasses.fields(Options)}


def help_strings() -> dict[str, str]:
    """``{option: one-line help}`` for every option of :func:`build`."""
    return {f.name: f.metadata["help"] for f in dataclasses.fields(Options)}


def check(**kwargs: Any) -> Options:
    """The :class:`Options` of ``kwargs`` (defaults for the rest), validated.

    Raises:
      TypeError: an unknown option (the message names the closest one).
      ValueError: an impossible value; its ``.argument`` names the option.
    """
    known = defaults()
    for name in kwargs:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"optim: unknown option {name!r}{hint}")
    if "freeze" in kwargs:
        kwargs = {**kwargs, "freeze": tuple(kwargs["freeze"])}
    options = Options(**kwargs)
    _check(dataclasses.asdict(options))
    return options


def _check(kw: dict[str, Any]) -> None:
    """Raises a ValueError naming the first argument with an impossible value."""

    def finite(x):
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

    if kw["optimizer"] not in OPTIMIZERS:
        raise argument_error("optimizer", f"one of {OPTIMIZERS}", kw["optimizer"])
    if kw["schedule"] not in SCHEDULES:
        raise argument_error("schedule", f"one of {SCHEDULES}", kw["schedule"])
    if not finite(kw["lr"]) or kw["lr"] <= 0:
        raise argument_error("lr", "a positive finite number", kw["lr"])
    for name in ("momentum", "b1", "b2", "decay"):
        if not finite(kw[name]) or not 0 <= kw[name] < 1:
            raise argument_error(name, "a number in [0, 1)", kw[name])
    for name in ("eps", "weight_decay", "clip_norm", "clip_value", "clip_adaptive"):
        if not finite(kw[name]) or kw[name] < 0:
            raise argument_error(name, "a finite number >= 0 (0 switches it off)", kw[name])
    if kw["eps"] == 0 and kw["optimizer"] not in ("sgd", "nt_asgd"):
        raise argument_error("eps", "a positive number for adaptive optimizers", kw["eps"])
    for name in ("warmup_steps", "total_steps", "decay_every"):
        if not isinstance(kw[name], int) or kw[name] < 0:
            raise argument_error(name, "an integer >= 0", kw[name])
    if not isinstance(kw["accumulate_steps"], int) or kw["accumulate_steps"] < 1:
        raise argument_error("accumulate_steps", "an integer >= 1", kw["accumulate_steps"])
    if not 0 <= kw["final_lr_fraction"] <= 1:
        raise argument_error("final_lr_fraction", "a number in [0, 1]", kw["final_lr_fraction"])
    if kw["schedule"] == "cosine" and kw["total_steps"] <= kw["warmup_steps"]:
        raise argument_error(
            "total_steps",
            f"more than warmup_steps={kw['warmup_steps']} for the cosine schedule",
            kw["total_steps"],
        )
    if kw["schedule"] == "step" and kw["decay_every"] <= 0:
        raise argument_error(
            "decay_every", "a positive integer for the step schedule", kw["decay_every"]
        )
    if not 0 < kw["decay_factor"] <= 1:
        raise argument_error("decay_factor", "a number in (0, 1]", kw["decay_factor"])
    if not 0 < kw["plateau_factor"] < 1:
        raise argument_error("plateau_factor", "a number in (0, 1)", kw["plateau_factor"])
    for name in ("plateau_patience", "plateau_accumulation"):
        if not isinstance(kw[name], int) or kw[name] < 1:
            raise argument_error(name, "an integer >= 1", kw[name])
    nonmono = kw["nonmono"]
    if isinstance(nonmono, bool) or not isinstance(nonmono, int) or nonmono < 1:
        raise argument_error("nonmono", "an integer >= 1", nonmono)
    if not finite(kw["ema_decay"]) or not 0 <= kw["ema_decay"] < 1:
        raise argument_error("ema_decay", "a number in [0, 1) (0 switches it off)", kw["ema_decay"])
    if kw["ema_decay"] > 0 and kw["optimizer"] == "nt_asgd":
        raise argument_error(
            "ema_decay", "0 with nt_asgd, which keeps its own average", kw["ema_decay"]
        )
    if kw["optimizer"] == "adamw" and kw["weight_decay"] <= 0:
        raise argument_error(
            "weight_decay", "a positive number for adamw (or use adam)", kw["weight_decay"]
        )
    for pattern in kw["freeze"]:
        try:
            re.compile(pattern)
        except re.error as e:
            raise argument_error("freeze", "regular expressions", pattern) from e
