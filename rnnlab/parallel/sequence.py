"""Sequence parallelism for linear recurrences: one long sequence split across devices.

A linear recurrence ``h_t = a_t * h_{t-1} + b_t`` is a chain of affine maps
``h -> a h + b``, and composing affine maps is associative:
``(a_1, b_1) . (a_2, b_2) = (a_1 a_2, a_2 b_1 + b_2)`` (Blelloch, 1990, "Prefix sums and
their applications"; Martin & Cundy, 2018, "Parallelizing linear recurrent neural nets over
sequence length"). So a sequence of ``T`` steps split into ``n`` chunks over ``n`` devices
is solved in three phases:

1. each device runs an associative scan over its own chunk, giving for every local step
   ``t`` the map ``h_t = A_t * h_start + B_t`` from the state before the chunk;
2. the chunk summaries ``(A_last, B_last)`` (one state-sized pair per device) are
   all-gathered and prefix-combined, which gives every device the state ``h_start`` at the
   end of the preceding chunks;
3. each device fixes up its chunk: ``h_t = A_t * h_start + B_t``.

Only phase 2 communicates, ``2 x n`` states per device regardless of ``T``. Nonlinear
recurrences (LSTM, GRU) have no such decomposition, so they cannot be split this way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P


def _combine(left, right):
    a_l, b_l = left
    a_r, b_r = right
    return a_l * a_r, a_r * b_l + b_r


def sequence_parallel_linear_scan(
    a: jax.Array,
    b: jax.Array,
    mesh: Mesh,
    axis: str,
    h0: jax.Array | None = None,
    *,
    spec: P | None = None,
) -> jax.Array:
    """Solves ``h_t = a_t * h_{t-1} + b_t`` with the time axis split over mesh ``axis``.

    Equal (up to float rounding) to ``rnnlab.scan.linear_scan(a, b, h0)``, and
    differentiable (the all-gather transposes into a reduce-scatter).

    Args:
      a: decay, time-major ``[time, ...]`` (real or complex); ``time`` must be divisible by
        the size of ``axis``.
      b: input, broadcast-compatible with ``a``.
      mesh: the device mesh.
      axis: the mesh axis that splits time.
      h0: optional initial state ``[...]`` (the shape of one step).
      spec: optional full PartitionSpec of ``a`` and ``b`` to also split other dimensions
        (for example ``P("seq", "data")`` for ``[time, batch, features]``); its first entry
        must be ``axis``. Defaults to ``P(axis)``.

    Returns:
      ``h`` with the shape of ``b`` broadcast against ``a``, sharded like the inputs.

    Raises:
      ValueError: unknown axis, a time length not divisible by the axis size, a spec whose
        first entry is not ``axis``, or an ``h0`` of the wrong shape.
    """
    if axis not in mesh.shape:
        raise ValueError(
            f"axis must be one of the mesh axes {tuple(mesh.axis_names)}, got {axis!r}"
        )
    a, b = jnp.broadcast_arrays(jnp.asarray(a), jnp.asarray(b))
    if a.ndim < 1:
        raise ValueError(f"a and b must have a leading time axis, got shape {a.shape}")
    n = mesh.shape[axis]
    if a.shape[0] % n:
        raise ValueError(
            f"the time length {a.shape[0]} of a and b must be divisible by the size {n} of "
            f"mesh axis {axis!r}"
        )
    spec = P(axis) if spec is None else spec
    if len(spec) < 1 or spec[0] != axis:
        raise ValueError(f"spec must start with the time axis {axis!r}, got {spec}")
    if h0 is None:
        h0 = jnp.zeros(a.shape[1:], a.dtype)
    h0 = jnp.asarray(h0, a.dtype)
    if h0.shape != a.shape[1:]:
        raise ValueError(f"h0 must have the shape of one step {a.shape[1:]}, got {h0.shape}")
    state_spec = P(*spec[1:])

    def chunk(a, b, h0):
        # Phase 1: maps from the state before this chunk to every state inside it.
        cum_a, cum_b = jax.lax.associative_scan(_combine, (a, b), axis=0)
        # Phase 2: every chunk's summary, then the state at the end of each chunk.
        all_a = jax.lax.all_gather(cum_a[-1], axis)
        all_b = jax.lax.all_gather(cum_b[-1], axis)
        pre_a, pre_b = jax.lax.associative_scan(_combine, (all_a, all_b), axis=0)
        ends = pre_a * h0[None] + pre_b
        index = jax.lax.axis_index(axis)
        previous = jax.lax.dynamic_index_in_dim(ends, jnp.maximum(index - 1, 0), keepdims=False)
        h_start = jnp.where(index == 0, h0, previous)
        # Phase 3: fix up the chunk with the true starting state.
        return cum_a * h_start[None] + cum_b

    return jax.shard_map(chunk, mesh=mesh, in_specs=(spec, spec, state_spec), out_specs=spec)(
        a, b, h0
    )
