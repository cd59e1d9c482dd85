"""Task models built from rnnlab's cells and layers, looked up by name.

Every model follows one contract, so the training engine, evaluators and diagnostics treat
them alike::

    outputs, aux = model(batch, *, train: bool, rngs: nnx.Rngs | None = None, carry=None)

- ``batch`` is the dict a data iterator yields (``inputs``, ``targets``/``labels``,
  ``weights``, ``seq_lengths``, ``resets``, ...); a model reads the keys it needs.
- Training or evaluation is NNX's mode: ``model.train()`` / ``model.eval()`` switch every
  dropout, zoneout and batch-normalised cell at once (the engine does so for its training
  and evaluation steps). ``train=True/False`` sets the mode first, as those calls would;
  ``None`` (default) keeps it. ``rngs`` supplies the randomness (models keep no random
  state of their own, so a step's randomness is a pure function of the step's key).
- ``carry``: the recurrent state from the previous batch for stateful models (truncated
  backpropagation through time); ``None`` starts from zeros.
- ``outputs``: what the task's loss reads (logits, predictions).
- ``aux``: a dict of named intermediates. Reserved keys: ``"carry"`` (the state to feed to
  the next batch; stateful models only), ``"losses"`` (a dict of extra scalar loss terms,
  already weighted, that the engine adds to the task loss and logs under their names, e.g.
  activation regularisation).

Stateful models also define ``init_carry(batch_size) -> carry``.

Models are registered with :func:`register` and built with :func:`build`, which receives
the dataset description (``rnnlab.data.info``: ``vocab_size``, ``num_classes``,
``input_features``, ...) so that configs only give what the data cannot::

    model = rnnlab.models.build("language_model", info, nnx.Rngs(0), hidden_features=256)
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "Model",
    "Option",
    "build",
    "model_names",
    "options",
    "register",
    "resolve_dtype",
    "set_mode",
]

ModelFactory = Callable[..., nnx.Module]

_MODELS: dict[str, ModelFactory] = {}

_DTYPES = {
    "float32": jnp.float32,
    "bfloat16": jnp.bfloat16,
    "float16": jnp.float16,
}


def resolve_dtype(dtype: Any, argument: str = "dtype"):
    """``None``/``"float32"``/``"bfloat16"``/a numpy dtype -> a jnp dtype or ``None``."""
    if dtype is None or dtype == "":
        return None
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"{argument} must be one of {sorted(_DTYPES)}, got {dtype!r}")
        return _DTYPES[dtype]
    return jnp.dtype(dtype)


def set_mode(model: nnx.Module, train: bool | None) -> None:
    """``model.train()`` for ``True``, ``model.eval()`` for ``False``, nothing for ``None``.

    A model already in the asked mode is left untouched, so that calling it with ``train=``
    inside a transform that closes over it (where NNX forbids mutation) keeps working.
    """
    if train is None:
        return
    for _, module in nnx.iter_modules(model):
        for name in ("deterministic", "use_running_average"):
            if getattr(module, name, not train) is train:
                if train:
                    model.train()
                else:
                    model.eval()
                return


class Model(nnx.Module):
    """Base of the task models: the contract's call (see the module docstring).

    A model implements :meth:`forward`; calling it sets the NNX mode from ``train`` first, so
    a model reads training or evaluation from its modules (``self.deterministic`` and the
    like) rather than from an argument.
    """

    def __call__(
        self,
        batch: Mapping[str, jax.Array],
        *,
        train: bool | None = None,
        rngs: nnx.Rngs | None = None,
        carry: Any = None,
    ) -> tuple[jax.Array, dict[str, Any]]:
        """``(outputs, aux)`` for ``batch``; ``train`` sets the NNX mode first (as
        ``.train()``/``.eval()``), ``None`` keeps it. What ``outputs`` and ``aux`` hold is
        the model's :meth:`forward`."""
        set_mode(self, train)
        return self.forward(batch, rngs=rngs, carry=carry)

    def forward(
        self, batch: Mapping[str, jax.Array], *, rngs: nnx.Rngs | None, carry: Any
    ) -> tuple[jax.Array, dict[str, Any]]:
        """The model's computation in the mode already set; see :meth:`__call__`."""
        raise NotImplementedError


def register(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: registers ``factory(info, *, rngs, **kwargs) -> model`` under ``name``."""

    def deco(factory: ModelFactory) -> ModelFactory:
        if name in _MODELS and _MODELS[name] is not factory:
            raise ValueError(f"a model named {name!r} is already registered")
        _MODELS[name] = factory
        return factory

    return deco


def model_names() -> list[str]:
    """Names accepted by :func:`build`."""
    return sorted(_MODELS)


def build(name: str, info: Mapping[str, Any], rngs: nnx.Rngs, **kwargs) -> nnx.Module:
    """Builds the model registered as ``name`` for the dataset described by ``info``.

    Raises:
      ValueError: unknown ``name`` (the message lists the registered ones).
    """
    if name not in _MODELS:
        raise ValueError(f"model name must be one of {model_names()}, got {name!r}")
    return _MODELS[name](info, rngs=rngs, **kwargs)


# -- the model group of a config, derived from the constructors ---------------------------


@dataclasses.dataclass(frozen=True)
class Option:
    """One keyword argument a config may set: its default (JSON-able) and a one-line help."""

    default: Any
    help: str


# Arguments a config never sets: randomness comes from the engine, the rest from the data.
_NOT_OPTIONS = frozenset({"self", "rngs"})


def _jsonable(value: Any) -> Any:
    """A default as a config holds it: dtypes (``jnp.float32``) by name, the rest as is."""
    if value is None or isinstance(value, bool | int | float | str | tuple | list | dict):
        return value
    try:
        return np.dtype(value).name
    except TypeError:
        return repr(value)


def _arg_help(cls: type) -> dict[str, str]:
    """``{argument: first line of its help}`` from the ``Args:`` sections of ``cls``'s and
    its bases' docstrings (``a, b: text`` documents both)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for doc in (klass.__doc__, getattr(klass.__init__, "__doc__", None)):
            text = inspect.cleandoc(doc or "")
            section = re.search(r"^Args:\n((?:[ \t]+.*\n?|\n)*)", text, re.M)
            for line in (section.group(1) if section else "").splitlines():
                entry = re.match(r"^ {2}(\*{0,2}[\w, ]+):\s*(.*)$", line)
                if entry:
                    for name in entry.group(1).split(","):
                        out[name.strip().lstrip("*")] = entry.group(2).strip()
    return out


def _keyword_defaults(fn: Callable, out: dict[str, Any]) -> bool:
    """Adds ``fn``'s keyword arguments that have defaults to ``out``; True if it also takes
    ``**kwargs`` (whose options are then those of the next constructor in line)."""
    more = False
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            more = True
        elif p.name not in _NOT_OPTIONS and p.default is not p.empty and p.kind != p.VAR_POSITIONAL:
            out.setdefault(p.name, p.default)
    return more


def options(name: str) -> dict[str, Option]:
    """The options of model ``name``: every keyword argument with a default of the class its
    factory returns (the factory's return annotation), read from the signatures so that the
    constructor stays the one place they are written. A constructor taking ``**kwargs``
    adds those of its base class.
    Arguments without a default come from the dataset (``vocab_size``, ...), not a config.

    Raises:
      ValueError: unknown ``name``.
    """
    if name not in _MODELS:
        raise ValueError(f"model name must be one of {model_names()}, got {name!r}")
    factory = _MODELS[name]
    cls = typing.get_type_hints(factory).get("return")
    defaults: dict[str, Any] = {}
    more = _keyword_defaults(factory, defaults)
    helps: dict[str, str] = {}
    if isinstance(cls, type):
        helps = _arg_help(cls)
        for klass in cls.__mro__:
            if "__init__" in vars(klass) and more:
                more = _keyword_defaults(klass.__init__, defaults)
    return {
        key: Option(_jsonable(value), helps.get(key) or f"{cls.__name__} argument {key}")
        for key, value in defaults.items()
    }


# Registration happens on import of the modules below; keep them at the end.
from rnnlab.models import (  # noqa: E402, F401
    classifier,
    ctc,
    forecaster,
    language_model,
    seq2seq,
    video,
)
from rnnlab.models.classifier import SequenceClassifier  # noqa: E402
from rnnlab.models.ctc import SpeechRecognizer  # noqa: E402
from rnnlab.models.forecaster import Forecaster  # noqa: E402
from rnnlab.models.language_model import LanguageModel, generate  # noqa: E402
from rnnlab.models.seq2seq import Translator  # noqa: E402
from rnnlab.models.video import VideoPredictor  # noqa: E402

__all__ += [
    "Forecaster",
    "LanguageModel",
    "SequenceClassifier",
    "SpeechRecognizer",
    "Translator",
    "VideoPredictor",
    "generate",
]
