"""Converters between Flax's stock recurrent cells and rnnlab's LSTM and GRU cells.

Flax NNX (``flax.nnx.LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``) and Flax Linen
(``flax.linen.LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``) hold the same maths as
rnnlab's :class:`~rnnlab.cells.LSTMCell` and :class:`~rnnlab.cells.GRUCell` in other
arrays. The conversions are exact (a reshuffle, no arithmetic beyond adding biases that
only ever enter as a sum):

===================================  =========================================================
rnnlab                               Flax
===================================  =========================================================
LSTM ``kernel_ih`` ``[in, 4H]``      NNX Optimized: ``dense_i.kernel``; NNX/Linen per gate:
                                     ``ii``, ``if_`` (Linen ``if``), ``ig``, ``io`` kernels
LSTM ``kernel_hh`` ``[H, 4H]``       ``dense_h.kernel``; per gate ``hi``, ``hf``, ``hg``, ``ho``
LSTM ``bias`` ``[4H]``               ``dense_h.bias``; per gate ``hi.bias`` ... ``ho.bias``
GRU ``kernel_ih`` ``[in, 3H]``       NNX: ``dense_i.kernel``; Linen: ``ir``, ``iz``, ``in``
GRU ``kernel_hh`` ``[H, 3H]``        NNX: ``dense_h.kernel``; Linen: ``hr``, ``hz``, ``hn``
GRU ``bias_ih`` ``[3H]``             NNX: ``dense_i.bias``; Linen: ``ir/iz/in`` biases
GRU ``bias_hh`` ``[3H]``             NNX: none (zero); Linen: ``[0, 0, hn.bias]``
===================================  =========================================================

Gate orders agree: LSTM ``(i, f, g, o)``, GRU ``(r, z, n)``, and the LSTM carry is
``(c, h)`` in both. Every Flax GRU is the "reset after" form
(``n = tanh(x W_in + b_in + r * (h W_hn + b_hn))``), so it maps onto
``GRUCell(reset_after=True)``; NNX's ``GRUCell`` has no ``b_hn`` (it is zero), Linen's has
one. What has no Flax twin raises a ValueError: an LSTM with ``proj_features``, a GRU with
``reset_after=False``, a GRU with a non-zero ``b_hn`` into NNX, and Flax cells with other
gate or activation functions than ``sigmoid`` and ``tanh``. Recurrent biases ``b_hr`` and
``b_hz`` going to Flax are added to the input biases (they only enter as a sum).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rnnlab.cells.gru import GRUCell
from rnnlab.cells.lstm import LSTMCell

LSTM_GATES = ("i", "f", "g", "o")
GRU_GATES = ("r", "z", "n")
FLAX_NNX_CELLS = (nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.GRUCell)


def _np(x: Any) -> np.ndarray:
    return np.asarray(x.get_value() if isinstance(x, nnx.Variable) else x)


def _fill(var: nnx.Variable, value: np.ndarray, where: str) -> None:
    target = var.get_value()
    if tuple(target.shape) != tuple(value.shape):
        raise ValueError(f"{where}: expected shape {tuple(target.shape)}, got {value.shape}")
    var.set_value(jnp.asarray(value).astype(target.dtype))


def _check_activations(cell: Any) -> None:
    gate, act = getattr(cell, "gate_fn", None), getattr(cell, "activation_fn", None)
    if gate not in (jax.nn.sigmoid, nnx.sigmoid) or act not in (jnp.tanh, nnx.tanh):
        raise ValueError(
            f"{type(cell).__name__} has gate_fn={getattr(gate, '__name__', gate)} and "
            f"activation_fn={getattr(act, '__name__', act)}; rnnlab's cells use sigmoid gates "
            "and tanh activations"
        )


def _rnnlab_cell(cls, in_features: int, hidden: int, dtype, param_dtype, **kw):
    # Built abstractly: every parameter is overwritten, so no initialiser runs.
    return nnx.eval_shape(
        lambda: cls(
            in_features, hidden, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0), **kw
        )
    )


def _filled_rnnlab_cell(cls, arrays: Mapping[str, np.ndarray], dtype, param_dtype, **kw):
    in_features, width = arrays["kernel_ih"].shape
    hidden = arrays["kernel_hh"].shape[0]
    cell = _rnnlab_cell(cls, int(in_features), int(hidden), dtype, param_dtype, **kw)
    for name, value in arrays.items():
        _fill(getattr(cell, name), value, f"{cls.__name__}.{name}")
    return cell


# -- Flax NNX -----------------------------------------------------------------------------


def from_flax(cell: nnx.Module) -> LSTMCell | GRUCell:
    """The rnnlab cell computing what a stock Flax NNX cell computes.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.interop.flax_cells import from_flax
        >>> flax_cell = nnx.OptimizedLSTMCell(3, 8, rngs=nnx.Rngs(0))
        >>> cell = from_flax(flax_cell)                       # an rnnlab LSTMCell
        >>> carry = cell.initialize_carry((2, 3))
        >>> want = flax_cell(carry, jnp.ones((2, 3)))[1]
        >>> bool(jnp.allclose(cell(carry, jnp.ones((2, 3)))[1], want, atol=1e-6))
        True

    Args:
      cell: an ``nnx.LSTMCell``, ``nnx.OptimizedLSTMCell`` or ``nnx.GRUCell``.

    Returns:
      An :class:`~rnnlab.cells.LSTMCell` or :class:`~rnnlab.cells.GRUCell`
      (``reset_after=True``) with the cell's ``dtype`` and ``param_dtype``.
    """
    if not isinstance(cell, FLAX_NNX_CELLS):
        raise ValueError(
            "cell must be a flax.nnx LSTMCell, OptimizedLSTMCell or GRUCell, "
            f"got {type(cell).__name__}"
        )
    _check_activations(cell)
    dtype, param_dtype = cell.dtype, cell.param_dtype
    if isinstance(cell, nnx.GRUCell):
        bias_ih = _np(cell.dense_i.bias)
        arrays = {
            "kernel_ih": _np(cell.dense_i.kernel),
            "kernel_hh": _np(cell.dense_h.kernel),
            "bias_ih": bias_ih,
            "bias_hh": np.zeros_like(bias_ih),
        }
        return _filled_rnnlab_cell(GRUCell, arrays, dtype, param_dtype, reset_after=True)
    if isinstance(cell, nnx.OptimizedLSTMCell):
        arrays = {
            "kernel_ih": _np(cell.dense_i.kernel),
            "kernel_hh": _np(cell.dense_h.kernel),
            "bias": _np(cell.dense_h.bias),
        }
    else:
        ins = [cell.ii, cell.if_, cell.ig, cell.io]
        hs = [cell.hi, cell.hf, cell.hg, cell.ho]
        arrays = {
            "kernel_ih": np.concatenate([_np(d.kernel) for d in ins], axis=-1),
            "kernel_hh": np.concatenate([_np(d.kernel) for d in hs], axis=-1),
            "bias": np.concatenate([_np(d.bias) for d in hs], axis=-1),
        }
    return _filled_rnnlab_cell(LSTMCell, arrays, dtype, param_dtype)


def _lstm_arrays(cell: LSTMCell) -> dict[str, np.ndarray]:
    if cell.proj_features:
        raise ValueError(
            f"an LSTMCell with proj_features={cell.proj_features} has no Flax equivalent "
            "(Flax's LSTM cells have no output projection)"
        )
    return {k: np.asarray(v) for k, v in cell.cell_params().items()}


def _gru_arrays(cell: GRUCell) -> dict[str, np.ndarray]:
    if not cell.reset_after:
        raise ValueError(
            "a GRUCell(reset_after=False) has no Flax equivalent: Flax's GRU cells are the "
            "'reset after' form (r multiplies h W_hn + b_hn)"
        )
    p = {k: np.asarray(v) for k, v in cell.cell_params().items()}
    h = cell.hidden_features
    # b_hr and b_hz only enter summed with b_ir and b_iz; b_hn sits inside r * (...).
    b_i = p["bias_ih"].copy()
    b_i[: 2 * h] += p["bias_hh"][: 2 * h]
    return {**p, "bias_i": b_i, "bias_hn": p["bias_hh"][2 * h :]}


def to_flax(cell: LSTMCell | GRUCell, flax_class: type | None = None) -> nnx.Module:
    """The stock Flax NNX cell computing what an rnnlab LSTM or GRU cell computes.

    Args:
      cell: an :class:`~rnnlab.cells.LSTMCell` (without ``proj_features``) or a
        :class:`~rnnlab.cells.GRUCell` (``reset_after=True`` with ``b_hn = 0``; use
        :func:`to_linen` for a GRU whose ``b_hn`` is not zero).
      flax_class: ``nnx.OptimizedLSTMCell`` (default for an LSTM) or ``nnx.LSTMCell``;
        ``nnx.GRUCell`` (the only choice for a GRU).

    Returns:
      The Flax cell, with the rnnlab cell's ``dtype`` and ``param_dtype``.
    """
    if isinstance(cell, LSTMCell):
        flax_class = flax_class or nnx.OptimizedLSTMCell
        if flax_class not in (nnx.OptimizedLSTMCell, nnx.LSTMCell):
            raise ValueError(f"an LSTMCell converts to nnx.(Optimized)LSTMCell, not {flax_class}")
        p = _lstm_arrays(cell)
    elif isinstance(cell, GRUCell):
        flax_class = flax_class or nnx.GRUCell
        if flax_class is not nnx.GRUCell:
            raise ValueError(f"a GRUCell converts to nnx.GRUCell, not {flax_class}")
        p = _gru_arrays(cell)
        if np.any(p["bias_hn"] != 0):
            raise ValueError(
                "nnx.GRUCell has no recurrent bias b_hn (bias_hh[2H:]), and this cell's is not "
                "zero; flax.linen.GRUCell has one: use to_linen"
            )
    else:
        raise ValueError(f"cell must be an rnnlab LSTMCell or GRUCell, got {type(cell).__name__}")
    out = nnx.eval_shape(
        lambda: flax_class(
            cell.in_features,
            cell.hidden_features,
            dtype=cell.dtype,
            param_dtype=cell.param_dtype,
            rngs=nnx.Rngs(0),
        )
    )
    name = flax_class.__name__
    if flax_class is nnx.GRUCell:
        _fill(out.dense_i.kernel, p["kernel_ih"], f"{name}.dense_i.kernel")
        _fill(out.dense_i.bias, p["bias_i"], f"{name}.dense_i.bias")
        _fill(out.dense_h.kernel, p["kernel_hh"], f"{name}.dense_h.kernel")
    elif flax_class is nnx.OptimizedLSTMCell:
        _fill(out.dense_i.kernel, p["kernel_ih"], f"{name}.dense_i.kernel")
        _fill(out.dense_h.kernel, p["kernel_hh"], f"{name}.dense_h.kernel")
        _fill(out.dense_h.bias, p["bias"], f"{name}.dense_h.bias")
    else:
        split = lambda a: np.split(a, 4, axis=-1)
        ins = [out.ii, out.if_, out.ig, out.io]
        hs = [out.hi, out.hf, out.hg, out.ho]
        parts = zip(split(p["kernel_ih"]), split(p["kernel_hh"]), split(p["bias"]), strict=True)
        for gate, d_i, d_h, (k_i, k_h, b) in zip(LSTM_GATES, ins, hs, parts, strict=True):
            _fill(d_i.kernel, k_i, f"{name}.i{gate}.kernel")
            _fill(d_h.kernel, k_h, f"{name}.h{gate}.kernel")
            _fill(d_h.bias, b, f"{name}.h{gate}.bias")
    return out


# -- Flax Linen ---------------------------------------------------------------------------


def _linen_cell_params(params: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accepts ``{"params": {...}}``, ``{...}`` (the cell's own parameter dict)."""
    if "params" in params and len(params) == 1:
        params = params["params"]
    return params


def from_linen(params: Mapping[str, Any], *, dtype=None, param_dtype=None) -> LSTMCell | GRUCell:
    """The rnnlab cell for the parameters of a Linen ``LSTMCell``, ``OptimizedLSTMCell`` or
    ``GRUCell`` (the two LSTM forms share one layout: ``ii``... ``ho``).

    Args:
      params: the cell's variables (``{"params": {...}}``) or its parameter dict, e.g.
        ``variables["params"]["cell"]`` inside a larger model.
      dtype, param_dtype: of the rnnlab cell (default: compute in ``param_dtype``, which
        defaults to the arrays' dtype).

    Returns:
      An :class:`~rnnlab.cells.LSTMCell` or a :class:`~rnnlab.cells.GRUCell`
      (``reset_after=True``); the kind is read from the parameter names.
    """
    p = _linen_cell_params(params)
    names = set(p)
    lstm_names = {f"{s}{g}" for s in "ih" for g in LSTM_GATES}
    gru_names = {f"{s}{g}" for s in "ih" for g in GRU_GATES}
    get = lambda name, leaf: np.asarray(p[name][leaf])
    if names == lstm_names:
        arrays = {
            "kernel_ih": np.concatenate([get(f"i{g}", "kernel") for g in LSTM_GATES], -1),
            "kernel_hh": np.concatenate([get(f"h{g}", "kernel") for g in LSTM_GATES], -1),
            "bias": np.concatenate([get(f"h{g}", "bias") for g in LSTM_GATES], -1),
        }
        cls, kw = LSTMCell, {}
    elif names == gru_names:
        hn_bias = get("hn", "bias")
        arrays = {
            "kernel_ih": np.concatenate([get(f"i{g}", "kernel") for g in GRU_GATES], -1),
            "kernel_hh": np.concatenate([get(f"h{g}", "kernel") for g in GRU_GATES], -1),
            "bias_ih": np.concatenate([get(f"i{g}", "bias") for g in GRU_GATES], -1),
            "bias_hh": np.concatenate([np.zeros_like(hn_bias)] * 2 + [hn_bias], -1),
        }
        cls, kw = GRUCell, {"reset_after": True}
    else:
        raise ValueError(
            "params must be those of a flax.linen LSTMCell/OptimizedLSTMCell (keys "
            f"{sorted(lstm_names)}) or GRUCell (keys {sorted(gru_names)}), got {sorted(names)}"
        )
    param_dtype = param_dtype or arrays["kernel_ih"].dtype
    return _filled_rnnlab_cell(cls, arrays, dtype, param_dtype, **kw)


def to_linen(cell: LSTMCell | GRUCell) -> dict[str, Any]:
    """The variables ``{"params": {...}}`` of the Linen cell computing what ``cell`` does.

    An LSTM gives the layout of ``flax.linen.LSTMCell`` and ``OptimizedLSTMCell`` (the same),
    a GRU that of ``flax.linen.GRUCell`` (``b_hn`` included). Apply with
    ``nn.LSTMCell(features=H).apply(variables, carry, x)``.
    """
    if isinstance(cell, LSTMCell):
        p = _lstm_arrays(cell)
        parts = zip(
            *(np.split(p[k], 4, axis=-1) for k in ("kernel_ih", "kernel_hh", "bias")), strict=True
        )
        out = {}
        for g, (k_i, k_h, b) in zip(LSTM_GATES, parts, strict=True):
            out[f"i{g}"] = {"kernel": jnp.asarray(k_i)}
            out[f"h{g}"] = {"kernel": jnp.asarray(k_h), "bias": jnp.asarray(b)}
        return {"params": out}
    if isinstance(cell, GRUCell):
        p = _gru_arrays(cell)
        k_i, k_h, b_i = (np.split(p[k], 3, axis=-1) for k in ("kernel_ih", "kernel_hh", "bias_i"))
        out = {}
        for j, g in enumerate(GRU_GATES):
            out[f"i{g}"] = {"kernel": jnp.asarray(k_i[j]), "bias": jnp.asarray(b_i[j])}
            out[f"h{g}"] = {"kernel": jnp.asarray(k_h[j])}
        out["hn"]["bias"] = jnp.asarray(p["bias_hn"])
        return {"params": out}
    raise ValueError(f"cell must be an rnnlab LSTMCell or GRUCell, got {type(cell).__name__}")
