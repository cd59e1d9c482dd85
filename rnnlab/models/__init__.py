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
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.options import Option, closest, table

__all__ = [
    "Model",
    "Option",
    "build",
    "config_class",
    "model_names",
    "options",
    "register",
    "resolve_dtype",
    "set_mode",
]

_MODELS: dict[str, type] = {}  # name -> the model's <Model>Config

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


def register(*names: str) -> Callable[[type], type]:
    """Class decorator: registers a model's options dataclass (``<Model>Config`` beside the
    model, :mod:`rnnlab.options`) under ``names``. Its ``build(info, rngs)`` makes the model
    from every field, so a run's config records exactly what it built."""

    def deco(config: type) -> type:
        for name in names:
            if _MODELS.get(name, config) is not config:
                raise ValueError(f"a model named {name!r} is already registered")
            _MODELS[name] = config
        return config

    return deco


def model_names() -> list[str]:
    """Names accepted by :func:`build`."""
    return sorted(_MODELS)


def config_class(name: str) -> type:
    """The options dataclass of model ``name``.

    Raises:
      ValueError: unknown ``name`` (the message lists the registered ones).
    """
    if name not in _MODELS:
        raise ValueError(f"model name must be one of {model_names()}, got {name!r}")
    return _MODELS[name]


def options(name: str) -> dict[str, Option]:
    """``{key: Option(default, help)}`` of model ``name``: the fields of its config class
    (arguments the dataset gives, ``vocab_size`` and the like, are not options)."""
    return table(config_class(name))


def build(name: str, info: Mapping[str, Any], rngs: nnx.Rngs, config: Any = None, **kwargs):
    """Builds the model registered as ``name`` for the dataset described by ``info``, from
    ``config`` (an instance of its :func:`config_class`; default: the defaults) with the
    fields in ``kwargs`` replaced (``config.build(info, rngs)``).

    Raises:
      ValueError: unknown ``name`` (the message lists the registered ones).
      TypeError: a keyword that is not an option of the model (the closest one named).
    """
    cls = config_class(name)
    unknown = [k for k in kwargs if k not in options(name)]
    if unknown:
        near = closest(unknown[0], options(name))
        hint = f"; did you mean {near!r}?" if near else ""
        raise TypeError(f"{name}: no option {unknown[0]!r}{hint}")
    return dataclasses.replace(config if config is not None else cls(), **kwargs).build(info, rngs)


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
