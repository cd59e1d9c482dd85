"""rnnlab: recurrent neural networks in JAX/Flax.

The core (this package's top level, ``rnnlab.cells``, ``rnnlab.layers``, ``rnnlab.scan``)
imports only jax, flax, optax and numpy. The training harness (``rnnlab.data``,
``rnnlab.train``, ``rnnlab.cli``) is imported on demand and needs the ``train`` extra.
"""

from rnnlab import cells, scan
from rnnlab.cells import GRUCell, LSTMCell, RecurrentCell, SimpleCell
from rnnlab.layers import RNN, Bidirectional, StackedRNN

__version__ = "0.1.0"

__all__ = [
    "RNN",
    "Bidirectional",
    "GRUCell",
    "LSTMCell",
    "RecurrentCell",
    "SimpleCell",
    "StackedRNN",
    "cells",
    "scan",
]
