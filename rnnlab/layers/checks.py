"""Argument checks of the sequence layers, done before tracing so errors name the argument."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.scan import valid_mask

Array = jax.Array
Carry = Any


def is_concrete(x) -> bool:
    """True for a value known at trace time (not a tracer)."""
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
        if is_concrete(seq_lengths):
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


def check_carry(
    cell: Any, carry: Carry, inputs: Array, batch: tuple[int, ...], argument: str = "initial_carry"
) -> Carry:
    """Checks a carry against the cell's own; returns it in the carry dtypes.

    Raises a ValueError naming ``argument`` with the expected and received leaf shapes.
    """
    features = tuple(inputs.shape[inputs.ndim - cell.num_feature_axes :])
    expected = jax.eval_shape(lambda: cell.initialize_carry(batch + features))
    want, treedef = jax.tree.flatten(expected)
    got = jax.tree.leaves(carry)
    if len(got) != len(want) or any(
        tuple(np.shape(g)) != w.shape for g, w in zip(got, want, strict=True)
    ):
        raise ValueError(
            f"{argument} must have the leaf shapes of {type(cell).__name__}.initialize_carry "
            f"{[w.shape for w in want]}, got {[tuple(np.shape(g)) for g in got]}"
        )
    return jax.tree.unflatten(
        treedef, [jnp.asarray(g, w.dtype) for g, w in zip(got, want, strict=True)]
    )


def valid_positions(seq_lengths: Array, inputs: Array, time_major: bool) -> Array:
    """Bool mask that broadcasts against ``inputs``: true at the steps before each length."""
    lengths = jnp.asarray(seq_lengths, jnp.int32)
    mask = valid_mask(lengths, inputs.shape[0 if time_major else lengths.ndim])  # [T, *batch]
    if not time_major:
        mask = jnp.moveaxis(mask, 0, -1)
    return mask.reshape(mask.shape + (1,) * (inputs.ndim - mask.ndim))
