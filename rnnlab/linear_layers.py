"""Time-parallel layers for linear recurrences (LRU, minGRU, minLSTM).

A :class:`~rnnlab.cells.linear.LinearRecurrentCell` computes ``(a_t, b_t)`` for every step
at once from the input, and :func:`rnnlab.scan.linear_scan` solves
``h_t = a_t * h_{t-1} + b_t`` over the whole sequence, sequentially or with an associative
scan in ``O(log T)`` depth. Padding, resets and reversal need no per-step branch: they are
rewrites of the coefficients,

* padding (``t >= seq_lengths``): ``a_t = 1, b_t = 0`` holds the state;
* reset at ``t``: ``a_t = 0, b_t = b_t + a_t h_0`` restarts from the initial state;
* reverse: each sequence's valid part is reversed before the scan and restored after.

The semantics are those of :class:`rnnlab.RNN` run over the same cell, which the tests
check: the same outputs, final carry and gradients. The cells themselves still follow the
per-step contract, so ``rnnlab.RNN(layer.cell)`` runs the same model step by step for
sampling or streaming.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells.linear import LinearRecurrentCell, LRUCell, MinGRUCell, MinLSTMCell
from rnnlab.layers import check_sequence_args
from rnnlab.scan import _reverse_resets, linear_scan, reverse_valid, valid_mask

Array = jax.Array
ScanMethod = Literal["auto", "sequential", "associative"]
METHODS = ("auto", "sequential", "associative")


class LinearRecurrence(nnx.Module):
    """Runs a linear-recurrent cell over whole sequences with :func:`linear_scan`.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import MinGRUCell
        >>> from rnnlab.linear_layers import LinearRecurrence
        >>> layer = LinearRecurrence(MinGRUCell(4, 16, rngs=nnx.Rngs(0)), method="associative")
        >>> layer(jnp.ones((2, 10, 4)), seq_lengths=jnp.array([10, 6])).shape
        (2, 10, 16)

    Args:
      cell: a :class:`~rnnlab.cells.linear.LinearRecurrentCell`.
      method: ``"auto"`` (sequential on CPU, associative elsewhere), ``"sequential"`` or
        ``"associative"``.
      time_major, reverse, keep_order, return_carry: as :class:`rnnlab.RNN`.
    """

    def __init__(
        self,
        cell: LinearRecurrentCell,
        *,
        method: ScanMethod = "auto",
        time_major: bool = False,
        reverse: bool = False,
        keep_order: bool = False,
        return_carry: bool = False,
    ):
        if not isinstance(cell, LinearRecurrentCell):
            raise ValueError(
                f"cell must be a LinearRecurrentCell (LRU, minGRU, minLSTM), "
                f"got {type(cell).__name__}"
            )
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.cell, self.method = cell, method
        self.time_major, self.reverse, self.keep_order = time_major, reverse, keep_order
        self.return_carry = return_carry

    @property
    def output_features(self) -> int:
        return self.cell.output_features

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Array | None = None,
        seq_lengths: Array | None = None,
        resets: Array | None = None,
        return_carry: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
        method: ScanMethod | None = None,
    ):
        """Runs the layer; arguments as :meth:`rnnlab.RNN.__call__`."""
        cell = self.cell
        reverse = self.reverse if reverse is None else reverse
        keep_order = self.keep_order if keep_order is None else keep_order
        return_carry = self.return_carry if return_carry is None else return_carry
        method = self.method if method is None else method
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        batch, num_steps = check_sequence_args(inputs, 1, self.time_major, seq_lengths, resets)
        cell.check_inputs(inputs)
        h0 = cell.initialize_carry(batch + tuple(inputs.shape[-1:]))
        if initial_carry is not None:
            if tuple(initial_carry.shape) != tuple(h0.shape):
                raise ValueError(
                    f"initial_carry must have shape {tuple(h0.shape)}, "
                    f"got {tuple(initial_carry.shape)}"
                )
            h0 = initial_carry.astype(h0.dtype)

        xs = inputs if self.time_major else jnp.moveaxis(inputs, -2, 0)
        if resets is not None and not self.time_major:
            resets = jnp.moveaxis(resets, -1, 0)
        if seq_lengths is not None:
            seq_lengths = jnp.asarray(seq_lengths, jnp.int32)

        params = cell.cell_params()
        xp = cell.project(params, xs)
        if reverse:
            if resets is not None:
                resets = _reverse_resets(resets, seq_lengths)
            xp = reverse_valid(xp, seq_lengths)
        a, b = cell.coefficients(params, xp)
        if resets is not None:
            r = resets[..., None]
            b = jnp.where(r, b + a * h0, b)
            a = jnp.where(r, jnp.zeros_like(a), a)
        mask = None
        if seq_lengths is not None:
            mask = valid_mask(seq_lengths, num_steps)[..., None]
            a = jnp.where(mask, a, jnp.ones_like(a))
            b = jnp.where(mask, b, jnp.zeros_like(b))
        hs = linear_scan(a, b, h0, method=method)
        ys = cell.readout(params, hs, xp)
        if mask is not None:
            ys = jnp.where(mask, ys, jnp.zeros_like(ys))
        carry = hs[-1]
        if reverse and keep_order:
            ys = reverse_valid(ys, seq_lengths)
        if not self.time_major:
            ys = jnp.moveaxis(ys, 0, -2)
        return (carry, ys) if return_carry else ys


class LRULayer(LinearRecurrence):
    """:class:`LinearRecurrence` over an :class:`~rnnlab.cells.LRUCell` (Orvieto et al. 2023).

    ``hidden_features`` is the complex state size ``N``; the other keyword arguments go to
    the cell (``out_features``, ``r_min``, ``r_max``, ``max_phase``, dtypes) or the layer.
    """

    def __init__(self, in_features: int, hidden_features: int, *, rngs: nnx.Rngs, **kwargs):
        layer_kw = _pop_layer_kwargs(kwargs)
        super().__init__(LRUCell(in_features, hidden_features, rngs=rngs, **kwargs), **layer_kw)


class MinGRULayer(LinearRecurrence):
    """:class:`LinearRecurrence` over a :class:`~rnnlab.cells.MinGRUCell` (Feng et al. 2024)."""

    def __init__(self, in_features: int, hidden_features: int, *, rngs: nnx.Rngs, **kwargs):
        layer_kw = _pop_layer_kwargs(kwargs)
        cell = MinGRUCell(in_features, hidden_features, rngs=rngs, **kwargs)
        super().__init__(cell, **layer_kw)


class MinLSTMLayer(LinearRecurrence):
    """:class:`LinearRecurrence` over a :class:`~rnnlab.cells.MinLSTMCell` (Feng et al. 2024)."""

    def __init__(self, in_features: int, hidden_features: int, *, rngs: nnx.Rngs, **kwargs):
        layer_kw = _pop_layer_kwargs(kwargs)
        cell = MinLSTMCell(in_features, hidden_features, rngs=rngs, **kwargs)
        super().__init__(cell, **layer_kw)


def _pop_layer_kwargs(kwargs: dict) -> dict:
    names = ("method", "time_major", "reverse", "keep_order", "return_carry")
    return {name: kwargs.pop(name) for name in names if name in kwargs}
