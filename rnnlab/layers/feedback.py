"""Closed-loop recurrences: decoders whose next input is what they produced last.

A recurrence whose inputs are known in advance runs through :class:`~rnnlab.layers.RNN`,
which picks the scan, fused or time-parallel loop. A decoder that feeds back its own output
cannot: the input of step ``t`` exists only once step ``t - 1`` has run, so the input
projection cannot be hoisted out of the loop, nor the steps run in parallel::

    (s_t, y_t) = f(s_{t-1}, x_t),   x_t  may depend on  y_{t-1}

The attentional decoder of the translator (its context and scheduled-sampling token), the
forecaster's free run, sampling from a language model and the decoders of
:mod:`rnnlab.layers.decoding` are such loops. They all run through :func:`feedback_loop`,
so no model module keeps a time loop of its own. The forecaster and the language model
step their stacks with :meth:`StackedRNN.step <rnnlab.layers.StackedRNN.step>`; the
translator steps its one decoder cell itself, since attention sits between its steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

Carry = Any
StepFn = Callable[[Carry, Any], tuple[Carry, Any]]


def feedback_loop(
    step: StepFn,
    init: Carry,
    xs: Any = None,
    *,
    length: int | None = None,
    remat: bool = False,
) -> tuple[Carry, Any]:
    """Runs ``step(carry, x_t) -> (carry, y_t)`` over time; returns ``(final carry, ys)``.

    ``xs`` is a pytree of time-major leaves ``[T, ...]`` (``None`` leaves allowed, and
    ``xs=None`` with ``length``); ``ys`` stacks the per-step outputs on a leading time axis.
    ``remat=True`` recomputes each step in the backward pass instead of keeping its
    intermediates (``jax.checkpoint``): memory ``O(T)`` carries instead of ``O(T)``
    intermediates for a long teacher-forced decoder, at about one more forward pass.
    """
    if xs is None and length is None:
        raise ValueError("feedback_loop needs xs or length")
    if length is not None and (isinstance(length, bool) or int(length) < 0):
        raise ValueError(f"length must be an int >= 0, got {length!r}")
    body = jax.checkpoint(step) if remat else step
    return jax.lax.scan(body, init, xs, length=length)
