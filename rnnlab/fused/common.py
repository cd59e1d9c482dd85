"""Shared pieces of the whole-sequence recurrences: matmuls, masks, prefetching loops.

The fused layers in this package run a recurrence over a whole time-major sequence inside one
``jax.custom_vjp``. The forward pass keeps the per-step gate activations; the backward pass
walks time in reverse computing only the per-step gate gradients, and the weight gradients
come afterwards as one large matmul over all ``B * T`` rows, as oneDNN and cuDNN do
(Appleyard et al. 2016), instead of ``T`` skinny products inside the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
F32 = jnp.float32


class FusedOptions(NamedTuple):
    """Static choices of the fused LSTM and GRU (hashable: part of the compiled program).

    Attributes:
      dtype: matmul compute dtype (carries, gates and accumulations stay float32).
      hoist: compute ``x W_ih + b`` for all steps in one matmul before the loop.
      prefetch: materialise each step's slices one step ahead (see ``prefetch_scan``).
      one_tanh: evaluate the gate sigmoids through ``tanh``,
        :math:`\\sigma(x) = (1 + \\tanh(x/2)) / 2` (the LSTM: one ``tanh`` over ``[B, 4H]``).
      recompute: keep only the carries for the backward pass and recompute the gates there,
        ``chunk`` steps at a time (rematerialisation for long sequences).
      chunk: span length of the recomputing backward pass (``None``: the whole sequence);
        its gate activations and gradients are the only ``[chunk, B, G H]`` buffers alive.
      kernel: run the time loops as the compiled CPU kernels of :mod:`rnnlab.fused.kernel`
        (float32, no projection): the LSTM's loops run the input products too, the GRU's
        take the input projection as one product before the loop.
    """

    dtype: Any = F32
    hoist: bool = False
    prefetch: bool = True
    one_tanh: bool = True
    recompute: bool = False
    chunk: int | None = None
    kernel: bool = False


def restart(resets: Array | None, fresh: Array | None, state: Array) -> Array:
    """``fresh`` where the ``[B, 1]`` reset flag is set, else ``state`` (the carry a step sees)."""
    if resets is None:
        return state
    return jnp.where(resets, fresh, state)


def scale_by(mask: Array | None, a: Array) -> Array:
    """``a * mask`` for an optional (regulariser) mask; ``a`` itself without one."""
    return a if mask is None else a * mask


def mm(x: Array, w: Array, dtype) -> Array:
    """``x @ w`` in the compute ``dtype`` with a float32 result."""
    return jnp.matmul(x.astype(dtype), w.astype(dtype), preferred_element_type=F32)


def mm_t(x: Array, w: Array, dtype) -> Array:
    """``x @ w.T`` in the compute ``dtype`` with a float32 result."""
    return jax.lax.dot_general(
        x.astype(dtype),
        w.astype(dtype),
        (((x.ndim - 1,), (1,)), ((), ())),
        preferred_element_type=F32,
    )


def rows_t_mm(a: Array, b: Array, dtype) -> Array:
    """``A^T B`` for time-major ``a: [T, B, m]`` and ``b: [T, B, n]``: the ``[m, n]`` sum over rows.

    This is the single large product that yields a weight gradient for all time steps.
    """
    a2 = a.reshape(-1, a.shape[-1]).astype(dtype)
    b2 = b.reshape(-1, b.shape[-1]).astype(dtype)
    return jax.lax.dot_general(a2, b2, (((0,), (0,)), ((), ())), preferred_element_type=F32)


def split_gates(a: Array, count: int) -> tuple[Array, ...]:
    """The ``count`` equal blocks of the last axis (gate blocks of a fused ``[..., G H]``)."""
    size = a.shape[-1] // count
    return tuple(a[..., k * size : (k + 1) * size] for k in range(count))


def cast_like(grads: tuple, primals: tuple) -> tuple:
    """Each gradient in its primal's dtype (``None`` stays ``None``: no gradient, e.g. a mask)."""
    return tuple(
        None if g is None else g.astype(p.dtype) for g, p in zip(grads, primals, strict=True)
    )


def shift_in(first: Array, seq: Array) -> Array:
    """``[first, seq[0], ..., seq[T-2]]``: the per-step *previous* values of a state sequence."""
    return jnp.concatenate([first[None].astype(seq.dtype), seq[:-1]], axis=0)


def hold(mask: Array | None, new: Array, old: Array) -> Array:
    """``new`` where the ``[B, 1]`` mask is set, else ``old``: padding holds the state."""
    if mask is None:
        return new
    return jnp.where(mask, new, old)


def prefetch_scan(
    body: Callable[[Any, Any], tuple[Any, Any]],
    init: Any,
    xs: Any,
    *,
    reverse: bool = False,
    prefetch: bool = True,
    overwrite: int | None = None,
) -> tuple[Any, Any]:
    """``lax.scan(body, init, xs, reverse=reverse)`` that hands ``body`` materialised slices.

    XLA's CPU backend fuses the per-step ``dynamic-slice`` of a scanned input into the
    elementwise kernel that consumes it, and such a fusion falls off the vectorised emitter:
    the LSTM gate kernel ran about 5x slower on a slice than on a plain array (measured,
    docs/performance.md). With ``prefetch`` each iteration instead copies the *next* step's
    slices into the loop carry, where they are materialised, and computes on the current ones.

    ``overwrite`` names a leaf of ``xs`` (by its index in ``jax.tree.leaves(xs)``) that the
    per-step outputs (one array of the same slice shape) replace step by step: the outputs
    then live in that input's buffer, and no second ``[T, ...]`` buffer is allocated and
    first touched. A body may then return ``(y, extra)``: ``y`` goes to the buffer and
    ``extra`` is stacked as usual; the result is ``(buffer, stacked extra)``.
    """
    leaves, treedef = jax.tree.flatten(xs)
    if not leaves or (not prefetch and overwrite is None):
        return jax.lax.scan(body, init, xs, reverse=reverse)
    num_steps = leaves[0].shape[0]
    first = num_steps - 1 if reverse else 0

    def at(arrays, t):
        sliced = [jax.lax.dynamic_index_in_dim(a, t, 0, keepdims=False) for a in arrays]
        return jax.tree.unflatten(treedef, sliced)

    def loop(state, t):
        carry, current, buf = state
        arrays = leaves if buf is None else [*leaves[:overwrite], buf, *leaves[overwrite + 1 :]]
        carry, y = body(carry, current if prefetch else at(arrays, t))
        if buf is not None:
            y, extra = y if isinstance(y, tuple) else (y, None)
            buf = jax.lax.dynamic_update_index_in_dim(buf, y.astype(buf.dtype), t, 0)
            arrays[overwrite] = buf
            y = extra
        nxt = jnp.clip(t - 1 if reverse else t + 1, 0, num_steps - 1)
        return (carry, at(arrays, nxt) if prefetch else None, buf), y

    buf = None if overwrite is None else leaves[overwrite]
    state = (init, at(leaves, first) if prefetch else None, buf)
    (carry, _, buf), ys = jax.lax.scan(
        loop, state, jnp.arange(num_steps, dtype=jnp.int32), reverse=reverse
    )
    if buf is None:
        return carry, ys
    return carry, (buf if ys is None else (buf, ys))


def with_previous(states: Any, first: Any) -> Any:
    """``(states, previous states)`` for time-major ``states``; ``first`` precedes step 0."""
    return states, jax.tree.map(shift_in, first, states)


def backward_in_spans(
    span_backward: Callable[[Any, Any], tuple[Any, Any, Array]],
    seq: Any,
    states: Any,
    first: Any,
    chunk: int | None,
    carry_grads: Any,
    weight_grads: Any,
) -> tuple[Any, Any, Array]:
    """Runs a backward pass over time-major ``seq`` in spans of ``chunk`` steps, last first.

    ``span_backward((seq_span, (states_span, previous_states_span)), carry_grads) ->
    (carry_grads, span_weight_grads, d_inputs)`` handles one span; the weight gradients are
    summed over spans and the input gradients concatenated. ``states`` are the saved carries
    ``[T, B, H]`` and ``first`` the carries before step 0: the previous states of a span are
    built per span, so no shifted copy of a whole sequence is made. Each span's temporaries
    (recomputed gates, gate gradients) are the only ``[chunk, B, G H]`` buffers alive, which
    bounds memory on long sequences. A first span of ``T mod chunk`` steps is processed last.
    """
    num_steps = jax.tree.leaves(states)[0].shape[0]
    chunk = num_steps if chunk is None else max(1, min(chunk, num_steps))
    head_len = num_steps % chunk
    count = num_steps // chunk

    def tail(a):
        return a[head_len:].reshape((count, chunk) + a.shape[1:])

    tail_states = jax.tree.map(tail, states)
    # The state before each span of the tail: the last state of the span before it.
    before_tail = first if not head_len else jax.tree.map(lambda a: a[head_len - 1], states)
    boundaries = jax.tree.map(
        lambda b, t: jnp.concatenate([b[None], t[:-1, -1]], axis=0), before_tail, tail_states
    )

    def body(state, span):
        carry_grads, total = state
        seq_span, states_span, boundary = span
        carry_grads, grads, d_in = span_backward(
            (seq_span, with_previous(states_span, boundary)), carry_grads
        )
        return (carry_grads, jax.tree.map(jnp.add, total, grads)), d_in

    (carry_grads, weight_grads), d_in = jax.lax.scan(
        body,
        (carry_grads, weight_grads),
        (jax.tree.map(tail, seq), tail_states, boundaries),
        reverse=True,
    )
    d_in = d_in.reshape((-1,) + d_in.shape[2:])
    if head_len:
        head = lambda tree: jax.tree.map(lambda a: a[:head_len], tree)
        span = (head(seq), with_previous(head(states), first))
        carry_grads, grads, d_head = span_backward(span, carry_grads)
        weight_grads = jax.tree.map(jnp.add, weight_grads, grads)
        d_in = jnp.concatenate([d_head, d_in], axis=0)
    return carry_grads, weight_grads, d_in
