"""Whole-sequence LSTM with a hand-written backward pass (``jax.custom_vjp``).

Forward: the per-step recurrence keeps the gate activations ``[i f g o]`` and the carries.
Backward: one reverse loop computes the gate gradients ``dz_t`` and the recurrent gradient
``dh_{t-1} = dz_t W_hh^T``; the weight gradients follow as single large products
``W_hh: H_{prev}^T dZ``, ``W_ih: X^T dZ`` over all ``T * B`` rows, and the input gradient as
``dZ W_ih^T`` (the scheme of cuDNN, Appleyard et al. 2016). Reverse-mode autodiff of a scan
instead computes ``T`` skinny ``(H, B) x (B, 4H)`` products inside the loop.

Maths (Hochreiter & Schmidhuber 1997, with forget gate, Gers et al. 2000), per step:

.. math::
    z = x_t W_{ih} + h_{t-1} W_{hh} + b, \\quad [i, f, g, o] = [\\sigma, \\sigma, \\tanh,
    \\sigma](z), \\quad c_t = f c_{t-1} + i g, \\quad h_t = o \\tanh(c_t)

and backward, with :math:`\\bar h, \\bar c` the incoming gradients:

.. math::
    \\bar o = \\bar h \\tanh c_t, \\quad \\bar c \\mathrel{+}= \\bar h\\, o (1 - \\tanh^2 c_t),
    \\quad \\bar i = \\bar c g, \\quad \\bar g = \\bar c i, \\quad \\bar f = \\bar c c_{t-1},
    \\quad \\bar z = [\\bar i\\, i(1-i), \\bar f\\, f(1-f), \\bar g (1-g^2), \\bar o\\, o(1-o)]

Padding (a ``[T, B]`` mask) holds the carry, as :func:`rnnlab.scan.masked_scan` does; the
gate gradients are zero there and the carry gradients pass through unchanged.
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


class LSTMOptions(NamedTuple):
    """Static choices of the fused LSTM (hashable: part of the compiled program).

    Attributes:
      dtype: matmul compute dtype (carries, gates and accumulations stay float32).
      hoist: compute ``x W_ih + b`` for all steps in one matmul before the loop.
      prefetch: materialise each step's slices one step ahead (see ``prefetch_scan``).
      one_tanh: evaluate all four gate nonlinearities with one ``tanh`` over ``[B, 4H]``,
        using :math:`\\sigma(x) = (1 + \\tanh(x/2)) / 2`.
      recompute: keep only the carries ``c_t, h_t`` for the backward pass and recompute the
        gates there, ``chunk`` steps at a time (rematerialisation for long sequences).
      chunk: span length of the recomputing backward pass (``None``: the whole sequence);
        its gate activations and gradients are the only ``[chunk, B, 4H]`` buffers alive.
    """

    dtype: Any = F32
    hoist: bool = False
    prefetch: bool = True
    one_tanh: bool = True
    recompute: bool = False
    chunk: int | None = None


def _gate_constants(hidden: int) -> tuple[Array, Array]:
    """Per-column ``(scale, shift)`` so that ``act = scale * tanh(scale * z) + shift``."""
    is_g = (jnp.arange(4 * hidden) // hidden) == 2
    scale = jnp.where(is_g, 1.0, 0.5).astype(F32)
    return scale, jnp.where(is_g, 0.0, 0.5).astype(F32)


def gate_activations(z: Array, one_tanh: bool) -> Array:
    """``[sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)]`` of fused pre-activations ``[..., 4H]``."""
    hidden = z.shape[-1] // 4
    if one_tanh:
        scale, shift = _gate_constants(hidden)
        return scale * jnp.tanh(scale * z) + shift
    i, f, g, o = jnp.split(z, 4, axis=-1)
    sig = jax.nn.sigmoid
    return jnp.concatenate([sig(i), sig(f), jnp.tanh(g), sig(o)], axis=-1)


def _forward(opts: LSTMOptions, w_ih, w_hh, b, xs, c0, h0, mask, save_gates=False):
    """Runs the recurrence; returns the carries and the residuals for the backward pass."""
    dt = opts.dtype
    b32 = b.astype(F32)
    if opts.hoist:
        inputs = mm(xs, w_ih, dt) + b32
    else:
        inputs = xs

    def body(carry, inp):
        c, h = carry
        x_t, m_t = inp
        if opts.hoist:
            z = x_t + mm(h, w_hh, dt)
        else:
            z = mm(x_t, w_ih, dt) + mm(h, w_hh, dt) + b32
        act = gate_activations(z, opts.one_tanh)
        i, f, g, o = split_gates(act, 4)
        c_new = hold(m_t, f * c + i * g, c)
        h_new = hold(m_t, o * jnp.tanh(c_new), h)
        return (c_new, h_new), (act if save_gates else None, c_new, h_new)

    (c_t, h_t), (acts, cs, hs) = prefetch_scan(
        body, (c0, h0), (inputs, mask), prefetch=opts.prefetch
    )
    return (hs, c_t, h_t), (acts, cs, hs)


def _gate_grads(opts: LSTMOptions, w_hh, acts, cs, c_prevs, dhs, dc_t, dh_t, mask):
    """The reverse loop over one span of steps: gate gradients ``dZ [T, B, 4H]`` and the
    gradients of the carry entering the span.

    Written to keep the loop body to few kernels, which is what bounds small layers: the
    gate gradients are one ``[B, 4H]`` expression, the derivative of each nonlinearity taken
    from its output (``a (1 - a)`` for a sigmoid, ``1 - a^2`` for the tanh, both
    ``s^2 (1 - u)(1 + u)`` with ``u = (a - shift) / s``), and ``c_t`` arrives in the carry
    from the step after it instead of as one more sliced input.
    """
    dt = opts.dtype
    hidden = cs.shape[-1]
    scale, shift = _gate_constants(hidden)
    # Transposed once, outside the loop: the per-step product then reads a row-major
    # [4H, H] operand (measured faster than contracting W_hh's second axis in place).
    w_hh_t = jnp.transpose(w_hh)

    def body(carry, inp):
        dc, dh, c = carry
        act, c_prev, dy, m_t = inp
        i, f, g, o = split_gates(act, 4)
        dh_in = dh + dy
        dc_in = dc
        if m_t is not None:
            dh_in, dc_in = jnp.where(m_t, dh_in, 0.0), jnp.where(m_t, dc, 0.0)
        tc = jnp.tanh(c)
        dcc = dc_in + dh_in * o * (1.0 - tc * tc)
        u = (act - shift) / scale
        upstream = jnp.concatenate([dcc * g, dcc * c_prev, dcc * i, dh_in * tc], axis=-1)
        dz = upstream * (scale * scale) * (1.0 - u) * (1.0 + u)
        dh_prev = hold(m_t, mm(dz, w_hh_t, dt), dh)
        dc_prev = hold(m_t, dcc * f, dc)
        return (dc_prev, dh_prev, c_prev), dz

    # The gate gradients overwrite the gate activations step by step: acts[t] is dead once
    # dz[t] exists, and reusing its buffer saves allocating and first touching another.
    (dc0, dh0, _), dzs = prefetch_scan(
        body,
        (dc_t, dh_t, cs[-1]),
        (acts, c_prevs, dhs, mask),
        reverse=True,
        prefetch=opts.prefetch,
        overwrite=0 if opts.prefetch else None,
    )
    return dzs, dc0, dh0


def _span_backward(opts, w_ih, w_hh, b, span, carry_grads, acts=None):
    """Backward over one span of steps: carry, weight and input gradients.

    Without saved ``acts`` the gates are recomputed from the saved carries: with every
    ``h_{t-1}`` known, the pre-activations of the whole span are one large product
    ``X W_ih + H_{prev} W_hh`` rather than a sequential loop.
    """
    dt = opts.dtype
    (x, dy, m), ((c, _), (c_prev, h_prev)) = span
    if acts is None:
        z = mm(x, w_ih, dt) + mm(h_prev, w_hh, dt) + b.astype(F32)
        acts = gate_activations(z, opts.one_tanh)
    dzs, dc0, dh0 = _gate_grads(opts, w_hh, acts, c, c_prev, dy, *carry_grads, m)
    weight_grads = (rows_t_mm(x, dzs, dt), rows_t_mm(h_prev, dzs, dt), jnp.sum(dzs, axis=(0, 1)))
    return (dc0, dh0), weight_grads, mm_t(dzs, w_ih, dt)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _lstm(opts, w_ih, w_hh, b, xs, c0, h0, mask):
    return _forward(opts, w_ih, w_hh, b, xs, c0, h0, mask)[0]


def _lstm_fwd(opts, w_ih, w_hh, b, xs, c0, h0, mask):
    out, (acts, cs, hs) = _forward(
        opts, w_ih, w_hh, b, xs, c0, h0, mask, save_gates=not opts.recompute
    )
    return out, (w_ih, w_hh, b, xs, c0, h0, mask, acts, cs, hs)


def _lstm_bwd(opts, res, cotangents):
    w_ih, w_hh, b, xs, c0, h0, mask, acts, cs, hs = res
    dhs, dc_t, dh_t = cotangents
    seq, states, first = (xs, dhs, mask), (cs, hs), (c0, h0)
    if opts.recompute:
        zeros = tuple(jnp.zeros(w.shape, F32) for w in (w_ih, w_hh, b))
        span_fn = lambda span, carry: _span_backward(opts, w_ih, w_hh, b, span, carry)
        (dc0, dh0), (d_w_ih, d_w_hh, d_b), d_xs = backward_in_spans(
            span_fn, seq, states, first, opts.chunk, (dc_t, dh_t), zeros
        )
    else:
        span = (seq, with_previous(states, first))
        (dc0, dh0), (d_w_ih, d_w_hh, d_b), d_xs = _span_backward(
            opts, w_ih, w_hh, b, span, (dc_t, dh_t), acts
        )
    grads = (d_w_ih, d_w_hh, d_b, d_xs, dc0, dh0, None)
    return cast_like(grads, (w_ih, w_hh, b, xs, c0, h0, mask))


_lstm.defvjp(_lstm_fwd, _lstm_bwd)


def lstm_sequence(
    params: dict[str, Array],
    xs: Array,
    carry: tuple[Array, Array],
    mask: Array | None = None,
    *,
    options: LSTMOptions = LSTMOptions(),
) -> tuple[tuple[Array, Array], Array]:
    """Runs an LSTM over a time-major sequence with the fused backward pass.

    Args:
      params: ``kernel_ih [I, 4H]``, ``kernel_hh [H, 4H]``, ``bias [4H]`` (gate order
        ``i, f, g, o`` as :class:`rnnlab.cells.LSTMCell`).
      xs: inputs ``[T, B, I]``.
      carry: ``(c, h)``, each float32 ``[B, H]``.
      mask: optional bool ``[T, B]``; false marks padding (the carry holds, outputs are 0).
      options: static :class:`LSTMOptions`.

    Returns:
      ``((c_T, h_T), ys)`` with ``ys [T, B, H]`` in float32 (zero at padding).
    """
    c0, h0 = carry
    m = None if mask is None else mask[..., None]
    hs, c_t, h_t = _lstm(
        options, params["kernel_ih"], params["kernel_hh"], params["bias"], xs, c0, h0, m
    )
    ys = hs if m is None else jnp.where(m, hs, 0.0)
    return (c_t, h_t), ys
