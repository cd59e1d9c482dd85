"""Which implementation runs a recurrence, decided in one place.

:class:`rnnlab.RNN` runs every cell through one of three implementations, chosen once per
call from the cell type, the features the call uses and the backend (the pattern of
recurrentgemma's ``ScanType``):

* ``"scan"``: the cell's ``step`` under ``jax.lax.scan`` (:func:`rnnlab.scan.masked_scan`);
  every cell, every feature (padding, resets, step hooks such as zoneout, batch statistics).
* ``"fused"``: a whole-sequence ``custom_vjp`` whose weight gradients are single large
  matmuls (:mod:`rnnlab.fused`): LSTM (with or without projection) and reset-after GRU,
  with padding, resets from a given carry, the regulariser masks and reversal.
* ``"kernel"``: the fused path with its time loops as the compiled CPU kernels of the
  optional ``rnnlab-kernels`` package (:mod:`rnnlab.fused.kernel`), float32 and without
  projection.
* ``"parallel"``: linear recurrences (LRU, minGRU, minLSTM, RG-LRU, S6) solved over the
  whole sequence with :func:`rnnlab.scan.linear_scan` (associative scan off CPU), and the
  mLSTM's matrix memory in its chunkwise-parallel form (:mod:`rnnlab.layers.chunkwise`)
  and the Hawk block with its convolution window (:mod:`rnnlab.layers.convolved`).

``"auto"`` takes ``"parallel"`` for linear cells, ``"kernel"`` on CPU where the fused path
applies and the kernels are installed and cover the call, ``"fused"`` wherever else it
applies and the scan otherwise; :func:`recording` collects each fallback's reason so the
trainer can print it once in the run's header line.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from rnnlab import target
from rnnlab.cells.griffin import HawkCell
from rnnlab.cells.linear import LinearRecurrentCell
from rnnlab.layers import fused_path

IMPLEMENTATIONS = ("auto", "scan", "fused", "kernel", "parallel")

_LOCAL = threading.local()


def default_hoist() -> bool:
    """Whether the scan path computes the input projection for all steps before the loop.

    On GPU/TPU one large matmul beats ``T`` small ones. On XLA's CPU backend the per-step
    form measured faster: XLA fuses the per-step projection into the gate kernel, while a
    slice of a hoisted projection made that kernel about 4x slower (docs/performance.md).
    """
    return target.platform() != "cpu"


def hoist(requested: bool | None) -> bool:
    """The layer's ``hoist_input_projection`` setting, ``None`` resolved per backend."""
    return default_hoist() if requested is None else bool(requested)


def overrides_call(cell: Any) -> bool:
    """True when a subclass overrides ``__call__`` below the class that defines its step.

    The layers drive a cell through ``project`` and ``step_with``; such a subclass (a
    recurrent dropout written in ``__call__``, say) must run through its own ``__call__``,
    on the scan path, or it would be ignored.
    """
    mro = type(cell).__mro__
    owner = lambda name: next((k for k in mro if name in k.__dict__), object)  # noqa: E731
    call_owner, step_owner = owner("__call__"), owner("step_with")
    return call_owner is not step_owner and issubclass(call_owner, step_owner)


def check_implementation(implementation: str) -> str:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    return implementation


def choose(
    cell: Any,
    params: dict[str, Any],
    requested: str,
    *,
    resets: Any = None,
    step_transform: Any = None,
    step_inputs: Any = None,
    hoist: bool | None = None,
) -> tuple[str, str | None]:
    """``(implementation, reason)`` for one call; ``reason`` says why ``auto`` fell back.

    ``hoist`` is the layer's ``hoist_input_projection`` (``None``: per backend). A cell
    whose steps return extras for it to aggregate (:attr:`RecurrentCell.step_extras`, e.g.
    a batch-normalised cell in training) runs on the scan path, the one that collects them.
    Raises a ValueError when an explicitly requested implementation cannot run the call.
    """
    hooks = step_transform is not None or step_inputs is not None
    if requested == "scan":
        return "scan", None
    if overrides_call(cell):
        if requested != "auto":
            raise ValueError(
                f"implementation={requested!r} cannot run {type(cell).__name__}: it overrides "
                "__call__, which only the scan path calls; use 'scan' or 'auto', or override "
                "project and step_with instead"
            )
        return "scan", "an overridden __call__"
    if isinstance(cell, LinearRecurrentCell):
        if requested in ("fused", "kernel"):
            raise ValueError(
                f"implementation={requested!r} has no form for {type(cell).__name__}; "
                "use 'parallel' (linear recurrences) or 'scan'"
            )
        if not hooks:
            return "parallel", None
        if requested == "parallel":
            raise ValueError("implementation='parallel' does not support a step_transform hook")
        return "scan", "a step_transform or step_inputs hook"
    if isinstance(cell, HawkCell):
        # Linear in its state (RG-LRU plus a shift register): its own parallel form.
        if requested in ("fused", "kernel") or (requested == "parallel" and hooks):
            why = "a step_transform or step_inputs hook" if hooks else "HawkCell"
            raise ValueError(f"implementation={requested!r} does not support {why}")
        return ("scan", "a step_transform or step_inputs hook") if hooks else ("parallel", None)
    if getattr(cell, "chunkwise", False):
        # Linear in its state but not diagonal (the mLSTM's matrix memory): its own
        # chunkwise-parallel form, which has no term for a restart from a full carry.
        why = "a step_transform or step_inputs hook" if hooks else None
        why = why or ("resets" if resets is not None else None)
        if requested in ("fused", "kernel") or (requested == "parallel" and why):
            raise ValueError(
                f"implementation={requested!r} does not support "
                f"{why or type(cell).__name__}; use 'auto' or 'scan'"
            )
        return ("scan", why) if why else ("parallel", None)
    if requested == "parallel":
        raise ValueError(
            f"implementation='parallel' needs a cell linear in its state (LRU, minGRU, "
            f"minLSTM, RG-LRU, S6, mLSTM), got {type(cell).__name__}"
        )
    extras = bool(getattr(cell, "step_extras", False))
    why = f"per-step extras of {type(cell).__name__}" if extras else None
    if why is None:
        why = fused_path.unsupported_reason(
            cell, params, resets=resets, step_transform=step_transform, step_inputs=step_inputs
        )
    if why is not None and requested in ("fused", "kernel"):
        raise ValueError(f"implementation={requested!r} does not support {why}")
    if why is not None:
        return "scan", why
    if requested == "fused":
        return "fused", None
    why = fused_path.kernel_reason(cell, params, hoist)
    if why is None:
        return "kernel", None
    if requested == "kernel":
        raise ValueError(f"implementation='kernel' cannot run this call: {why}")
    # Off CPU the fused path is the designed one, not a fallback: no reason to report.
    return "fused", (f"no CPU kernel: {why}" if target.platform() == "cpu" else None)


def forward_mode_error(error: TypeError) -> bool:
    """True for JAX's refusal to apply forward-mode autodiff to a ``custom_vjp``."""
    return "forward-mode" in str(error) and "custom_vjp" in str(error)


def note(cell: Any, implementation: str, reason: str | None) -> None:
    """Records a decision in every active :func:`recording` (a no-op otherwise)."""
    for record in getattr(_LOCAL, "stack", ()):
        record.append((type(cell).__name__, implementation, reason))


@contextlib.contextmanager
def recording() -> Iterator[list[tuple[str, str, str | None]]]:
    """Collects ``(cell type, implementation, fallback reason)`` of every layer call traced
    inside the block, e.g. around ``jax.eval_shape`` of a model's forward pass."""
    record: list[tuple[str, str, str | None]] = []
    stack = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    stack.append(record)
    try:
        yield record
    finally:
        stack.remove(record)


def summary(record: list[tuple[str, str, str | None]]) -> str:
    """One line for a run header: ``"fused (2 LSTMCell)"`` or ``"scan (LSTMCell: zoneout)"``."""
    if not record:
        return "no recurrent layer"
    counts: dict[tuple[str, str, str | None], int] = {}
    for entry in record:
        counts[entry] = counts.get(entry, 0) + 1
    parts = []
    for (kind, impl, reason), n in counts.items():
        what = f"{n} {kind}" if n > 1 else kind
        parts.append(f"{impl} ({what}{': ' + reason if reason else ''})")
    return ", ".join(parts)
