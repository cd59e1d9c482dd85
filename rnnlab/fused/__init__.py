"""Fused whole-sequence recurrences: one ``jax.custom_vjp`` per layer call.

:class:`rnnlab.RNN` takes this path by default (``implementation="auto"``) for the
configurations it covers: :func:`unsupported_reason` says which, :func:`run_fused` runs it.
The pure functions :func:`lstm_sequence` and :func:`gru_sequence` work on time-major arrays
for callers outside the layer.
"""

from rnnlab.fused.common import FusedOptions
from rnnlab.fused.dispatch import (
    IMPLEMENTATIONS,
    REMAT_CHUNK,
    default_options,
    run_fused,
    unsupported_reason,
)
from rnnlab.fused.gru import gru_sequence
from rnnlab.fused.lstm import lstm_sequence

__all__ = [
    "IMPLEMENTATIONS",
    "REMAT_CHUNK",
    "FusedOptions",
    "default_options",
    "gru_sequence",
    "lstm_sequence",
    "run_fused",
    "unsupported_reason",
]
