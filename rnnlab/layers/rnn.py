"""The one sequence runner: :class:`RNN` runs any cell over a sequence.

Inputs are batch-major ``[*batch, time, features]``; the time loops are time-major
(:mod:`rnnlab.scan`, :mod:`rnnlab.fused`, :mod:`rnnlab.layers.associative`), so the layer
transposes once on the way in and once out. Which loop runs is decided once per call by
:func:`rnnlab.layers.dispatch.choose`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells.base import RecurrentCell
from rnnlab.cells.griffin import HawkCell
from rnnlab.layers import dispatch, fused_path
from rnnlab.layers.associative import METHODS, run_associative
from rnnlab.layers.checks import check_carry, check_sequence_args
from rnnlab.layers.chunkwise import run_chunkwise
from rnnlab.layers.convolved import run_hawk_parallel
from rnnlab.layers.stock import FlaxCell, follows_cell_contract
from rnnlab.scan import RematPolicy, masked_scan, reverse_valid, valid_mask

Array = jax.Array
Carry = Any


class RNN(nnx.Module):
    """Runs a cell over a sequence: step by step, fused, or time-parallel.

    Padding semantics with ``seq_lengths``: outputs at and past each length are zero, the
    returned carry is the carry after the last valid step, and ``reverse`` reverses only the
    valid part of each sequence. ``resets`` (bool ``[*batch, time]``) restart the state at
    marked steps from ``reset_carry`` (default: the initial carry): packed sequences, or
    stateful streams whose carry comes in from the previous batch while a new document
    starts from zeros.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import rnnlab
        >>> layer = rnnlab.RNN(rnnlab.cells.LSTMCell(4, 16, rngs=nnx.Rngs(0)))
        >>> y = layer(jnp.ones((2, 10, 4)), seq_lengths=jnp.array([10, 6]))
        >>> y.shape
        (2, 10, 16)

    Args:
      cell: an rnnlab :class:`~rnnlab.cells.RecurrentCell`, or any cell with Flax's cell
        contract (``cell(carry, x) -> (carry, y)``, ``initialize_carry``,
        ``num_feature_axes``; e.g. ``flax.nnx.GRUCell``), which runs on the scan path with
        rnnlab's padding, reset and reverse semantics.
      time_major: inputs are ``[time, *batch, features]``.
      reverse: process sequences from their last valid step to their first.
      keep_order: with ``reverse``, return outputs in the original time order (as Flax's
        ``keep_order``); otherwise they come in processing order.
      unroll: steps unrolled per scan iteration (scan path).
      return_carry: return ``(carry, outputs)`` instead of ``outputs``.
      hoist_input_projection: compute ``x W_ih`` for all steps before the loop, on the scan
        and the fused path; ``None`` chooses per backend
        (:func:`rnnlab.layers.dispatch.default_hoist`). ``False`` keeps the compiled CPU
        kernels out (they take every step's projection), so ``"auto"`` runs the fused loop.
      remat: rematerialisation in the backward pass (see :func:`rnnlab.scan.masked_scan`;
        the fused path then recomputes the gates in spans).
      implementation: ``"auto"`` (default), ``"scan"``, ``"fused"``, ``"kernel"`` (the fused
        path with the compiled CPU loops of ``rnnlab-kernels``) or ``"parallel"``; see
        :mod:`rnnlab.layers.dispatch`. ``"fused"`` is a ``custom_vjp``: forward-mode
        autodiff (``jax.jvp``, ``jax.jacfwd``) cannot go through it, so ``"auto"`` runs the
        scan path under forward mode and an explicit ``"fused"`` raises an error that says
        to use ``implementation="scan"``.
      scan_method: for ``"parallel"``: ``"auto"`` (sequential on CPU, associative
        elsewhere), ``"sequential"`` or ``"associative"``.
    """

    def __init__(
        self,
        cell: Any,
        *,
        time_major: bool = False,
        reverse: bool = False,
        keep_order: bool = False,
        unroll: int = 1,
        return_carry: bool = False,
        hoist_input_projection: bool | None = None,
        remat: RematPolicy = None,
        implementation: str = "auto",
        scan_method: str = "auto",
    ):
        if not isinstance(cell, RecurrentCell):
            if not follows_cell_contract(cell):
                raise ValueError(
                    "cell must be an rnnlab RecurrentCell or follow Flax's cell contract "
                    f"(__call__(carry, x), initialize_carry, num_feature_axes), got "
                    f"{type(cell).__name__}"
                )
            cell = FlaxCell(cell)
        self.implementation = dispatch.check_implementation(implementation)
        if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
            raise ValueError(f"unroll must be a positive int, got {unroll!r}")
        if scan_method not in METHODS:
            raise ValueError(f"scan_method must be one of {METHODS}, got {scan_method!r}")
        self.cell = cell
        self.time_major, self.reverse, self.keep_order = time_major, reverse, keep_order
        self.unroll, self.return_carry = unroll, return_carry
        self.hoist_input_projection, self.remat = hoist_input_projection, remat
        self.scan_method = scan_method

    @property
    def output_features(self) -> int:
        return self.cell.output_features

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Carry | None = None,
        seq_lengths: Array | None = None,
        resets: Array | None = None,
        reset_carry: Carry | None = None,
        return_carry: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
        params: dict[str, Array] | None = None,
        step_transform: Callable[[Callable], Callable] | None = None,
        step_inputs: Any = None,
        scan_method: str | None = None,
    ):
        """Runs the layer; ``params`` overrides the cell's parameters (e.g. weight drop).

        ``step_transform(step) -> step'`` wraps the per-step function inside the scan (e.g.
        zoneout). ``step_inputs`` is a pytree laid out like ``inputs`` (``[*batch, time,
        ...]``, or time first when ``time_major``); its slice at step ``t`` reaches the
        wrapped step as ``step'(carry, (x_t, s_t))``. Both are off by default and force the
        scan path.
        """
        cell = self.cell
        reverse = self.reverse if reverse is None else reverse
        keep_order = self.keep_order if keep_order is None else keep_order
        return_carry = self.return_carry if return_carry is None else return_carry
        batch, _ = check_sequence_args(
            inputs, cell.num_feature_axes, self.time_major, seq_lengths, resets
        )
        inputs = cell.promote_inputs(inputs)
        if initial_carry is None:
            features = tuple(inputs.shape[inputs.ndim - cell.num_feature_axes :])
            initial_carry = cell.initialize_carry(batch + features)
        else:
            initial_carry = check_carry(cell, initial_carry, inputs, batch)
        if reset_carry is not None:
            reset_carry = check_carry(cell, reset_carry, inputs, batch, "reset_carry")

        # The time axis follows the batch axes (a cell may have several feature axes).
        xs = inputs if self.time_major else jnp.moveaxis(inputs, len(batch), 0)
        if resets is not None and not self.time_major:
            resets = jnp.moveaxis(resets, -1, 0)
        if step_inputs is not None and not self.time_major:
            step_inputs = jax.tree.map(lambda s: jnp.moveaxis(s, len(batch), 0), step_inputs)
        if seq_lengths is not None:
            seq_lengths = jnp.asarray(seq_lengths, jnp.int32)

        if params is not None and dispatch.overrides_call(cell):
            raise ValueError(
                f"{type(cell).__name__} overrides __call__, which takes no params= override "
                "(weight drop, recurrent dropout): override project and step_with instead"
            )
        params = cell.cell_params() if params is None else params
        impl, why = dispatch.choose(
            cell,
            params,
            self.implementation,
            resets=resets,
            step_transform=step_transform,
            step_inputs=step_inputs,
            hoist=self.hoist_input_projection,
        )
        run = dict(seq_lengths=seq_lengths, resets=resets, reset_carry=reset_carry)
        carry = ys = None
        if impl in ("fused", "kernel"):
            try:
                carry, ys = fused_path.run_fused(
                    cell, params, xs, initial_carry, reverse=reverse, keep_order=True,
                    remat=self.remat, kernel=impl == "kernel",
                    hoist=self.hoist_input_projection, **run,
                )  # fmt: skip
            except TypeError as e:
                if not dispatch.forward_mode_error(e):
                    raise
                if self.implementation in ("fused", "kernel"):
                    raise ValueError(
                        f"implementation={self.implementation!r} cannot be differentiated in "
                        "forward mode (jax.jvp, jax.jacfwd): it is a custom_vjp; use "
                        "implementation='scan' (or 'auto', which does so by itself)"
                    ) from e
                impl, why = "scan", "forward-mode autodiff"
        elif impl == "parallel" and isinstance(cell, HawkCell):
            carry, ys = run_hawk_parallel(
                cell, params, xs, initial_carry, reverse=reverse, keep_order=True, **run
            )
        elif impl == "parallel" and getattr(cell, "chunkwise", False):
            carry, ys = run_chunkwise(
                cell, params, xs, initial_carry, reverse=reverse, keep_order=True,
                seq_lengths=seq_lengths,
            )  # fmt: skip
        elif impl == "parallel":
            carry, ys = run_associative(
                cell, params, xs, initial_carry, reverse=reverse, keep_order=True,
                method=self.scan_method if scan_method is None else scan_method, **run,
            )  # fmt: skip
        if impl == "scan":
            carry, ys = self._scan(
                params, xs, initial_carry, run, reverse, step_transform, step_inputs
            )
        dispatch.note(cell, impl, why)
        if reverse and not keep_order:
            ys = reverse_valid(ys, seq_lengths)
        if not self.time_major:
            ys = jax.tree.map(lambda y: jnp.moveaxis(y, 0, len(batch)), ys)
        return (carry, ys) if return_carry else ys

    def _scan(self, params, xs, carry, run, reverse, step_transform, step_inputs):
        """The step-by-step path (outputs in the original order, as masked_scan gives them)."""
        cell = self.cell
        if dispatch.overrides_call(cell):
            # A subclass's own __call__ (its recurrent dropout, say) is the step; it projects
            # its input itself, so nothing is hoisted.
            step = lambda c, x: cell(c, x)  # noqa: E731
            return self._loop(step, xs, carry, run, reverse, step_transform, step_inputs)
        hoisted = dispatch.hoist(self.hoist_input_projection)
        if hoisted:
            xs = cell.project(params, xs)
        projected = (lambda x: x) if hoisted else (lambda x: cell.project(params, x))
        if getattr(cell, "step_extras", False):
            hooked = step_transform is not None or step_inputs is not None
            return self._scan_with_extras(params, xs, carry, run, reverse, projected, hooked)
        step = lambda c, x: cell.step_with(params, c, projected(x))  # noqa: E731
        return self._loop(step, xs, carry, run, reverse, step_transform, step_inputs)

    def _scan_with_extras(self, params, xs, carry, run, reverse, projected, hooked):
        """The scan for a cell whose steps return extras (the cell contract's
        ``step_with_extras``): each step sees which examples are valid, and the cell
        aggregates the stacked extras after the sequence (``aggregate_extras``)."""
        cell = self.cell
        if hooked:
            raise ValueError(
                f"{type(cell).__name__} returns per-step extras here (step_extras) and takes "
                "no step_transform or step_inputs hook (zoneout)"
            )
        seq_lengths = run["seq_lengths"]
        num_steps = xs.shape[0]
        batch = jax.tree.leaves(carry)[0].shape[:-1]
        valid = (
            jnp.ones((num_steps,) + batch, jnp.bool_)
            if seq_lengths is None
            else valid_mask(seq_lengths, num_steps)
        )

        def step(c, inputs):
            x, m = inputs
            c, y, extra = cell.step_with_extras(
                params, c, projected(x), None if seq_lengths is None else m
            )
            return c, (y, extra)

        carry, (ys, extras) = masked_scan(
            step,
            carry,
            (xs, valid),
            seq_lengths=seq_lengths,
            resets=run["resets"],
            reset_carry=run["reset_carry"],
            reverse=reverse,
            unroll=self.unroll,
            remat=self.remat,
            extras=True,
        )
        cell.aggregate_extras(extras, valid)
        return carry, ys

    def _loop(self, step, xs, carry, run, reverse, step_transform, step_inputs):
        """``step`` under :func:`rnnlab.scan.masked_scan`, with the optional step hook."""
        if step_transform is not None:
            step = step_transform(step)
        if step_inputs is not None:
            xs = (xs, step_inputs)
        return masked_scan(
            step,
            carry,
            xs,
            seq_lengths=run["seq_lengths"],
            resets=run["resets"],
            reset_carry=run["reset_carry"],
            reverse=reverse,
            unroll=self.unroll,
            remat=self.remat,
        )
