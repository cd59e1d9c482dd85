"""The Hawk block's ``"parallel"`` path: its causal convolution over the whole sequence,
then the RG-LRU with :func:`rnnlab.scan.linear_scan`.

The block (:class:`~rnnlab.cells.HawkCell`) is linear in its state: the RG-LRU state is a
diagonal linear recurrence and the convolution window a shift register. Over a whole
sequence the window needs no loop: tap ``j`` of step ``t`` reads the input ``K - 1 - j``
steps back, which is the input itself, or, before a restart, the window the state restarted
from (the initial carry's at the start, the reset carry's after a reset at ``s <= t``):

.. math::
    v_t = \\textstyle\\sum_j w_j \\, u^{\\ast}_{t-K+1+j}, \\qquad
    u^{\\ast}_p = \\begin{cases} u_p & p \\ge s_t \\\\ W^{(s_t)}_{K-1-(s_t-p)} & p < s_t
    \\end{cases}

with ``s_t`` the latest restart at or before ``t`` and ``W^{(s)}`` its window. Padding,
resets and reversal of the recurrence are the coefficient rewrites of
:mod:`rnnlab.layers.associative`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from rnnlab.layers.associative import solve
from rnnlab.scan import reverse_resets, reverse_valid

Array = jax.Array


def run_hawk_parallel(
    cell: Any,
    params: dict[str, Array],
    xs: Array,
    initial_carry: tuple[Array, Array],
    *,
    seq_lengths: Array | None = None,
    resets: Array | None = None,
    reset_carry: tuple[Array, Array] | None = None,
    reverse: bool = False,
    keep_order: bool = True,
) -> tuple[tuple[Array, Array], Array]:
    """Runs a :class:`~rnnlab.cells.HawkCell` over time-major ``xs [T, *batch, F]``:
    ``(final carry, ys)``, the semantics of the step-by-step scan over the same cell."""
    num_steps, k = xs.shape[0], cell.conv_width
    h0, w0 = initial_carry
    h_r, w_r = initial_carry if reset_carry is None else reset_carry
    xp = cell.project(params, xs)
    if reverse:
        if resets is not None:
            resets = reverse_resets(resets, seq_lengths)
        xp = reverse_valid(xp, seq_lengths)
    gate, u = jnp.split(xp, 2, axis=-1)
    steps = jnp.arange(num_steps + 1).reshape((-1,) + (1,) * (xs.ndim - 2))
    steps = jnp.broadcast_to(steps, (num_steps + 1,) + xs.shape[1:-1])
    flags = jnp.zeros_like(steps, jnp.bool_)
    if resets is not None:
        flags = flags.at[:num_steps].set(resets)
    # The latest restart at or before each step (a step-0 reset restarts from the reset
    # window, which differs from the initial one in a stateful stream).
    marks = jnp.where(flags, steps + 1, 0)
    restarts_plus = jax.lax.cummax(marks, axis=0)  # 0: none, s + 1: reset at s

    def taps_at(t_index):  # [S, *b] -> the K convolution inputs of each step [S, *b, K, H]
        latest = jnp.take_along_axis(restarts_plus, jnp.clip(t_index, 0, num_steps), 0)
        s = jnp.maximum(latest - 1, 0)
        which = (latest > 0).astype(jnp.int32)
        out = []
        for j in range(k):
            p = t_index - (k - 1 - j)
            x = jnp.take_along_axis(u, jnp.clip(p, 0, num_steps - 1)[..., None], 0)
            start = jnp.where(which > 0, s, 0)
            if k > 1:
                slot = jnp.clip(k - 1 - (start - p), 0, k - 2)
                w = jnp.where((which > 0)[..., None, None], w_r[None], w0[None])  # [S, *b, K-1, H]
                from_window = jnp.take_along_axis(w, slot[..., None, None], axis=-2)[..., 0, :]
            else:
                from_window = jnp.zeros_like(x)
            out.append(jnp.where((p >= start)[..., None], x, from_window))
        return jnp.stack(out, axis=-2)  # [S, *b, K, H]

    taps = taps_at(steps[:num_steps])
    a, b = cell.coefficients(params, taps)
    hs, mask = solve(a, b, h0, h_r, resets=resets, seq_lengths=seq_lengths)
    ys = cell.readout(params, hs, gate)
    if mask is not None:
        ys = jnp.where(mask, ys, jnp.zeros_like(ys))
    if reverse and keep_order:
        ys = reverse_valid(ys, seq_lengths)
    # The window after the last valid step: the step after it would read it in its first
    # K - 1 taps.
    lengths = jnp.full(xs.shape[1:-1], num_steps, jnp.int32) if seq_lengths is None else seq_lengths
    final_window = taps_at(lengths[None].astype(steps.dtype))[0][..., :-1, :]
    return (hs[-1], final_window), ys
