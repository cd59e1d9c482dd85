"""Time loops for recurrences: a masked sequential scan and an associative linear scan.

Everything here is a pure function of arrays. Sequences are **time-major** inside these
functions (`[time, *batch, ...]`); the public layers in :mod:`rnnlab.layers` take batch-major
input and transpose once.

Two loops cover every recurrence in rnnlab:

* :func:`masked_scan` runs any step function ``step(carry, x_t) -> (carry, y_t)`` with
  ``jax.lax.scan``, adding padding semantics (``seq_lengths``), in-sequence state resets
  (packed sequences), reversal of the valid part only, unrolling and rematerialisation.
* :func:`linear_scan` solves the linear recurrence ``h_t = a_t * h_{t-1} + b_t`` either
  sequentially or time-parallel with ``jax.lax.associative_scan`` (Blelloch 1990), which is
  how LRU and minGRU-style layers train; :func:`sequence_parallel_linear_scan` solves the
  same recurrence with the time axis split over the devices of a mesh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from rnnlab import target

Carry = Any
StepFn = Callable[[Carry, Any], tuple[Carry, Any]]

RematPolicy = Literal["none", "full", "dots_saveable", "nothing_saveable"] | None

_POLICIES = {
    "full": None,
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
}


def _expand_to(mask: jax.Array, leaf: jax.Array) -> jax.Array:
    """Appends trailing singleton axes so a ``[*batch]`` mask broadcasts against ``leaf``."""
    return mask.reshape(mask.shape + (1,) * (leaf.ndim - mask.ndim))


def tree_where(mask: jax.Array, on_true: Carry, on_false: Carry) -> Carry:
    """``jnp.where`` over matching pytrees with a ``[*batch]`` mask broadcast per leaf."""
    return jax.tree.map(lambda a, b: jnp.where(_expand_to(mask, a), a, b), on_true, on_false)


def valid_mask(seq_lengths: jax.Array, num_steps: int) -> jax.Array:
    """Time-major validity mask: ``mask[t, *b] = t < seq_lengths[*b]``."""
    steps = jnp.arange(num_steps, dtype=seq_lengths.dtype)
    return steps.reshape((num_steps,) + (1,) * seq_lengths.ndim) < seq_lengths[None]


def reverse_valid(xs: Any, seq_lengths: jax.Array | None) -> Any:
    """Reverses each sequence in time-major ``xs`` within its valid prefix.

    For a sequence of length ``L`` padded to ``T`` steps, position ``t < L`` takes the value at
    ``L - 1 - t`` and the padding stays where it is. The map is its own inverse, so applying
    it to the outputs of a scan over reversed inputs restores the original order.
    """
    if seq_lengths is None:
        return jax.tree.map(lambda x: jnp.flip(x, axis=0), xs)
    leaves = jax.tree.leaves(xs)
    num_steps = leaves[0].shape[0]
    t = jnp.arange(num_steps, dtype=jnp.int32).reshape((num_steps,) + (1,) * seq_lengths.ndim)
    lengths = seq_lengths.astype(jnp.int32)[None]
    idx = jnp.where(t < lengths, lengths - 1 - t, t)  # [T, *batch]

    def gather(x):
        ix = idx.reshape(idx.shape + (1,) * (x.ndim - idx.ndim))
        ix = jnp.broadcast_to(ix, idx.shape + x.shape[idx.ndim :])
        return jnp.take_along_axis(x, ix, axis=0)

    return jax.tree.map(gather, xs)


def reverse_resets(resets: jax.Array, seq_lengths: jax.Array | None) -> jax.Array:
    """Reset flags for a reversed pass: a segment that starts at ``t+1`` ends at ``t``.

    Walking backwards, the state must restart on the last step of every segment, that is on
    step ``t`` whenever step ``t + 1`` starts a new segment (or is padding).
    """
    shifted = jnp.concatenate([resets[1:], jnp.zeros_like(resets[:1])], axis=0)
    if seq_lengths is not None:
        # The last valid step of each sequence never needs a reset: nothing came before it.
        last = valid_mask(seq_lengths, resets.shape[0])
        last = last & ~jnp.concatenate([last[1:], jnp.zeros_like(last[:1])], axis=0)
        shifted = shifted & ~last
    return reverse_valid(shifted, seq_lengths)


def masked_scan(
    step: StepFn,
    init_carry: Carry,
    xs: Any,
    *,
    seq_lengths: jax.Array | None = None,
    resets: jax.Array | None = None,
    reset_carry: Carry | None = None,
    reverse: bool = False,
    unroll: int = 1,
    remat: RematPolicy = None,
    extras: bool = False,
) -> tuple[Carry, Any]:
    """Runs ``step`` over time-major ``xs`` with padding, resets and reversal.

    For each step ``t`` (in processing order) and each batch element:

    .. math::
        c_{t-1}' = r_t \\, c_0 + (1 - r_t) \\, c_{t-1}, \\qquad
        (\\tilde c_t, y_t) = f(c_{t-1}', x_t), \\qquad
        c_t = m_t \\tilde c_t + (1 - m_t) c_{t-1}, \\qquad y_t \\leftarrow m_t y_t

    where ``m_t = [t < L]`` masks padding and ``r_t`` restarts the state from ``c_0``.

    Args:
      step: ``step(carry, x_t) -> (carry, y_t)``; carry leaves are ``[*batch, ...]``.
      init_carry: the carry before the first step.
      xs: pytree of time-major arrays ``[time, *batch, ...]``.
      seq_lengths: int ``[*batch]``; steps at or past the length are padding: outputs there
        are zero and the final carry is the carry after the last valid step.
      resets: bool ``[time, *batch]``; where true the state restarts from ``reset_carry``
        before that step (packed sequences, stateful streams). In a reversed scan the flags
        still mark segment starts in the original (forward) order.
      reset_carry: the carry to restart from; defaults to ``init_carry``.
      reverse: process the valid part of each sequence from its end to its start. Outputs
        are returned in the original time order.
      unroll: how many steps ``lax.scan`` unrolls per iteration.
      remat: rematerialise the step in the backward pass: ``"full"`` keeps only carries,
        ``"dots_saveable"`` keeps matmul results, ``None`` / ``"none"`` keeps everything.
      extras: the step returns ``(carry, (y_t, e_t))`` where ``e_t`` is a per-step value
        that is not per example (e.g. the batch statistics of a batch-normalised cell):
        it is neither masked nor reordered.

    Returns:
      ``(final_carry, ys)`` with ``ys`` time-major like ``xs``; with ``extras``
      ``(final_carry, (ys, es))`` where ``es`` is stacked in processing order.
    """
    num_steps = jax.tree.leaves(xs)[0].shape[0]
    reset_carry = init_carry if reset_carry is None else reset_carry
    if reverse:
        if resets is not None:
            resets = reverse_resets(resets, seq_lengths)
        xs = reverse_valid(xs, seq_lengths)
    mask = None if seq_lengths is None else valid_mask(seq_lengths, num_steps)

    def body(carry, inputs):
        x_t, m_t, r_t = inputs
        state = carry if r_t is None else tree_where(r_t, reset_carry, carry)
        new_carry, y_t = step(state, x_t)
        if extras:
            y_t, e_t = y_t
        if m_t is not None:
            # Padding leaves the carry untouched, including any reset flagged there.
            new_carry = tree_where(m_t, new_carry, carry)
            y_t = jax.tree.map(lambda y: jnp.where(_expand_to(m_t, y), y, jnp.zeros_like(y)), y_t)
        return new_carry, ((y_t, e_t) if extras else y_t)

    if remat not in (None, "none"):
        if remat not in _POLICIES:
            raise ValueError(f"remat must be one of {sorted(_POLICIES)} or None, got {remat!r}")
        body = jax.checkpoint(body, policy=_POLICIES[remat], prevent_cse=False)

    carry, ys = jax.lax.scan(body, init_carry, (xs, mask, resets), unroll=unroll)
    if extras:
        ys, es = ys
    if reverse:
        ys = reverse_valid(ys, seq_lengths)
    return carry, ((ys, es) if extras else ys)


def _combine(left, right):
    """Composition of the affine maps ``h -> a h + b``: first ``left``, then ``right``."""
    a_l, b_l = left
    a_r, b_r = right
    return a_l * a_r, a_r * b_l + b_r


def linear_scan(
    a: jax.Array,
    b: jax.Array,
    h0: jax.Array | None = None,
    *,
    method: Literal["auto", "sequential", "associative"] = "auto",
) -> jax.Array:
    """Solves ``h_t = a_t * h_{t-1} + b_t`` along the leading (time) axis.

    The associative form composes the affine maps ``h -> a h + b`` with
    ``(a_1, b_1) . (a_2, b_2) = (a_1 a_2, a_2 b_1 + b_2)`` in ``O(log T)`` depth
    (Blelloch 1990; Martin & Cundy 2018). Padding and resets need no special case: set
    ``a_t = 1, b_t = 0`` to hold the state, ``a_t = 0`` to restart it.

    Args:
      a: decay, time-major ``[time, ...]`` (real or complex).
      b: input, broadcast-compatible with ``a``.
      h0: optional initial state ``[...]``.
      method: ``"sequential"`` (``lax.scan``), ``"associative"`` or ``"auto"``, which picks
        the sequential scan on CPU (measured faster there) and the associative one elsewhere.

    Returns:
      ``h`` with the shape of ``b``: every state ``h_1 .. h_T``.
    """
    a, b = jnp.broadcast_arrays(a, b)
    if h0 is not None:
        # Fold the initial state into the first input: h_1 = a_1 h_0 + b_1.
        b = b.at[0].add(a[0] * h0)
    if method == "auto":
        method = "sequential" if target.platform() == "cpu" else "associative"
    if method == "sequential":

        def step(h, ab):
            a_t, b_t = ab
            h = a_t * h + b_t
            return h, h

        _, hs = jax.lax.scan(step, jnp.zeros_like(b[0]), (a, b))
        return hs
    if method == "associative":
        _, hs = jax.lax.associative_scan(_combine, (a, b), axis=0)
        return hs
    raise ValueError(f"method must be 'auto', 'sequential' or 'associative', got {method!r}")


# -- one sequence split across devices ----------------------------------------------------
# Sequence parallelism for linear recurrences (Blelloch 1990, "Prefix sums and their
# applications"; Martin & Cundy 2018): a sequence of T steps split into n chunks over n
# devices is solved in three phases:
#
# 1. each device runs an associative scan over its own chunk, giving for every local step
#    t the map h_t = A_t * h_start + B_t from the state before the chunk;
# 2. the chunk summaries (A_last, B_last) (one state-sized pair per device) are
#    all-gathered and prefix-combined, which gives every device the state h_start at the
#    end of the preceding chunks;
# 3. each device fixes up its chunk: h_t = A_t * h_start + B_t.
#
# Only phase 2 communicates, 2 x n states per device regardless of T. Nonlinear
# recurrences (LSTM, GRU) have no such decomposition, so they cannot be split this way.


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
