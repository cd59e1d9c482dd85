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

Resets restart the state a step sees from a reset carry (its gradient goes there); a Gal
recurrent mask multiplies :math:`h_{t-1}` where it enters :math:`W_{hh}` only (the
interpolation keeps the unmasked state) and a Semeniuta update mask multiplies ``n``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from rnnlab.fused import kernel
from rnnlab.fused.common import (
    F32,
    Array,
    FusedOptions,
    backward_in_spans,
    hold,
    mm,
    mm_t,
    prefetch_scan,
    restart,
    rows_t_mm,
    scale_by,
    split_gates,
    with_previous,
)


def _sigmoid(x: Array, one_tanh: bool) -> Array:
    return 0.5 * jnp.tanh(0.5 * x) + 0.5 if one_tanh else jax.nn.sigmoid(x)


def _gates(a: Array, u: Array, one_tanh: bool) -> Array:
    """``[r, z, n, u_n]`` from the input and recurrent pre-activations ``a``, ``u``."""
    a_r, a_z, a_n = split_gates(a, 3)
    u_r, u_z, u_n = split_gates(u, 3)
    r = _sigmoid(a_r + u_r, one_tanh)
    z = _sigmoid(a_z + u_z, one_tanh)
    return jnp.concatenate([r, z, jnp.tanh(a_n + r * u_n), u_n], axis=-1)


def _forward(opts: FusedOptions, weights, xs, h0, mask, resets, extras, save_gates=True):
    w_ih, w_hh, b_ih, b_hh = weights
    reset_carry, rec_mask, upd_mask = extras
    dt = opts.dtype
    b_ih32, b_hh32 = b_ih.astype(F32), b_hh.astype(F32)
    if opts.kernel:
        gx = mm(xs, w_ih, dt) + b_ih32
        gates, hs, h_t = kernel.gru_forward(
            gx, w_hh, b_hh32, h0, mask, resets, reset_carry, rec_mask, upd_mask,
            save_gates=save_gates,
        )  # fmt: skip
        return (hs, h_t), gates
    inputs = mm(xs, w_ih, dt) + b_ih32 if opts.hoist else xs

    def body(h, inp):
        x_t, m_t, r_t = inp
        h_in = restart(r_t, reset_carry, h)
        a = x_t if opts.hoist else mm(x_t, w_ih, dt) + b_ih32
        gates = _gates(a, mm(scale_by(rec_mask, h_in), w_hh, dt) + b_hh32, opts.one_tanh)
        _, z, n, _ = split_gates(gates, 4)
        n = scale_by(upd_mask, n)
        h_new = hold(m_t, n + z * (h_in - n), h)
        return h_new, (gates if save_gates else None, h_new)

    h_t, (gates, hs) = prefetch_scan(body, h0, (inputs, mask, resets), prefetch=opts.prefetch)
    return (hs, h_t), gates


def _input_grads(opts: FusedOptions, w_hh, extras, gates, h_prevs, seq, carry_grads):
    """Reverse loop: gradients ``[T, B, 3H]`` of the input pre-activations ``a``.

    ``h_prevs`` are the states each step saw (the reset carry after a reset); there the
    gradient goes to the reset carry and none to the carry of the step before.
    """
    dt = opts.dtype
    _, rec_mask, upd_mask = extras
    dhs, mask, resets = seq
    if opts.kernel:
        dh_t, d_reset = carry_grads
        das, dh0, d_rc = kernel.gru_backward(
            gates, h_prevs, dhs, mask, resets, rec_mask, upd_mask, w_hh, dh_t
        )
        return das, (dh0, None if d_reset is None else d_reset + d_rc)

    def body(carry, inp):
        dh, d_reset = carry
        g, h_prev, dy, m_t, r_t = inp
        r, z, n, u_n = split_gates(g, 4)
        dh_tot = dh + dy
        dh_in = dh_tot if m_t is None else jnp.where(m_t, dh_tot, 0.0)
        n_used = scale_by(upd_mask, n)
        dn = scale_by(upd_mask, dh_in * (1.0 - z)) * (1.0 - n * n)
        dz = dh_in * (h_prev - n_used) * z * (1.0 - z)
        dr = dn * u_n * r * (1.0 - r)
        du = jnp.concatenate([dr, dz, dn * r], axis=-1)
        dh_seen = dh_in * z + scale_by(rec_mask, mm_t(du, w_hh, dt))
        dh_prev = hold(m_t, dh_seen, dh)
        if r_t is not None:
            d_reset = d_reset + jnp.where(r_t, dh_seen, 0.0)
            dh_prev = jnp.where(r_t, 0.0, dh_prev)
        return (dh_prev, d_reset), jnp.concatenate([dr, dz, dn], axis=-1)

    carry_grads, das = prefetch_scan(
        body, carry_grads, (gates, h_prevs, dhs, mask, resets), reverse=True, prefetch=opts.prefetch
    )
    return das, carry_grads


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _gru(opts, weights, xs, h0, mask, resets, extras):
    # A pass that is not differentiated runs the XLA loops (kernel.undifferentiated).
    opts = opts._replace(kernel=opts.kernel and kernel.undifferentiated())
    return _forward(opts, weights, xs, h0, mask, resets, extras, save_gates=False)[0]


def _span_backward(opts, weights, extras, span, carry_grads, gates=None):
    """Backward over one span of steps; without saved ``gates`` they are recomputed from
    the saved states as two large products (see :mod:`rnnlab.fused.lstm`)."""
    w_ih, w_hh, b_ih, b_hh = weights
    reset_carry, rec_mask, _ = extras
    dt = opts.dtype
    (x, dy, m, r), (_, h_prev) = span
    h_seen = restart(r, reset_carry, h_prev)
    h_rec = scale_by(rec_mask, h_seen)
    if gates is None:
        a = mm(x, w_ih, dt) + b_ih.astype(F32)
        gates = _gates(a, mm(h_rec, w_hh, dt) + b_hh.astype(F32), opts.one_tanh)
    das, carry_grads = _input_grads(opts, w_hh, extras, gates, h_seen, (dy, m, r), carry_grads)
    d_r, d_z, d_n = split_gates(das, 3)
    dus = jnp.concatenate([d_r, d_z, d_n * gates[..., : h_prev.shape[-1]]], axis=-1)
    weight_grads = (
        rows_t_mm(x, das, dt),
        rows_t_mm(h_rec, dus, dt),
        jnp.sum(das, axis=(0, 1)),
        jnp.sum(dus, axis=(0, 1)),
    )
    return carry_grads, weight_grads, mm_t(das, w_ih, dt)


def _gru_fwd(opts, weights, xs, h0, mask, resets, extras):
    out, gates = _forward(
        opts, weights, xs, h0, mask, resets, extras, save_gates=not opts.recompute
    )
    return out, (weights, xs, h0, mask, resets, extras, gates, out[0])


def _gru_bwd(opts, res, cotangents):
    weights, xs, h0, mask, resets, extras, gates, hs = res
    dhs, dh_t = cotangents
    reset_carry = extras[0]
    carry_grads = (dh_t, None if resets is None else jnp.zeros_like(reset_carry))
    seq = (xs, dhs, mask, resets)
    if opts.recompute:
        zeros = tuple(jnp.zeros(w.shape, F32) for w in weights)
        span_fn = lambda span, carry: _span_backward(opts, weights, extras, span, carry)
        carry_grads, weight_grads, d_xs = backward_in_spans(
            span_fn, seq, hs, h0, opts.chunk, carry_grads, zeros
        )
    else:
        span = (seq, with_previous(hs, h0))
        carry_grads, weight_grads, d_xs = _span_backward(
            opts, weights, extras, span, carry_grads, gates
        )
    dh0, d_reset = carry_grads
    like = lambda g, p: None if g is None else g.astype(p.dtype)
    weight_grads = tuple(map(like, weight_grads, weights))
    # Without resets the reset carry is unused (zero cotangent); masks are constants.
    d_extras = (None if d_reset is None else like(d_reset, reset_carry), None, None)
    return weight_grads, like(d_xs, xs), like(dh0, h0), None, None, d_extras


_gru.defvjp(_gru_fwd, _gru_bwd)


def gru_sequence(
    params: dict[str, Array],
    xs: Array,
    h0: Array,
    mask: Array | None = None,
    *,
    resets: Array | None = None,
    reset_carry: Array | None = None,
    options: FusedOptions = FusedOptions(),
) -> tuple[Array, Array]:
    """Runs a reset-after GRU over a time-major sequence with the fused backward pass.

    Per step, with :math:`r_t` the reset flag and :math:`h^0` the reset carry:
    :math:`h' = r_t h^0 + (1 - r_t) h_{t-1}`, the gates from :math:`h' \\odot m_{rec}`
    (Gal & Ghahramani 2016), :math:`n \\leftarrow n \\odot m_{upd}` (Semeniuta et al. 2016)
    and :math:`h_t = (1 - z) n + z h'`.

    Args:
      params: ``kernel_ih [I, 3H]``, ``kernel_hh [H, 3H]``, ``bias_ih [3H]``, ``bias_hh [3H]``
        (gate order ``r, z, n`` as :class:`rnnlab.cells.GRUCell`), optionally
        ``recurrent_mask [B, H]`` and ``update_mask [B, H]``. Weight drop is a masked
        ``kernel_hh``. No gradient flows to the masks.
      xs: inputs ``[T, B, I]``.
      h0: float32 carry ``[B, H]``.
      mask: optional bool ``[T, B]``; false marks padding (the carry holds, outputs are 0,
        a reset flagged there has no effect).
      resets: optional bool ``[T, B]``; true restarts the state from ``reset_carry`` before
        that step (its gradient goes to ``reset_carry``, none to the carry before).
      reset_carry: ``[B, H]``; ``None`` means ``h0``.
      options: static :class:`FusedOptions`.

    Returns:
      ``(h_T, ys)`` with ``ys [T, B, H]`` in float32 (zero at padding).
    """
    m = None if mask is None else mask[..., None]
    r = None
    if resets is not None:
        r = resets[..., None] if m is None else resets[..., None] & m
        reset_carry = h0 if reset_carry is None else reset_carry
    else:
        reset_carry = None
    f32 = lambda a: None if a is None else a.astype(F32)
    extras = (reset_carry, f32(params.get("recurrent_mask")), f32(params.get("update_mask")))
    weights = tuple(params[k] for k in ("kernel_ih", "kernel_hh", "bias_ih", "bias_hh"))
    hs, h_t = _gru(options, weights, xs, h0, m, r, extras)
    ys = hs if m is None else jnp.where(m, hs, 0.0)
    return h_t, ys
