"""The time-parallel implementation (``implementation="parallel"`` of :class:`rnnlab.RNN`):
linear recurrences solved over whole sequences at once, as compositions of affine maps.

A :class:`~rnnlab.cells.linear.LinearRecurrentCell` computes ``(a_t, b_t)`` for every step
from the input in one pass, and :func:`rnnlab.scan.linear_scan` solves
``h_t = a_t * h_{t-1} + b_t`` over the sequence, sequentially or with an associative scan in
``O(log T)`` depth (Blelloch 1990; Martin & Cundy 2018). Padding, resets and reversal need
no per-step branch: they are rewrites of the coefficients,

* padding (``t >= seq_lengths``): ``a_t = 1, b_t = 0`` holds the state;
* reset at ``t``: ``a_t = 0, b_t = b_t + a_t r`` restarts from the reset carry ``r``;
* reverse: each sequence's valid part is reversed before the scan and restored after.

The semantics are those of the step-by-step scan over the same cell, which the tests check.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from rnnlab.scan import linear_scan, reverse_resets, reverse_valid, valid_mask

Array = jax.Array
METHODS = ("auto", "sequential", "associative")


def solve(
    a: Array,
    b: Array,
    h0: Array,
    restart: Array,
    *,
    resets: Array | None,
    seq_lengths: Array | None,
    method: str = "auto",
) -> tuple[Array, Array | None]:
    """``h_t = a_t h_{t-1} + b_t`` over time-major ``[T, *batch, H]`` coefficients with the
    padding and reset rewrites above: ``(hs, mask)``, ``mask`` ``[T, *batch, 1]`` (or None)
    marking the valid steps whose outputs the caller keeps."""
    if resets is not None:
        r = resets[..., None]
        b = jnp.where(r, b + a * restart, b)
        a = jnp.where(r, jnp.zeros_like(a), a)
    mask = None
    if seq_lengths is not None:
        mask = valid_mask(seq_lengths, a.shape[0])[..., None]
        a = jnp.where(mask, a, jnp.ones_like(a))
        b = jnp.where(mask, b, jnp.zeros_like(b))
    return linear_scan(a, b, h0, method=method), mask


def run_associative(
    cell: Any,
    params: dict[str, Array],
    xs: Array,
    initial_carry: Array,
    *,
    seq_lengths: Array | None = None,
    resets: Array | None = None,
    reset_carry: Array | None = None,
    reverse: bool = False,
    keep_order: bool = True,
    method: str = "auto",
) -> tuple[Array, Array]:
    """Runs a linear cell over time-major ``xs [T, *batch, I]``: ``(final carry, ys)``.

    ``resets [T, *batch]`` restart the state from ``reset_carry`` (default: the initial
    carry) before the flagged step; the other arguments are those of
    :func:`rnnlab.scan.masked_scan`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    h0 = initial_carry
    restart = h0 if reset_carry is None else reset_carry
    xp = cell.project(params, xs)
    if reverse:
        if resets is not None:
            resets = reverse_resets(resets, seq_lengths)
        xp = reverse_valid(xp, seq_lengths)
    a, b = cell.coefficients(params, xp)
    hs, mask = solve(a, b, h0, restart, resets=resets, seq_lengths=seq_lengths, method=method)
    ys = cell.readout(params, hs, xp)
    if mask is not None:
        ys = jnp.where(mask, ys, jnp.zeros_like(ys))
    if reverse and keep_order:
        ys = reverse_valid(ys, seq_lengths)
    return hs[-1], ys
