"""Sequence layers: run a cell over time (:class:`RNN`), both ways (:class:`Bidirectional`),
and in depth (:class:`StackedRNN`).

Inputs are batch-major ``[*batch, time, features]``; the time loop itself is time-major
(:func:`rnnlab.scan.masked_scan`), so a layer transposes once on the way in and once out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rnnlab import fused
from rnnlab.cells.base import RecurrentCell
from rnnlab.cells.registry import make_cell
from rnnlab.scan import RematPolicy, masked_scan, reverse_valid, valid_mask

Array = jax.Array
Carry = Any


def default_hoist() -> bool:
    """Whether to compute the input projection for all steps before the scan.

    On GPU/TPU one large matmul beats ``T`` small ones. On XLA's CPU backend the per-step
    form measured faster: XLA fuses the per-step projection into the gate kernel, while a
    slice of a hoisted projection made that kernel about 4x slower (docs/performance.md).
    """
    return jax.default_backend() != "cpu"


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_sequence_args(
    inputs: Array,
    num_feature_axes: int,
    time_major: bool,
    seq_lengths: Array | None,
    resets: Array | None,
) -> tuple[tuple[int, ...], int]:
    """Validates layer arguments before tracing; returns ``(batch_shape, num_steps)``."""
    if inputs.ndim < num_feature_axes + 1:
        raise ValueError(
            f"inputs must be [*batch, time, features] (at least {num_feature_axes + 1} axes), "
            f"got shape {tuple(inputs.shape)}"
        )
    if time_major:
        num_steps, batch = inputs.shape[0], tuple(inputs.shape[1 : inputs.ndim - num_feature_axes])
    else:
        t_axis = inputs.ndim - num_feature_axes - 1
        num_steps, batch = inputs.shape[t_axis], tuple(inputs.shape[:t_axis])
    if num_steps == 0 or 0 in batch:
        # The time loop cannot run zero steps, and an empty batch is a data bug to report.
        raise ValueError(
            f"inputs must hold at least one sequence and one time step, got shape "
            f"{tuple(inputs.shape)} (batch {batch}, {num_steps} steps)"
        )
    if seq_lengths is not None:
        if tuple(np.shape(seq_lengths)) != batch:
            raise ValueError(
                f"seq_lengths must have the batch shape {batch}, got {tuple(np.shape(seq_lengths))}"
            )
        if not jnp.issubdtype(jnp.asarray(seq_lengths).dtype, jnp.integer):
            raise ValueError(
                f"seq_lengths must be integers, got dtype {jnp.asarray(seq_lengths).dtype}"
            )
        if _is_concrete(seq_lengths):
            lengths = np.asarray(seq_lengths)
            if lengths.size and (lengths.min() < 0 or lengths.max() > num_steps):
                raise ValueError(
                    f"seq_lengths must lie in [0, {num_steps}] (the time axis), got values "
                    f"from {lengths.min()} to {lengths.max()}"
                )
    if resets is not None:
        expected = (num_steps,) + batch if time_major else batch + (num_steps,)
        if tuple(np.shape(resets)) != expected:
            raise ValueError(f"resets must have shape {expected}, got {tuple(np.shape(resets))}")
        if jnp.asarray(resets).dtype != jnp.bool_:
            raise ValueError(f"resets must be bool, got dtype {jnp.asarray(resets).dtype}")
    return batch, num_steps


def check_initial_carry(
    cell: RecurrentCell, initial_carry: Carry, inputs: Array, batch: tuple[int, ...]
) -> Carry:
    """Checks ``initial_carry`` against the cell's own carry; returns it in the carry dtypes.

    Raises a ValueError naming the expected and received leaf shapes, before tracing.
    """
    features = tuple(inputs.shape[inputs.ndim - cell.num_feature_axes :])
    expected = jax.eval_shape(lambda: cell.initialize_carry(batch + features))
    want, treedef = jax.tree.flatten(expected)
    got = jax.tree.leaves(initial_carry)
    if len(got) != len(want) or any(
        tuple(np.shape(g)) != w.shape for g, w in zip(got, want, strict=True)
    ):
        raise ValueError(
            f"initial_carry must have the leaf shapes of {type(cell).__name__}.initialize_carry "
            f"{[w.shape for w in want]}, got {[tuple(np.shape(g)) for g in got]}"
        )
    return jax.tree.unflatten(
        treedef, [jnp.asarray(g, w.dtype) for g, w in zip(got, want, strict=True)]
    )


class RNN(nnx.Module):
    """Runs a cell over a sequence with ``jax.lax.scan``.

    Padding semantics with ``seq_lengths``: outputs at and past each length are zero, the
    returned carry is the carry after the last valid step, and ``reverse`` reverses only the
    valid part of each sequence. ``resets`` (bool ``[*batch, time]``) restarts the state from
    the initial carry at marked steps, for packed sequences.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import rnnlab
        >>> layer = rnnlab.RNN(rnnlab.cells.LSTMCell(4, 16, rngs=nnx.Rngs(0)))
        >>> y = layer(jnp.ones((2, 10, 4)), seq_lengths=jnp.array([10, 6]))
        >>> y.shape
        (2, 10, 16)

    Args:
      cell: an rnnlab :class:`~rnnlab.cells.RecurrentCell`.
      time_major: inputs are ``[time, *batch, features]``.
      reverse: process sequences from their last valid step to their first.
      keep_order: with ``reverse``, return outputs in the original time order (as Flax's
        ``keep_order``); otherwise they come in processing order.
      unroll: steps unrolled per scan iteration.
      return_carry: return ``(carry, outputs)`` instead of ``outputs``.
      hoist_input_projection: compute ``x W_ih`` for all steps before the scan; ``None``
        chooses per backend (:func:`default_hoist`).
      remat: rematerialisation of the scan body (see :func:`rnnlab.scan.masked_scan`).
      implementation: ``"scan"`` runs the cell step by step under ``lax.scan``; ``"fused"``
        runs the whole sequence in one ``custom_vjp`` with the weight gradients as single
        large matmuls (:mod:`rnnlab.fused`; LSTM without projection and reset-after GRU, no
        resets or step hooks; ``remat`` then recomputes the gates in the backward pass);
        ``"auto"`` (default) takes the fused path wherever it applies and the scan
        otherwise.
    """

    def __init__(
        self,
        cell: RecurrentCell,
        *,
        time_major: bool = False,
        reverse: bool = False,
        keep_order: bool = False,
        unroll: int = 1,
        return_carry: bool = False,
        hoist_input_projection: bool | None = None,
        remat: RematPolicy = None,
        implementation: str = "auto",
    ):
        if not isinstance(cell, RecurrentCell):
            raise ValueError(f"cell must be an rnnlab RecurrentCell, got {type(cell).__name__}")
        if implementation not in fused.IMPLEMENTATIONS:
            raise ValueError(
                f"implementation must be one of {fused.IMPLEMENTATIONS}, got {implementation!r}"
            )
        self.implementation = implementation
        if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
            raise ValueError(f"unroll must be a positive int, got {unroll!r}")
        self.cell = cell
        self.time_major, self.reverse, self.keep_order = time_major, reverse, keep_order
        self.unroll, self.return_carry = unroll, return_carry
        self.hoist_input_projection, self.remat = hoist_input_projection, remat

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
        return_carry: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
        params: dict[str, Array] | None = None,
        step_transform: Callable[[Callable], Callable] | None = None,
        step_inputs: Any = None,
    ):
        """Runs the layer; ``params`` overrides the cell's parameters (e.g. weight drop).

        ``step_transform(step) -> step'`` wraps the per-step function inside the scan (e.g.
        zoneout). ``step_inputs`` is a pytree laid out like ``inputs`` (``[*batch, time,
        ...]``, or time first when ``time_major``); its slice at step ``t`` reaches the
        wrapped step as ``step'(carry, (x_t, s_t))``. Both are off by default.
        """
        cell = self.cell
        reverse = self.reverse if reverse is None else reverse
        keep_order = self.keep_order if keep_order is None else keep_order
        return_carry = self.return_carry if return_carry is None else return_carry
        batch, _ = check_sequence_args(
            inputs, cell.num_feature_axes, self.time_major, seq_lengths, resets
        )
        cell.check_inputs(inputs)
        if initial_carry is not None:
            initial_carry = check_initial_carry(cell, initial_carry, inputs, batch)
        if initial_carry is None:
            features = tuple(inputs.shape[inputs.ndim - cell.num_feature_axes :])
            initial_carry = cell.initialize_carry(batch + features)

        # The time axis follows the batch axes (a cell may have several feature axes).
        xs = inputs if self.time_major else jnp.moveaxis(inputs, len(batch), 0)
        if resets is not None and not self.time_major:
            resets = jnp.moveaxis(resets, -1, 0)
        if step_inputs is not None and not self.time_major:
            step_inputs = jax.tree.map(lambda s: jnp.moveaxis(s, len(batch), 0), step_inputs)
        if seq_lengths is not None:
            seq_lengths = jnp.asarray(seq_lengths, jnp.int32)

        params = cell.cell_params() if params is None else params
        if self.implementation != "scan":
            why = fused.unsupported_reason(
                cell, params, resets=resets, step_transform=step_transform, step_inputs=step_inputs
            )
            if why is not None and self.implementation == "fused":
                raise ValueError(f"implementation='fused' does not support {why}")
            if why is None:
                carry, ys = fused.run_fused(
                    cell, params, xs, initial_carry, seq_lengths=seq_lengths, resets=resets,
                    reverse=reverse, keep_order=keep_order, remat=self.remat,
                )  # fmt: skip
                if not self.time_major:
                    ys = jnp.moveaxis(ys, 0, len(batch))
                return (carry, ys) if return_carry else ys
        hoist = (
            default_hoist() if self.hoist_input_projection is None else self.hoist_input_projection
        )
        if hoist:
            xs = cell.project(params, xs)
            step = lambda carry, xp: cell.step_with(params, carry, xp)
        else:
            step = lambda carry, x: cell.step_with(params, carry, cell.project(params, x))
        if step_transform is not None:
            step = step_transform(step)
        if step_inputs is not None:
            xs = (xs, step_inputs)

        carry, ys = masked_scan(
            step,
            initial_carry,
            xs,
            seq_lengths=seq_lengths,
            resets=resets,
            reverse=reverse,
            unroll=self.unroll,
            remat=self.remat,
        )
        if reverse and not keep_order:
            ys = reverse_valid(ys, seq_lengths)
        if not self.time_major:
            ys = jax.tree.map(lambda y: jnp.moveaxis(y, 0, len(batch)), ys)
        return (carry, ys) if return_carry else ys


MERGES: dict[str, Callable[[Array, Array], Array]] = {
    "concat": lambda a, b: jnp.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
}


class Bidirectional(nnx.Module):
    """Runs one RNN forward and another backward and merges their aligned outputs.

    The backward layer reverses only the valid part of each sequence, so with
    ``seq_lengths`` output ``t`` of both directions refers to the same input step.
    ``merge`` is ``"concat"`` (default), ``"sum"`` or a callable ``(fwd, bwd) -> out``.
    The carry is the pair ``(forward_carry, backward_carry)``.
    """

    def __init__(
        self,
        forward_rnn: RNN,
        backward_rnn: RNN,
        *,
        merge: str | Callable[[Array, Array], Array] = "concat",
        return_carry: bool = False,
    ):
        if isinstance(merge, str) and merge not in MERGES:
            raise ValueError(f"merge must be one of {sorted(MERGES)} or a callable, got {merge!r}")
        self.forward_rnn, self.backward_rnn = forward_rnn, backward_rnn
        self.merge = merge
        self.return_carry = return_carry

    @property
    def output_features(self) -> int:
        f, b = self.forward_rnn.output_features, self.backward_rnn.output_features
        return f + b if self.merge == "concat" else f

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: tuple[Carry, Carry] | None = None,
        seq_lengths: Array | None = None,
        resets: Array | None = None,
        return_carry: bool | None = None,
    ):
        return_carry = self.return_carry if return_carry is None else return_carry
        c_f, c_b = (None, None) if initial_carry is None else initial_carry
        kw = dict(seq_lengths=seq_lengths, resets=resets, return_carry=True)
        carry_f, y_f = self.forward_rnn(inputs, initial_carry=c_f, reverse=False, **kw)
        carry_b, y_b = self.backward_rnn(
            inputs, initial_carry=c_b, reverse=True, keep_order=True, **kw
        )
        merge = MERGES[self.merge] if isinstance(self.merge, str) else self.merge
        out = merge(y_f, y_b)
        return ((carry_f, carry_b), out) if return_carry else out


def _valid_positions(seq_lengths: Array, inputs: Array, time_major: bool) -> Array:
    """Bool mask that broadcasts against ``inputs``: true at the steps before each length."""
    lengths = jnp.asarray(seq_lengths, jnp.int32)
    mask = valid_mask(lengths, inputs.shape[0 if time_major else lengths.ndim])  # [T, *batch]
    if not time_major:
        mask = jnp.moveaxis(mask, 0, -1)
    return mask.reshape(mask.shape + (1,) * (inputs.ndim - mask.ndim))


class StackedRNN(nnx.Module):
    """``num_layers`` recurrent layers in depth, optionally bidirectional and residual.

    Args:
      in_features: input size of the first layer.
      hidden_features: cell size of every layer.
      num_layers: depth.
      cell: a registered cell name (``"lstm"``, ``"gru"``, ``"simple"``, ``"irnn"``, ...) or a
        callable ``(in_features, hidden_features, rngs=...) -> RecurrentCell``.
      cell_kwargs: extra arguments for every cell (e.g. ``proj_features``, ``dtype``).
      bidirectional: each layer is a :class:`Bidirectional` pair.
      merge: how bidirectional outputs merge (``"concat"`` or ``"sum"``).
      residual: add each layer's input to its output wherever their sizes match
        (Wu et al. 2016 use it from the third layer on; here it applies wherever it can).
      dropout: dropout rate between layers (not after the last), as in PyTorch.
      rnn_kwargs: passed to every :class:`RNN` (``unroll``, ``hoist_input_projection``,
        ``remat``).
      rngs: parameter and dropout streams.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        num_layers: int = 1,
        *,
        cell: str | Callable[..., RecurrentCell] = "lstm",
        cell_kwargs: dict[str, Any] | None = None,
        bidirectional: bool = False,
        merge: str = "concat",
        residual: bool = False,
        dropout: float = 0.0,
        rnn_kwargs: dict[str, Any] | None = None,
        rngs: nnx.Rngs,
    ):
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        cell_kwargs, rnn_kwargs = dict(cell_kwargs or {}), dict(rnn_kwargs or {})
        build = (
            (lambda i, h: make_cell(cell, i, h, rngs=rngs, **cell_kwargs))
            if isinstance(cell, str)
            else (lambda i, h: cell(i, h, rngs=rngs, **cell_kwargs))
        )
        layers, size = [], in_features
        for _ in range(num_layers):
            if bidirectional:
                layer = Bidirectional(
                    RNN(build(size, hidden_features), **rnn_kwargs),
                    RNN(build(size, hidden_features), **rnn_kwargs),
                    merge=merge,
                )
            else:
                layer = RNN(build(size, hidden_features), **rnn_kwargs)
            layers.append(layer)
            size = layer.output_features
        self.layers = nnx.List(layers)
        self.in_features, self.hidden_features = in_features, hidden_features
        self.num_layers, self.residual, self.dropout_rate = num_layers, residual, dropout
        self.bidirectional = bidirectional
        self.dropout = nnx.Dropout(dropout)

    @property
    def output_features(self) -> int:
        return self.layers[-1].output_features

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Sequence[Carry] | None = None,
        seq_lengths: Array | None = None,
        resets: Array | None = None,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        return_carry: bool = False,
    ):
        """Runs all layers; ``initial_carry`` and the returned carry hold one entry per layer."""
        if initial_carry is not None and len(initial_carry) != self.num_layers:
            raise ValueError(
                f"initial_carry must hold one carry per layer ({self.num_layers}), "
                f"got {len(initial_carry)}"
            )
        valid = None
        if self.residual and seq_lengths is not None:
            first = self.layers[0]
            time_major = (first if isinstance(first, RNN) else first.forward_rnn).time_major
            valid = _valid_positions(seq_lengths, inputs, time_major)
        x, carries = inputs, []
        for i, layer in enumerate(self.layers):
            c0 = None if initial_carry is None else initial_carry[i]
            carry, y = layer(
                x, initial_carry=c0, seq_lengths=seq_lengths, resets=resets, return_carry=True
            )
            if self.residual and y.shape == x.shape:
                # The layer zeroed its padded outputs; the residual must not refill them.
                y = y + (x if valid is None else jnp.where(valid, x, 0)).astype(y.dtype)
            if i < self.num_layers - 1 and self.dropout_rate > 0:
                y = self.dropout(y, deterministic=deterministic, rngs=rngs)
            carries.append(carry)
            x = y
        return (carries, x) if return_carry else x
