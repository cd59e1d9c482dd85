"""Layers for linear recurrences (LRU, minGRU, minLSTM) on the time-parallel path.

These are :class:`rnnlab.RNN` with ``implementation="parallel"``
(:func:`rnnlab.layers.associative.run_associative`); ``RNN(cell)`` and :class:`StackedRNN` take the
same path by default for these cells. The cells still follow the per-step contract, so
``rnnlab.RNN(cell, implementation="scan")`` runs the same model step by step.
"""

from __future__ import annotations

from flax import nnx

from rnnlab.cells.linear import LinearRecurrentCell, LRUCell, MinGRUCell, MinLSTMCell
from rnnlab.layers.associative import METHODS
from rnnlab.layers.rnn import RNN


class LinearRecurrence(RNN):
    """Runs a linear-recurrent cell over whole sequences with :func:`rnnlab.scan.linear_scan`.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import MinGRUCell
        >>> from rnnlab.layers import LinearRecurrence
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
        method: str = "auto",
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
        super().__init__(
            cell,
            time_major=time_major,
            reverse=reverse,
            keep_order=keep_order,
            return_carry=return_carry,
            implementation="parallel",
            scan_method=method,
        )

    @property
    def method(self) -> str:
        return self.scan_method

    def __call__(self, inputs, *, method: str | None = None, **kwargs):
        """As :meth:`rnnlab.RNN.__call__`; ``method`` overrides the scan method for one call."""
        if method is not None and method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        return super().__call__(inputs, scan_method=method, **kwargs)


def _pop_layer_kwargs(kwargs: dict) -> dict:
    names = ("method", "time_major", "reverse", "keep_order", "return_carry")
    return {name: kwargs.pop(name) for name in names if name in kwargs}


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
