"""The mLSTM's chunkwise-parallel form: the ``"parallel"`` path of :class:`~rnnlab.cells.MLSTMCell`.

The mLSTM memory is linear in its state (Beck et al. 2024, their appendix on the parallel
form; the chunkwise form is that of Yang et al. 2024's gated linear attention). Unrolled,
with ``b_t`` the cumulative ``log f`` from the start of a chunk and ``(C_0, n_0, m_0)`` the
state entering it,

.. math::
    C_t = e^{b_t + m_0} \\tilde C_0 + \\textstyle\\sum_{s \\le t} e^{b_t - b_s + \\tilde i_s}
    k_s v_s^T, \\qquad
    m_t = \\max\\big(b_t + m_0, \\max_{s \\le t} (b_t - b_s + \\tilde i_s)\\big)

and ``m_t`` is exactly the recurrent stabiliser. Within a chunk of ``L`` steps the sums are
``L x L`` matrix products (attention-like, causal); between chunks the state is carried by a
scan over ``T / L`` steps. ``L = T`` is the fully parallel form of the paper, ``L = 1`` the
recurrence. Padding steps are ``log f = 0`` and no input, which holds the state; the
reversed pass reverses each sequence's valid part, as :mod:`rnnlab.layers.associative` does.
Resets restart from a full carry, which this form has no term for: they take the scan path.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from rnnlab.scan import reverse_valid, valid_mask

Array = jax.Array
NEG = -1e30  # log of an excluded term; finite, so masked gradients stay zero, not NaN


def _chunk(params_state, chunk):
    """One chunk: the carried ``(C, n, m)`` and ``(q, k, v, ~i, log f)`` ``[*b, K, L, ...]``."""
    c0, n0, m0 = params_state
    q, k, v, i_pre, log_f = chunk
    length = q.shape[-2]
    bcum = jnp.cumsum(log_f, axis=-1)  # [*b, K, L]
    causal = jnp.tril(jnp.ones((length, length), jnp.bool_))
    log_d = bcum[..., :, None] - bcum[..., None, :] + i_pre[..., None, :]
    log_d = jnp.where(causal, log_d, NEG)
    log_carry = bcum + m0[..., None]
    m = jnp.maximum(log_carry, jnp.max(log_d, axis=-1))  # [*b, K, L]
    weights = jnp.exp(log_d - m[..., None]) * jnp.einsum("...td,...sd->...ts", q, k)
    w_carry = jnp.exp(log_carry - m)
    num = jnp.einsum("...ts,...se->...te", weights, v)
    num = num + w_carry[..., None] * jnp.einsum("...td,...de->...te", q, c0)
    den = jnp.sum(weights, axis=-1) + w_carry * jnp.einsum("...td,...d->...t", q, n0)
    m_end = m[..., -1]
    w_end = jnp.exp(bcum[..., -1:] - bcum + i_pre - m_end[..., None])  # [*b, K, L]
    keep = jnp.exp(bcum[..., -1] + m0 - m_end)
    c_end = keep[..., None, None] * c0 + jnp.einsum("...s,...sd,...se->...de", w_end, k, v)
    n_end = keep[..., None] * n0 + jnp.einsum("...s,...sd->...d", w_end, k)
    return (c_end, n_end, m_end), (num, den, m)


def run_chunkwise(
    cell: Any,
    params: dict[str, Array],
    xs: Array,
    initial_carry: tuple[Array, Array, Array],
    *,
    seq_lengths: Array | None = None,
    reverse: bool = False,
    keep_order: bool = True,
    chunk_size: int | None = None,
) -> tuple[Any, Array]:
    """Runs an :class:`~rnnlab.cells.MLSTMCell` over time-major ``xs [T, *batch, F]`` in
    chunks of ``chunk_size`` (default the cell's): ``(final carry, ys)``, the semantics of
    the step-by-step scan over the same cell."""
    num_steps = xs.shape[0]
    size = min(chunk_size or cell.chunk_size, num_steps)
    xp = cell.project(params, xs)
    if reverse:
        xp = reverse_valid(xp, seq_lengths)
    q, k, v, i_pre, f_pre, o_pre = cell.split(xp)  # [T, *b, K, d] / [T, *b, K]
    log_f = jax.nn.log_sigmoid(f_pre)
    mask = None
    if seq_lengths is not None:
        mask = valid_mask(seq_lengths, num_steps)  # [T, *b]
        log_f = jnp.where(mask[..., None], log_f, 0.0)
        i_pre = jnp.where(mask[..., None], i_pre, NEG)
    pad = -num_steps % size
    if pad:
        widths = lambda z, value: jnp.pad(  # noqa: E731
            z, [(0, pad)] + [(0, 0)] * (z.ndim - 1), constant_values=value
        )
        q, k, v, log_f = (widths(z, 0.0) for z in (q, k, v, log_f))
        i_pre = widths(i_pre, NEG)
    chunks = (num_steps + pad) // size

    def to_chunks(z):  # [T', *b, K, ...] -> [NC, *b, K, L, ...]
        z = z.reshape((chunks, size) + z.shape[1:])
        extra = z.ndim - (2 + len(xs.shape[1:-1]) + 1)  # axes after K
        return jnp.moveaxis(z, 1, z.ndim - 1 - extra)

    seq = tuple(to_chunks(z) for z in (q, k, v, i_pre, log_f))
    final, (num, den, m) = jax.lax.scan(_chunk, tuple(initial_carry), seq)

    def from_chunks(z, extra):  # [NC, *b, K, L, ...] -> [T, *b, K, ...]
        z = jnp.moveaxis(z, z.ndim - 1 - extra, 1)
        return z.reshape((chunks * size,) + z.shape[2:])[:num_steps]

    num, den, m = from_chunks(num, 1), from_chunks(den, 0), from_chunks(m, 0)
    ys = cell.readout(o_pre, num, den, m)
    if mask is not None:
        ys = jnp.where(mask[..., None], ys, jnp.zeros_like(ys))
    if reverse and keep_order:
        ys = reverse_valid(ys, seq_lengths)
    return final, ys
