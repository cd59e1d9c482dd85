"""What a PyTorch recurrent ``state_dict`` holds: its entries read as NumPy arrays (from a
module, a mapping or a file) and the architecture its shapes describe.

The mapping onto rnnlab's layers is :mod:`rnnlab.interop.torch`, which re-exports these.
torch is imported only when a file is read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")
_GATES = {1: "RNN", 3: "GRU", 4: "LSTM"}


@dataclass(frozen=True)
class TorchRNNSpec:
    """What a PyTorch recurrent ``state_dict`` describes."""

    mode: str  # "RNN_TANH", "RNN_RELU", "LSTM" or "GRU", as ``nn.RNNBase.mode``
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    proj_size: int  # 0 when absent, as in PyTorch
    bias: bool


def to_numpy(value: Any) -> np.ndarray:
    """A tensor or array as a NumPy array (bfloat16 tensors go through float32)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if not value.dtype.is_floating_point or value.dtype.itemsize < 4:
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def to_jax(value: Any) -> jnp.ndarray:
    """A tensor as a float32 JAX array; JAX arrays (traced ones too) pass through."""
    return jnp.asarray(to_numpy(value) if hasattr(value, "detach") else value, jnp.float32)


def read_state_dict(source: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """The recurrent entries of ``source`` as NumPy arrays, with ``prefix`` removed.

    ``source`` is an ``nn.Module``, a mapping of tensors or arrays (a ``state_dict``), or the
    path of a file written by ``torch.save(state_dict, path)``. Entries outside ``prefix``
    are ignored (so a whole model's ``state_dict`` works with ``prefix="encoder.rnn."``);
    entries inside it that are not recurrent weights raise a ValueError.
    """
    if isinstance(source, str | os.PathLike):
        import torch

        source = torch.load(os.fspath(source), map_location="cpu", weights_only=True)
    elif hasattr(source, "state_dict") and callable(source.state_dict):
        source = source.state_dict()
    if not isinstance(source, Mapping):
        raise ValueError(
            "source must be a torch nn.Module, a state_dict mapping or a file path, "
            f"got {type(source).__name__}"
        )
    out = {}
    for key, value in source.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if not KEY.match(name):
            raise ValueError(
                f"state_dict key {key!r} is not a recurrent weight (expected names like "
                f"'{prefix}weight_ih_l0' or '{prefix}bias_hh_l1_reverse')"
            )
        out[name] = to_numpy(value)
    if "weight_ih_l0" not in out:
        raise ValueError(f"state_dict has no '{prefix}weight_ih_l0'; keys: {sorted(source)[:8]}")
    return out


def infer_spec(state: Mapping[str, np.ndarray], nonlinearity: str = "tanh") -> TorchRNNSpec:
    """Reads the architecture from the shapes of a ``state_dict``.

    A ``state_dict`` does not record an Elman network's nonlinearity; ``nonlinearity``
    supplies it (PyTorch's default is ``"tanh"``).
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    layers = sorted({int(KEY.match(k).group(2)) for k in state})
    num_layers = len(layers)
    if layers != list(range(num_layers)):
        raise ValueError(f"state_dict layers must be numbered 0..n-1, got {layers}")
    w_hh = state["weight_hh_l0"]
    proj_size = int(state["weight_hr_l0"].shape[0]) if "weight_hr_l0" in state else 0
    hidden = int(state["weight_hr_l0"].shape[1]) if proj_size else int(w_hh.shape[1])
    gates = int(w_hh.shape[0]) // hidden
    if gates not in _GATES or gates * hidden != w_hh.shape[0]:
        raise ValueError(
            f"weight_hh_l0 must have 1, 3 or 4 times hidden_size={hidden} rows, "
            f"got shape {w_hh.shape}"
        )
    mode = _GATES[gates]
    if mode == "RNN":
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
    return TorchRNNSpec(
        mode=mode,
        input_size=int(state["weight_ih_l0"].shape[1]),
        hidden_size=hidden,
        num_layers=num_layers,
        bidirectional=any(k.endswith("_reverse") for k in state),
        proj_size=proj_size,
        bias="bias_ih_l0" in state,
    )
