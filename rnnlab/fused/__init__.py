"""Fused whole-sequence recurrences: one ``jax.custom_vjp`` per layer call.

The pure functions :func:`lstm_sequence` (with or without projection) and
:func:`gru_sequence` run a recurrence over time-major arrays with padding, resets from a
reset carry and the regulariser masks, and compute the weight gradients as single large
matmuls after the backward loop. :class:`rnnlab.RNN` takes this path by default where it
applies (:mod:`rnnlab.layers.fused_path` says where and runs it with the layer's semantics).
"""

from rnnlab.fused.common import FusedOptions
from rnnlab.fused.gru import gru_sequence
from rnnlab.fused.lstm import lstm_sequence

__all__ = ["FusedOptions", "gru_sequence", "lstm_sequence"]
