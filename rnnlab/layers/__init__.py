"""Sequence layers: the one runner (:class:`RNN`), both ways (:class:`Bidirectional`), in
depth with the regularisers as an option (:class:`StackedRNN`), and named layers built on
them (:class:`BNLSTM`, :class:`LinearRecurrence`, :class:`LRULayer`, ...).

Every model in :mod:`rnnlab.models` builds its recurrence from these; which loop runs
(``"scan"``, ``"fused"``, ``"kernel"``, ``"parallel"``) is decided in :mod:`rnnlab.layers.dispatch`.
"""

from rnnlab.layers import dispatch
from rnnlab.layers.bidirectional import MERGES, Bidirectional, merge_fn
from rnnlab.layers.bn_lstm import BNLSTM
from rnnlab.layers.checks import check_carry, check_sequence_args
from rnnlab.layers.linear import LinearRecurrence, LRULayer, MinGRULayer, MinLSTMLayer
from rnnlab.layers.regularized import regularized_layer, regularized_rnn
from rnnlab.layers.rnn import RNN
from rnnlab.layers.stack import StackedRNN
from rnnlab.layers.stock import FlaxCell

__all__ = [
    "BNLSTM",
    "MERGES",
    "RNN",
    "Bidirectional",
    "FlaxCell",
    "LRULayer",
    "LinearRecurrence",
    "MinGRULayer",
    "MinLSTMLayer",
    "StackedRNN",
    "check_carry",
    "check_sequence_args",
    "dispatch",
    "merge_fn",
    "regularized_layer",
    "regularized_rnn",
]
