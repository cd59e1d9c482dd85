"""PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` weights in rnnlab layers, and back.

Parameter mapping for layer ``k`` (suffix ``_reverse`` for the backward direction):

============================  ==============================================================
rnnlab cell parameter          PyTorch ``state_dict`` entry
============================  ==============================================================
``kernel_ih``                 ``weight_ih_l{k}.T``
``kernel_hh``                 ``weight_hh_l{k}.T``
``bias`` (Elman, LSTM)        ``bias_ih_l{k} + bias_hh_l{k}`` (the two only ever appear summed)
``bias_ih``, ``bias_hh`` (GRU) ``bias_ih_l{k}``, ``bias_hh_l{k}`` (``b_hn`` sits inside ``r *``)
``kernel_proj`` (LSTM)        ``weight_hr_l{k}.T`` (``proj_size``)
============================  ==============================================================

Gate orders already agree: LSTM ``(i, f, g, o)`` and GRU ``(r, z, n)``, and PyTorch's GRU is
the "reset after" form (``GRUCell(reset_after=True)``). Multi-layer bidirectional outputs are
concatenated ``[forward, backward]`` as in PyTorch.

torch is imported only when a module, a tensor or a file is handed in: a ``state_dict`` of
NumPy arrays loads without it. Files are read with ``torch.load(..., weights_only=True)``,
which refuses to unpickle anything but tensors and plain containers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rnnlab.cells.base import RecurrentCell
from rnnlab.cells.gru import GRUCell
from rnnlab.cells.lstm import LSTMCell
from rnnlab.cells.registry import make_cell
from rnnlab.cells.simple import SimpleCell
from rnnlab.interop.torch_state import TorchRNNSpec, infer_spec, read_state_dict
from rnnlab.interop.torch_state import to_jax as _to_jax
from rnnlab.layers import RNN, Bidirectional, StackedRNN

__all__ = [
    "TorchRNNSpec",
    "build_layer",
    "carry_from_torch",
    "carry_to_torch",
    "fill_from_torch",
    "infer_spec",
    "layer_cells",
    "load_torch_rnn",
    "read_state_dict",
    "resolve_time_major",
    "to_torch_state_dict",
]

Layer = RNN | Bidirectional | StackedRNN

_MODES = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")


def _cell_spec(spec: TorchRNNSpec) -> tuple[str, dict[str, Any]]:
    if spec.mode == "LSTM":
        return "lstm", {"proj_features": spec.proj_size or None}
    if spec.mode == "GRU":
        return "gru", {"reset_after": True}
    return "simple", {"activation": "tanh" if spec.mode == "RNN_TANH" else "relu"}


def resolve_time_major(
    time_major: bool | None,
    rnn_kwargs: Mapping[str, Any] | None,
    source: Any = None,
) -> bool:
    """The layout of the layer's inputs, from what the caller said, else from the module.

    An explicit ``time_major`` argument and ``rnn_kwargs["time_major"]`` are both the
    caller's choice: they must agree (a ValueError otherwise) and are never overridden.
    Without either, a module's ``batch_first`` decides (``False``, PyTorch's default, gives
    time-major ``[time, batch, features]`` inputs, so the module's own inputs fit), and a
    bare ``state_dict``, which does not record the layout, gives rnnlab's batch-major.
    """
    given = (rnn_kwargs or {}).get("time_major")
    if time_major is not None and given is not None and bool(time_major) != bool(given):
        raise ValueError(
            f"time_major={time_major!r} contradicts rnn_kwargs['time_major']={given!r}; "
            "give the layout once"
        )
    if time_major is not None:
        return bool(time_major)
    if given is not None:
        return bool(given)
    batch_first = getattr(source, "batch_first", None)
    if isinstance(batch_first, bool):
        return not batch_first
    return False


def build_layer(
    spec: TorchRNNSpec,
    *,
    dropout: float = 0.0,
    time_major: bool | None = None,
    dtype=None,
    param_dtype=jnp.float32,
    rnn_kwargs: Mapping[str, Any] | None = None,
    rngs: nnx.Rngs | None = None,
) -> Layer:
    """An rnnlab layer with the architecture of ``spec`` (freshly initialised).

    One layer gives an :class:`~rnnlab.RNN`, one bidirectional layer a
    :class:`~rnnlab.Bidirectional`, several layers a :class:`~rnnlab.StackedRNN`.
    ``time_major`` and ``rnn_kwargs["time_major"]`` must agree (see
    :func:`resolve_time_major`); neither given means batch-major.
    """
    rngs = rngs if rngs is not None else nnx.Rngs(0)
    name, kwargs = _cell_spec(spec)
    kwargs.update(dtype=dtype, param_dtype=param_dtype)
    rnn_kwargs = {**(rnn_kwargs or {}), "time_major": resolve_time_major(time_major, rnn_kwargs)}
    if spec.num_layers > 1:
        return StackedRNN(
            spec.input_size,
            spec.hidden_size,
            spec.num_layers,
            cell=name,
            cell_kwargs=kwargs,
            bidirectional=spec.bidirectional,
            dropout=dropout,
            rnn_kwargs=rnn_kwargs,
            rngs=rngs,
        )

    def rnn():
        return RNN(
            make_cell(name, spec.input_size, spec.hidden_size, rngs=rngs, **kwargs), **rnn_kwargs
        )

    return Bidirectional(rnn(), rnn()) if spec.bidirectional else rnn()


def layer_cells(layer: Layer) -> list[list[RecurrentCell]]:
    """The cells of ``layer`` by depth, then direction (forward, backward)."""
    if isinstance(layer, RNN):
        return [[layer.cell]]
    if isinstance(layer, Bidirectional):
        return [[layer.forward_rnn.cell, layer.backward_rnn.cell]]
    if isinstance(layer, StackedRNN):
        return [layer_cells(sub)[0] for sub in layer.layers]
    raise ValueError(f"layer must be an RNN, Bidirectional or StackedRNN, got {type(layer)}")


def _assign(cell: RecurrentCell, attr: str, value: np.ndarray, key: str) -> None:
    var = getattr(cell, attr, None)
    if var is None:
        raise ValueError(f"{type(cell).__name__} has no {attr!r} to receive {key!r}")
    if tuple(var.shape) != value.shape:
        raise ValueError(
            f"{key!r} maps to {attr} of shape {tuple(var.shape)} in the rnnlab cell, "
            f"got {value.shape} (after transposing)"
        )
    var.set_value(jax.device_put(np.asarray(value).astype(var.get_value().dtype)))


def _check_cell(cell: RecurrentCell, spec: TorchRNNSpec, where: str) -> None:
    expected = {"LSTM": LSTMCell, "GRU": GRUCell}.get(spec.mode, SimpleCell)
    if not isinstance(cell, expected):
        raise ValueError(
            f"{where} must be a {expected.__name__} for a {spec.mode}, got {type(cell).__name__}"
        )
    if isinstance(cell, GRUCell) and not cell.reset_after:
        raise ValueError(f"{where}: PyTorch's GRU needs GRUCell(reset_after=True)")
    if isinstance(cell, SimpleCell) and spec.mode != f"RNN_{cell.activation.upper()}":
        raise ValueError(f"{where} has activation {cell.activation!r}, the weights are {spec.mode}")


def fill_from_torch(layer: Layer, source: Any, *, prefix: str = "", nonlinearity=None) -> Layer:
    """Copies PyTorch recurrent weights into the cells of an existing rnnlab ``layer``.

    Args:
      layer: an :class:`~rnnlab.RNN`, :class:`~rnnlab.Bidirectional` or
        :class:`~rnnlab.StackedRNN` whose depth, directions and cell type match the weights.
      source: see :func:`read_state_dict`.
      prefix: the prefix of the recurrent entries in ``source``.
      nonlinearity: ``"tanh"`` or ``"relu"`` for Elman weights; read from ``source`` when it
        is a module, else taken from the layer's cells.

    Returns:
      ``layer``, updated in place.
    """
    cells = layer_cells(layer)
    if nonlinearity is None:
        nonlinearity = _module_nonlinearity(source) or getattr(cells[0][0], "activation", "tanh")
    state = read_state_dict(source, prefix)
    spec = infer_spec(state, nonlinearity)
    directions = 2 if spec.bidirectional else 1
    if len(cells) != spec.num_layers or len(cells[0]) != directions:
        raise ValueError(
            f"layer has {len(cells)} layer(s) x {len(cells[0])} direction(s), the weights "
            f"{spec.num_layers} x {directions}"
        )
    for k, directions_k in enumerate(cells):
        for d, cell in enumerate(directions_k):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            _check_cell(cell, spec, f"cell of layer {k}{' (reverse)' if d else ''}")
            _fill_cell(cell, state, sfx, spec)
    return layer


def _fill_cell(cell: RecurrentCell, state: Mapping, sfx: str, spec: TorchRNNSpec) -> None:
    def get(name):
        if name + sfx not in state:
            raise ValueError(f"state_dict lacks {name + sfx!r}")
        return state[name + sfx]

    _assign(cell, "kernel_ih", get("weight_ih").T, "weight_ih" + sfx)
    _assign(cell, "kernel_hh", get("weight_hh").T, "weight_hh" + sfx)
    gates = get("weight_hh").shape[0]
    b_ih = get("bias_ih") if spec.bias else np.zeros((gates,), np.float32)
    b_hh = get("bias_hh") if spec.bias else np.zeros((gates,), np.float32)
    if isinstance(cell, GRUCell):
        _assign(cell, "bias_ih", b_ih, "bias_ih" + sfx)
        _assign(cell, "bias_hh", b_hh, "bias_hh" + sfx)
    else:
        _assign(cell, "bias", b_ih + b_hh, "bias_ih" + sfx + " + bias_hh" + sfx)
    if isinstance(cell, LSTMCell) and (spec.proj_size or cell.kernel_proj is not None):
        if not spec.proj_size:
            raise ValueError(f"the cell has proj_features but the weights lack 'weight_hr{sfx}'")
        _assign(cell, "kernel_proj", get("weight_hr").T, "weight_hr" + sfx)


def _module_nonlinearity(source: Any) -> str | None:
    mode = getattr(source, "mode", None)
    if mode in ("RNN_TANH", "RNN_RELU"):
        return mode[4:].lower()
    return None


def load_torch_rnn(
    source: Any,
    *,
    prefix: str = "",
    nonlinearity: str | None = None,
    dropout: float | None = None,
    time_major: bool | None = None,
    dtype=None,
    param_dtype=jnp.float32,
    rnn_kwargs: Mapping[str, Any] | None = None,
) -> Layer:
    """Builds the rnnlab layer equivalent to a PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``.

    Example::

        >>> import torch, jax.numpy as jnp
        >>> from rnnlab.interop.torch import load_torch_rnn
        >>> lstm = torch.nn.LSTM(4, 8, num_layers=2, bidirectional=True)
        >>> layer = load_torch_rnn(lstm)            # or lstm.state_dict(), or a file path
        >>> layer(jnp.ones((5, 3, 4))).shape        # [time, batch, features]: batch_first=False
        (5, 3, 16)

    Args:
      source: an ``nn.Module``, its ``state_dict`` (tensors or NumPy arrays) or a file saved
        with ``torch.save(state_dict, path)`` (read with ``weights_only=True``).
      prefix: prefix of the recurrent entries inside a larger ``state_dict``.
      nonlinearity: for ``nn.RNN`` weights given as a ``state_dict``: ``"tanh"`` (PyTorch's
        default) or ``"relu"``. Read from the module when ``source`` is one.
      dropout: between-layer dropout; defaults to the module's, else 0.
      time_major: inputs of the returned layer are ``[time, batch, features]`` (True) or
        ``[batch, time, features]`` (False). Default: the module's layout
        (``not module.batch_first``, so a default PyTorch module takes its own time-major
        inputs), or batch-major for a ``state_dict``, which does not record it.
        ``rnn_kwargs["time_major"]`` may say the same; a contradiction is a ValueError.
      dtype, param_dtype: compute and parameter dtypes of the cells.
      rnn_kwargs: further :class:`~rnnlab.RNN` arguments for every direction and layer
        (``implementation``, ``unroll``, ``remat``, ``hoist_input_projection``).

    Returns:
      :class:`~rnnlab.RNN` for one layer, :class:`~rnnlab.Bidirectional` for one
      bidirectional layer, :class:`~rnnlab.StackedRNN` for several layers.
    """
    if nonlinearity is None:
        nonlinearity = _module_nonlinearity(source) or "tanh"
    if dropout is None:
        dropout = float(getattr(source, "dropout", 0.0) or 0.0)
    time_major = resolve_time_major(time_major, rnn_kwargs, source)
    state = read_state_dict(source, prefix)
    spec = infer_spec(state, nonlinearity)
    # Every parameter is overwritten, so the layer is built abstractly (no initialiser
    # runs or compiles) and then filled from the weights.
    layer = nnx.eval_shape(
        lambda: build_layer(
            spec,
            dropout=dropout,
            time_major=time_major,
            dtype=dtype,
            param_dtype=param_dtype,
            rnn_kwargs=rnn_kwargs,
        )
    )
    fill_from_torch(layer, state, nonlinearity=nonlinearity)
    for path, var in nnx.iter_graph(layer):
        if isinstance(var, nnx.Variable) and isinstance(var.get_value(), jax.ShapeDtypeStruct):
            raise ValueError(f"no PyTorch weight maps to {'/'.join(map(str, path))}")
    return layer


def to_torch_state_dict(layer: Layer, prefix: str = "") -> dict[str, np.ndarray]:
    """The ``state_dict`` of the PyTorch module equivalent to ``layer``, as NumPy arrays.

    Load it with ``module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
    A fused rnnlab bias goes to ``bias_ih`` and ``bias_hh`` is zero: only their sum matters.
    """
    out = {}
    for k, directions in enumerate(layer_cells(layer)):
        for d, cell in enumerate(directions):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            p = {name: np.array(v, np.float32) for name, v in cell.cell_params().items()}
            if isinstance(cell, GRUCell) and not cell.reset_after:
                raise ValueError("PyTorch's GRU is the reset-after form; got reset_after=False")
            out[f"{prefix}weight_ih{sfx}"] = np.ascontiguousarray(p["kernel_ih"].T)
            out[f"{prefix}weight_hh{sfx}"] = np.ascontiguousarray(p["kernel_hh"].T)
            if isinstance(cell, GRUCell):
                out[f"{prefix}bias_ih{sfx}"] = p["bias_ih"]
                out[f"{prefix}bias_hh{sfx}"] = p["bias_hh"]
            else:
                out[f"{prefix}bias_ih{sfx}"] = p["bias"]
                out[f"{prefix}bias_hh{sfx}"] = np.zeros_like(p["bias"])
            if "kernel_proj" in p:
                out[f"{prefix}weight_hr{sfx}"] = np.ascontiguousarray(p["kernel_proj"].T)
    return out


def _layer_carries(layer: Layer, carry: Any) -> list[Any]:
    """``carry`` of ``layer`` flattened to one entry per (layer, direction), PyTorch's order."""
    if isinstance(layer, RNN):
        return [carry]
    if isinstance(layer, Bidirectional):
        return list(carry)
    return [
        c
        for sub, per_layer in zip(layer.layers, carry, strict=True)
        for c in _layer_carries(sub, per_layer)
    ]


def carry_to_torch(layer: Layer, carry: Any):
    """An rnnlab carry of ``layer`` in PyTorch's layout.

    Returns ``h_n`` ``[num_layers * num_directions, *batch, H]`` for Elman and GRU layers and
    ``(h_n, c_n)`` for LSTMs, as ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` return them.
    """
    flat = _layer_carries(layer, carry)
    if isinstance(layer_cells(layer)[0][0], LSTMCell):
        return jnp.stack([h for _, h in flat]), jnp.stack([c for c, _ in flat])
    return jnp.stack(flat)


def carry_from_torch(layer: Layer, hx: Any):
    """The rnnlab initial carry of ``layer`` from PyTorch's ``h_0`` (or ``(h_0, c_0)``).

    ``hx`` may hold tensors, NumPy or JAX arrays (under ``jax.jit`` as well).
    """
    cells = layer_cells(layer)
    lstm = isinstance(cells[0][0], LSTMCell)
    if lstm:
        if not isinstance(hx, tuple | list) or len(hx) != 2:
            raise ValueError("hx must be the pair (h_0, c_0) for an LSTM")
        h, c = (_to_jax(a) for a in hx)
    else:
        h = _to_jax(hx)
    count = sum(len(d) for d in cells)
    if h.shape[0] != count:
        raise ValueError(f"hx must have num_layers * num_directions = {count} rows, got {h.shape}")
    flat = [(c[i], h[i]) if lstm else h[i] for i in range(count)]
    per_layer, i = [], 0
    for directions in cells:
        entry = flat[i : i + len(directions)]
        per_layer.append(tuple(entry) if len(directions) == 2 else entry[0])
        i += len(directions)
    if isinstance(layer, StackedRNN):
        return per_layer
    return per_layer[0]
