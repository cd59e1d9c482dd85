"""Bridges to other frameworks.

* :mod:`rnnlab.interop.torch`: load the weights of PyTorch's ``nn.RNN``, ``nn.LSTM`` and
  ``nn.GRU`` (multi-layer, bidirectional, ``proj_size``) into rnnlab layers, and back.
* :mod:`rnnlab.interop.linen`: rnnlab cells and layers as Flax Linen modules, through
  ``flax.nnx.bridge``.
* :mod:`rnnlab.interop.flax_cells`: converters to and from Flax's stock ``LSTMCell``,
  ``OptimizedLSTMCell`` and ``GRUCell`` (NNX and Linen).

The submodules load on first access, so ``import rnnlab`` never imports torch.
"""

from __future__ import annotations

import importlib

__all__ = ["flax_cells", "linen", "torch"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
