"""The fused implementation of :class:`rnnlab.RNN`: which cells and calls it covers, and
running the kernels of :mod:`rnnlab.fused` with the layer's semantics.

:func:`unsupported_reason` says why a configuration must take the general scan path (``None``
when the fused path applies); :func:`run_fused` runs it with the layer's semantics
(``seq_lengths``, ``reverse``, ``keep_order``, any batch shape). The per-backend choices
below were measured (docs/performance.md) and are the defaults of ``implementation="auto"``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from rnnlab import target
from rnnlab.cells.gru import GRUCell
from rnnlab.cells.lstm import LSTMCell
from rnnlab.fused import kernel as cpu_kernel
from rnnlab.fused.common import FusedOptions
from rnnlab.fused.gru import gru_sequence
from rnnlab.fused.lstm import lstm_sequence
from rnnlab.scan import reverse_resets, reverse_valid, valid_mask

Array = jax.Array

# The regulariser masks the cells read from their parameters (rnnlab.regularizers):
# weight drop needs no entry of its own (it is a masked kernel_hh).
_MASKS = frozenset({"recurrent_mask", "update_mask"})
_LSTM_PARAMS = frozenset({"kernel_ih", "kernel_hh", "bias", "kernel_proj"}) | _MASKS
_GRU_PARAMS = frozenset({"kernel_ih", "kernel_hh", "bias_ih", "bias_hh"}) | _MASKS

# Span of the recomputing backward pass: long enough for the weight-gradient products to run
# near the matmul peak, short enough that its [chunk, B, 4H] buffers stay small.
REMAT_CHUNK = 256


def _same_maths(cell: Any, base: type) -> bool:
    """True when ``cell`` computes exactly ``base``'s maths (a subclass may change a step)."""
    kind = type(cell)
    return isinstance(cell, base) and all(
        getattr(kind, name) is getattr(base, name) for name in ("project", "step_with")
    )


def unsupported_reason(
    cell: Any,
    params: dict[str, Array],
    *,
    resets: Array | None = None,
    step_transform: Any = None,
    step_inputs: Any = None,
) -> str | None:
    """Why ``cell`` with these arguments needs the scan path, or ``None`` if fused applies.

    The fused path covers :class:`~rnnlab.cells.LSTMCell` (with or without
    ``proj_features``) and :class:`~rnnlab.cells.GRUCell` with ``reset_after=True``, with
    padding, resets (``resets`` is accepted whatever its value), reversal and the
    regulariser masks ``recurrent_mask`` / ``update_mask`` in ``params`` (weight drop is a
    different ``kernel_hh``). The reason is a short phrase for a run's header line.
    """
    del resets  # every reset pattern is supported
    if _same_maths(cell, LSTMCell):
        allowed = _LSTM_PARAMS
    elif _same_maths(cell, GRUCell):
        if not cell.reset_after:
            return "GRU with reset_after=False"
        allowed = _GRU_PARAMS
    else:
        return f"no fused form of {type(cell).__name__}"
    extra = set(params) - allowed
    if extra:
        return f"extra cell parameters {sorted(extra)}"
    if step_transform is not None or step_inputs is not None:
        return "a step_transform or step_inputs hook (zoneout)"
    return None


def kernel_reason(cell: Any, params: dict[str, Array], hoist: bool | None = None) -> str | None:
    """Why the compiled CPU kernels cannot run a call the fused path covers (``None``: they
    can). They run float32 LSTM (without projection) and reset-after GRU loops with
    padding, resets and the regulariser masks; reversal is done around them. They take the
    input projection of every step computed before the loop, so a layer that asks for
    ``hoist_input_projection=False`` runs the fused loop instead."""
    if hoist is not None and not hoist:
        return "hoist_input_projection=False (the kernels take every step's projection)"
    if target.platform() != "cpu":
        return f"the kernels are CPU-only (target platform {target.platform()})"
    if target.portable():
        return "a portable export (no custom calls of rnnlab-kernels)"
    if target.devices() > 1:
        # The custom call has no partitioning rule: XLA would gather the batch and run it
        # whole on every device (measured about 2.5x slower than the fused path on 8).
        return f"the step is split over {target.devices()} devices"
    if "kernel_proj" in params:
        return "projection (kernel_proj)"
    if jnp.dtype(cell.compute_dtype) != jnp.float32:
        return f"compute dtype {jnp.dtype(cell.compute_dtype).name} (the kernels are float32)"
    return cpu_kernel.unavailable_reason()


def default_options(
    cell: Any, remat: Any = None, kernel: bool = False, hoist: bool | None = None
) -> FusedOptions:
    """Measured per-backend options for ``cell``; any ``remat`` policy recomputes the gates;
    ``kernel`` runs the time loops as the compiled CPU kernels (:func:`kernel_reason`);
    ``hoist`` is the layer's ``hoist_input_projection`` (``None``: per backend)."""
    on_cpu = target.platform() == "cpu"
    common = dict(
        dtype=cell.compute_dtype,
        # XLA:CPU runs a per-step x W_ih product faster than a slice of a hoisted one even
        # with prefetching; elsewhere one large product wins.
        hoist=not on_cpu if hoist is None else bool(hoist),
        prefetch=on_cpu,
    )
    recompute = remat not in (None, "none")
    common.update(recompute=recompute, chunk=REMAT_CHUNK if recompute else None, kernel=kernel)
    return FusedOptions(**common)


def _flat_mask(mask: Array | None, batch: tuple[int, ...], flat: int) -> Array | None:
    """A ``[*batch, F]`` (or broadcastable) regulariser mask as float32 ``[flat, F]``."""
    if mask is None:
        return None
    mask = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), batch + mask.shape[-1:])
    return mask.reshape((flat, mask.shape[-1]))


def run_fused(
    cell: Any,
    params: dict[str, Array],
    xs: Array,
    initial_carry: Any,
    *,
    seq_lengths: Array | None = None,
    resets: Array | None = None,
    reset_carry: Any = None,
    reverse: bool = False,
    keep_order: bool = True,
    options: FusedOptions | None = None,
    remat: Any = None,
    kernel: bool = False,
    hoist: bool | None = None,
) -> tuple[Any, Array]:
    """Runs ``cell`` over time-major ``xs [T, *batch, I]`` on the fused path.

    Semantics match :func:`rnnlab.scan.masked_scan` as used by :class:`rnnlab.RNN`: outputs
    past ``seq_lengths`` are zero, the carry is the one after the last valid step, and
    ``reverse`` processes the valid part of each sequence backwards (outputs in the original
    order when ``keep_order``). ``resets [T, *batch]`` (bool) restarts the state from
    ``reset_carry`` (same structure as the carry, broadcastable to it; ``None``:
    ``initial_carry``) before each flagged step; a flag at a padded step has no effect, and
    in a reversed pass the flags still mark segment starts in forward order. Gradients flow
    to ``reset_carry`` from the steps that restart from it. Regulariser masks and the
    projection come in ``params`` (see :func:`unsupported_reason`). ``kernel`` runs the time
    loops as the compiled CPU kernels (see :func:`kernel_reason`; ignored with ``options``)
    and ``hoist`` computes the input projection of all steps before the loop (``None``: per
    backend, as :func:`default_options`; ignored with ``options``).
    """
    options = default_options(cell, remat, kernel, hoist) if options is None else options
    num_steps, batch = xs.shape[0], xs.shape[1:-1]
    flat = math.prod(batch)

    def to_flat(a):
        return a.reshape((flat,) + a.shape[len(batch) :])

    if resets is not None:
        resets = jnp.broadcast_to(jnp.asarray(resets, bool), (num_steps,) + batch)
        if reverse:
            resets = reverse_resets(resets, seq_lengths)
        resets = resets.reshape((num_steps, flat))
        if reset_carry is not None:
            reset_carry = jax.tree.map(
                lambda r, c: to_flat(jnp.broadcast_to(r, c.shape)).astype(jnp.float32),
                reset_carry,
                initial_carry,
            )
    if reverse:
        xs = reverse_valid(xs, seq_lengths)
    xs = xs.reshape((num_steps, flat, xs.shape[-1]))
    mask = None
    if seq_lengths is not None:
        mask = valid_mask(seq_lengths.reshape(flat), num_steps)
    params = dict(params)
    for name in _MASKS & set(params):
        params[name] = _flat_mask(params[name], batch, flat)
    carry = jax.tree.map(lambda a: to_flat(a).astype(jnp.float32), initial_carry)
    kwargs = dict(resets=resets, reset_carry=reset_carry, options=options)
    if isinstance(cell, GRUCell):
        carry, ys = gru_sequence(params, xs, carry, mask, **kwargs)
    else:
        if reset_carry is not None:
            kwargs["reset_carry"] = tuple(reset_carry)
        carry, ys = lstm_sequence(params, xs, tuple(carry), mask, **kwargs)
    ys = ys.astype(cell.compute_dtype).reshape((num_steps,) + batch + ys.shape[-1:])
    if reverse and keep_order:
        ys = reverse_valid(ys, seq_lengths)
    carry = jax.tree.map(lambda a: a.reshape(batch + a.shape[1:]), carry)
    return carry, ys
