"""Whole-sequence GRU ("reset after" form) with a hand-written backward pass.

The form of cuDNN and PyTorch ``nn.GRU`` (Cho et al. 2014, with the reset gate applied to
the recurrent product), gate order ``(r, z, n)``:

.. math::
    a = x_t W_{ih} + b_{ih}, \\quad u = h_{t-1} W_{hh} + b_{hh}, \\quad
    r = \\sigma(a_r + u_r), \\quad z = \\sigma(a_z + u_z), \\quad
    n = \\tanh(a_n + r \\odot u_n), \\quad h_t = (1 - z) \\odot n + z \\odot h_{t-1}

Backward, with :math:`\\bar h` the gradient reaching :math:`h_t`:

.. math::
    \\bar n' = \\bar h (1 - z)(1 - n^2), \\quad \\bar z' = \\bar h (h_{t-1} - n) z (1 - z),
    \\quad \\bar r' = \\bar n' u_n r (1 - r), \\\\
    \\bar a = [\\bar r', \\bar z', \\bar n'], \\quad \\bar u = [\\bar r', \\bar z', \\bar n' r],
    \\quad \\bar h_{t-1} = \\bar h z + \\bar u W_{hh}^T

The reverse loop keeps only :math:`\\bar a`; :math:`\\bar u` follows from it and ``r`` after
the loop, and the weight gradients are single products over all ``T * B`` rows, as in
:mod:`rnnlab.fused.lstm`.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnlab.fused.common import (
    F32,
    Array,
    backward_in_spans,
    cast_like,
    hold,
    mm,
    mm_t,
    prefetch_scan,
    rows_t_mm,
    split_gates,
    with_previous,
)


class GRUOptions(NamedTuple):
    """Static choices of the fused GRU; see :class:`rnnlab.fused.lstm.LSTMOptions`."""

    dtype: Any = F32
    hoist: bool = False
    prefetch: bool = True
    one_tanh: bool = True
    recompute: bool = False
    chunk: int | None = None


def _sigmoid(x: Array, one_tanh: bool) -> Array:
    return 0.5 * jnp.tanh(0.5 * x) + 0.5 if one_tanh else jax.nn.sigmoid(x)


def _gates(a: Array, u: Array, one_tanh: bool) -> Array:
    """``[r, z, n, u_n]`` from the input and recurrent pre-activations ``a``, ``u``."""
    a_r, a_z, a_n = split_gates(a, 3)
    u_r, u_z, u_n = split_gates(u, 3)
    r = _sigmoid(a_r + u_r, one_tanh)
    z = _sigmoid(a_z + u_z, one_tanh)
    return jnp.concatenate([r, z, jnp.tanh(a_n + r * u_n), u_n], axis=-1)


def _forward(opts: GRUOptions, w_ih, w_hh, b_ih, b_hh, xs, h0, mask, save_gates=True):
    dt = opts.dtype
    b_ih32, b_hh32 = b_ih.astype(F32), b_hh.astype(F32)
    inputs = mm(xs, w_ih, dt) + b_ih32 if opts.hoist else xs

    def body(h, inp):
        x_t, m_t = inp
        a = x_t if opts.hoist else mm(x_t, w_ih, dt) + b_ih32
        gates = _gates(a, mm(h, w_hh, dt) + b_hh32, opts.one_tanh)
        _, z, n, _ = split_gates(gates, 4)
        h_new = hold(m_t, n + z * (h - n), h)
        return h_new, (gates if save_gates else None, h_new)

    h_t, (gates, hs) = prefetch_scan(body, h0, (inputs, mask), prefetch=opts.prefetch)
    return (hs, h_t), gates


def _input_grads(opts: GRUOptions, w_hh, gates, h_prevs, dhs, dh_t, mask):
    """Reverse loop: gradients ``[T, B, 3H]`` of the input pre-activations ``a``."""
    dt = opts.dtype

    def body(dh, inp):
        g, h_prev, dy, m_t = inp
        r, z, n, u_n = split_gates(g, 4)
        dh_tot = dh + dy
        dh_in = dh_tot if m_t is None else jnp.where(m_t, dh_tot, 0.0)
        dn = dh_in * (1.0 - z) * (1.0 - n * n)
        dz = dh_in * (h_prev - n) * z * (1.0 - z)
        dr = dn * u_n * r * (1.0 - r)
        du = jnp.concatenate([dr, dz, dn * r], axis=-1)
        dh_prev = hold(m_t, dh_in * z + mm_t(du, w_hh, dt), dh)
        return dh_prev, jnp.concatenate([dr, dz, dn], axis=-1)

    dh0, das = prefetch_scan(
        body, dh_t, (gates, h_prevs, dhs, mask), reverse=True, prefetch=opts.prefetch
    )
    return das, dh0


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _gru(opts, w_ih, w_hh, b_ih, b_hh, xs, h0, mask):
    return _forward(opts, w_ih, w_hh, b_ih, b_hh, xs, h0, mask, save_gates=False)[0]


def _span_backward(opts, w_ih, w_hh, b_ih, b_hh, span, dh_t, gates=None):
    """Backward over one span of steps; without saved ``gates`` they are recomputed from
    the saved states as two large products (see :mod:`rnnlab.fused.lstm`)."""
    dt = opts.dtype
    (x, dy, m), (_, h_prev) = span
    if gates is None:
        a = mm(x, w_ih, dt) + b_ih.astype(F32)
        gates = _gates(a, mm(h_prev, w_hh, dt) + b_hh.astype(F32), opts.one_tanh)
    das, dh0 = _input_grads(opts, w_hh, gates, h_prev, dy, dh_t, m)
    d_r, d_z, d_n = split_gates(das, 3)
    dus = jnp.concatenate([d_r, d_z, d_n * gates[..., : h_prev.shape[-1]]], axis=-1)
    weight_grads = (
        rows_t_mm(x, das, dt),
        rows_t_mm(h_prev, dus, dt),
        jnp.sum(das, axis=(0, 1)),
        jnp.sum(dus, axis=(0, 1)),
    )
    return dh0, weight_grads, mm_t(das, w_ih, dt)


def _gru_fwd(opts, w_ih, w_hh, b_ih, b_hh, xs, h0, mask):
    out, gates = _forward(opts, w_ih, w_hh, b_ih, b_hh, xs, h0, mask, save_gates=not opts.recompute)
    return out, (w_ih, w_hh, b_ih, b_hh, xs, h0, mask, gates, out[0])


def _gru_bwd(opts, res, cotangents):
    w_ih, w_hh, b_ih, b_hh, xs, h0, mask, gates, hs = res
    dhs, dh_t = cotangents
    weights = (w_ih, w_hh, b_ih, b_hh)
    seq = (xs, dhs, mask)
    if opts.recompute:
        zeros = tuple(jnp.zeros(w.shape, F32) for w in weights)
        span_fn = lambda span, dh: _span_backward(opts, *weights, span, dh)
        dh0, weight_grads, d_xs = backward_in_spans(span_fn, seq, hs, h0, opts.chunk, dh_t, zeros)
    else:
        span = (seq, with_previous(hs, h0))
        dh0, weight_grads, d_xs = _span_backward(opts, *weights, span, dh_t, gates)
    return cast_like((*weight_grads, d_xs, dh0, None), (*weights, xs, h0, mask))


_gru.defvjp(_gru_fwd, _gru_bwd)


def gru_sequence(
    params: dict[str, Array],
    xs: Array,
    h0: Array,
    mask: Array | None = None,
    *,
    options: GRUOptions = GRUOptions(),
) -> tuple[Array, Array]:
    """Runs a reset-after GRU over a time-major sequence with the fused backward pass.

    Args:
      params: ``kernel_ih [I, 3H]``, ``kernel_hh [H, 3H]``, ``bias_ih [3H]``, ``bias_hh [3H]``
        (gate order ``r, z, n`` as :class:`rnnlab.cells.GRUCell`).
      xs: inputs ``[T, B, I]``.
      h0: float32 carry ``[B, H]``.
      mask: optional bool ``[T, B]``; false marks padding (the carry holds, outputs are 0).
      options: static :class:`GRUOptions`.

    Returns:
      ``(h_T, ys)`` with ``ys [T, B, H]`` in float32 (zero at padding).
    """
    m = None if mask is None else mask[..., None]
    hs, h_t = _gru(
        options,
        params["kernel_ih"],
        params["kernel_hh"],
        params["bias_ih"],
        params["bias_hh"],
        xs,
        h0,
        m,
    )
    ys = hs if m is None else jnp.where(m, hs, 0.0)
    return h_t, ys
