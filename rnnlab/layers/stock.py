"""Stock Flax cells (``flax.nnx.LSTMCell``, ``GRUCell``, ...) inside rnnlab's layers.

Any cell with Flax's contract (``cell(carry, x) -> (carry, y)``, ``initialize_carry``,
``num_feature_axes``) runs through :class:`rnnlab.RNN` with rnnlab's semantics: padding,
resets, reversal of the valid part. :class:`FlaxCell` gives it the ``project``/``step``
split of an rnnlab cell with an identity projection; such cells run on the scan path only.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells.base import RecurrentCell

Array = jax.Array


def follows_cell_contract(cell: Any) -> bool:
    """True for an object with Flax's recurrent cell contract."""
    return (
        callable(cell)
        and callable(getattr(cell, "initialize_carry", None))
        and hasattr(cell, "num_feature_axes")
    )


class FlaxCell(RecurrentCell):
    """Adapts a stock Flax cell to rnnlab's cell interface; ``cell.cell`` is the wrapped one.

    Its parameters stay in the wrapped cell (no ``params=`` override, so weight drop and
    recurrent dropout do not apply), and its carry is whatever its ``initialize_carry``
    returns.
    """

    def __init__(self, cell: Any):
        self.cell = cell
        self.in_features = getattr(cell, "in_features", None)
        self.hidden_features = getattr(cell, "hidden_features", None)
        self.dtype = getattr(cell, "dtype", None)
        self.param_dtype = getattr(cell, "param_dtype", jnp.float32)

    @property
    def num_feature_axes(self) -> int:
        return self.cell.num_feature_axes

    @property
    def output_features(self) -> int:
        return self.hidden_features

    def cell_params(self):
        return {}

    def initialize_carry(self, input_shape, rngs=None, carry_init=None):
        # Stock NNX cells ask for a stream even for their default zero carry; a fixed one
        # keeps the layer a pure function (pass ``rngs`` for a random carry_init). Flax's
        # contract is ``initialize_carry(input_shape, rngs)``: ``carry_init`` goes only to a
        # cell that is given one.
        rngs = nnx.Rngs(carry=0) if rngs is None else rngs
        if carry_init is None:
            return self.cell.initialize_carry(tuple(input_shape), rngs)
        return self.cell.initialize_carry(tuple(input_shape), rngs, carry_init)

    def promote_inputs(self, x: Array) -> Array:
        # The wrapped cell promotes its inputs by its own rules.
        self.check_inputs(x)
        return x

    def check_inputs(self, x: Array) -> None:
        if self.in_features is not None and x.shape[-1] != self.in_features:
            raise ValueError(
                f"inputs feature size must equal in_features={self.in_features} of "
                f"{type(self.cell).__name__}, got {x.shape[-1]} (shape {tuple(x.shape)})"
            )

    def project(self, params, x: Array) -> Array:
        del params
        return x

    def step_with(self, params, carry, x: Array):
        del params
        return self.cell(carry, x)
