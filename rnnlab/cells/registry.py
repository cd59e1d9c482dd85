"""Cells by name, so configs can say ``cell="lstm"`` and other modules can add their own."""

from __future__ import annotations

from collections.abc import Callable

from flax import nnx

from rnnlab.cells.base import RecurrentCell
from rnnlab.cells.gru import GRUCell
from rnnlab.cells.lstm import LSTMCell
from rnnlab.cells.simple import SimpleCell

CellFactory = Callable[..., RecurrentCell]

_CELLS: dict[str, CellFactory] = {
    "simple": SimpleCell,
    "elman": SimpleCell,
    "irnn": SimpleCell.irnn,
    "lstm": LSTMCell,
    "gru": GRUCell,
}


def register_cell(name: str, factory: CellFactory) -> CellFactory:
    """Registers ``factory(in_features, hidden_features, *, rngs, **kwargs)`` under ``name``."""
    if name in _CELLS and _CELLS[name] is not factory:
        raise ValueError(f"a cell named {name!r} is already registered")
    _CELLS[name] = factory
    return factory


def cell_names() -> list[str]:
    """Names accepted by :func:`make_cell`."""
    return sorted(_CELLS)


def make_cell(
    name: str, in_features: int, hidden_features: int, *, rngs: nnx.Rngs, **kwargs
) -> RecurrentCell:
    """Builds the cell registered as ``name``; unknown names list the valid ones."""
    if name not in _CELLS:
        raise ValueError(f"unknown cell {name!r}; expected one of {cell_names()}")
    return _CELLS[name](in_features, hidden_features, rngs=rngs, **kwargs)
