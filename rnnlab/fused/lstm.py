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

Training features: resets restart the state a step sees from a reset carry (the gradient of
that state goes to the reset carry, none to the carry before); a Gal recurrent mask scales
``h_{t-1}`` where it enters ``W_hh`` and a Semeniuta update mask scales ``g``; with a
projection (LSTMP, Sak et al. 2014) ``h_t = (o \\tanh c_t) W_{proj}``, the reverse loop adds
``dh_t W_{proj}^T`` and emits ``dh_t`` so that ``W_proj``'s gradient is one product
``(o \\tanh C)^T dH`` after the loop.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero, custom_vjp_primal_tree_values

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


def _forward(
    opts: FusedOptions, weights, xs, c0, h0, mask, resets, extras, save_gates=False, residuals=True
):
    """Runs the recurrence; returns the carries and the residuals for the backward pass
    (``residuals=False``: a pass that is not differentiated, whose kernel keeps none)."""
    w_ih, w_hh, b, w_proj = weights
    (rc_c, rc_h), rec_mask, upd_mask = extras
    dt = opts.dtype
    b32 = b.astype(F32)
    if opts.kernel:
        if w_proj is not None:
            raise ValueError("the CPU recurrence kernel has no projection (kernel_proj)")
        keep = save_gates and residuals
        acts, cs, hs, rows, c_t, h_t = kernel.lstm_forward(
            xs, (w_ih, w_hh, b32), c0, h0, mask, resets, (rc_c, rc_h), rec_mask, upd_mask,
            save_acts=keep, save_cs=residuals, save_rows=keep,
        )  # fmt: skip
        return (hs, c_t, h_t), (acts, cs, hs, rows)
    if opts.hoist:
        inputs = mm(xs, w_ih, dt) + b32
    else:
        inputs = xs

    def body(carry, inp):
        c, h = carry
        x_t, m_t, r_t = inp
        # A reset restarts the state this step sees; padding holds the carry from before it.
        c_in, h_in = restart(r_t, rc_c, c), restart(r_t, rc_h, h)
        h_rec = scale_by(rec_mask, h_in)
        if opts.hoist:
            z = x_t + mm(h_rec, w_hh, dt)
        else:
            z = mm(x_t, w_ih, dt) + mm(h_rec, w_hh, dt) + b32
        act = gate_activations(z, opts.one_tanh)
        i, f, g, o = split_gates(act, 4)
        c_new = hold(m_t, f * c_in + i * scale_by(upd_mask, g), c)
        h_new = o * jnp.tanh(c_new)
        if w_proj is not None:
            h_new = mm(h_new, w_proj, dt)
        h_new = hold(m_t, h_new, h)
        return (c_new, h_new), (act if save_gates else None, c_new, h_new)

    (c_t, h_t), (acts, cs, hs) = prefetch_scan(
        body, (c0, h0), (inputs, mask, resets), prefetch=opts.prefetch
    )
    return (hs, c_t, h_t), (acts, cs, hs, None)


def _gate_grads(opts: FusedOptions, w_hh, w_proj, extras, acts, cs, c_prevs, seq, carry_grads):
    """The reverse loop over one span of steps: gate gradients ``dZ [T, B, 4H]`` (and, with a
    projection, the gradients ``[T, B, P]`` reaching each ``h_t``) and the gradients of the
    carry entering the span (and of the reset carry, accumulated over the span's resets).

    Written to keep the loop body to few kernels, which is what bounds small layers: the
    gate gradients are one ``[B, 4H]`` expression, the derivative of each nonlinearity taken
    from its output (``a (1 - a)`` for a sigmoid, ``1 - a^2`` for the tanh, both
    ``s^2 (1 - u)(1 + u)`` with ``u = (a - shift) / s``), and ``c_t`` arrives in the carry
    from the step after it instead of as one more sliced input.

    At a step with a reset the gradient of the state the step saw goes to the reset carry
    and the carry from the step before gets none (the forward pass did not use it).
    """
    dt = opts.dtype
    (rc_c, _), rec_mask, upd_mask = extras
    dhs, mask, resets = seq
    hidden = cs.shape[-1]
    scale, shift = _gate_constants(hidden)
    # Transposed once, outside the loop: the per-step product then reads a row-major
    # [4H, H] operand (measured faster than contracting W_hh's second axis in place).
    w_hh_t = jnp.transpose(w_hh)

    def body(carry, inp):
        dc, dh, c, d_reset = carry
        act, c_prev, dy, m_t, r_t = inp
        i, f, g, o = split_gates(act, 4)
        dh_in = dh + dy
        dc_in = dc
        if m_t is not None:
            dh_in, dc_in = jnp.where(m_t, dh_in, 0.0), jnp.where(m_t, dc, 0.0)
        # With a projection h_t = (o tanh c_t) W_proj, the cell output gets dh W_proj^T.
        d_out = dh_in if w_proj is None else mm_t(dh_in, w_proj, dt)
        tc = jnp.tanh(c)
        dcc = dc_in + d_out * o * (1.0 - tc * tc)
        u = (act - shift) / scale
        c_seen = restart(r_t, rc_c, c_prev)
        upstream = jnp.concatenate(
            [dcc * scale_by(upd_mask, g), dcc * c_seen, dcc * scale_by(upd_mask, i), d_out * tc],
            axis=-1,
        )
        dz = upstream * (scale * scale) * (1.0 - u) * (1.0 + u)
        dh_seen = scale_by(rec_mask, mm(dz, w_hh_t, dt))
        dc_seen = dcc * f
        dh_prev, dc_prev = hold(m_t, dh_seen, dh), hold(m_t, dc_seen, dc)
        if r_t is not None:
            d_reset = (
                d_reset[0] + jnp.where(r_t, dc_seen, 0.0),
                d_reset[1] + jnp.where(r_t, dh_seen, 0.0),
            )
            dc_prev, dh_prev = jnp.where(r_t, 0.0, dc_prev), jnp.where(r_t, 0.0, dh_prev)
        out = dz if w_proj is None else (dz, dh_in)
        return (dc_prev, dh_prev, c_prev, d_reset), out

    # The gate gradients overwrite the gate activations step by step: acts[t] is dead once
    # dz[t] exists, and reusing its buffer saves allocating and first touching another.
    dc_t, dh_t, d_reset = carry_grads
    (dc0, dh0, _, d_reset), out = prefetch_scan(
        body,
        (dc_t, dh_t, cs[-1], d_reset),
        (acts, c_prevs, dhs, mask, resets),
        reverse=True,
        prefetch=opts.prefetch,
        overwrite=0 if opts.prefetch else None,
    )
    return out, (dc0, dh0, d_reset)


def _kernel_span_backward(weights, extras, span, carry_grads, acts, rows, h_rec, want_dx):
    """The backward of one span through the compiled loop, which also returns the input
    (``None`` without ``want_dx``) and bias gradients, and with the forward loop's kept
    ``rows = [x_t, h']`` the weight gradients ``rows^T dZ`` too, on every thread. Where the
    gates were recomputed (no rows kept) those are ``X^T dZ`` and ``H''^T dZ`` in XLA."""
    w_ih, w_hh, _, _ = weights
    (rc_c, _), rec_mask, upd_mask = extras
    (x, dy, m, r), ((c, _), (c_prev, _)) = span
    dc_t, dh_t, d_reset = carry_grads
    dz, dx, db, d_w, dc0, dh0, d_rc, d_rh = kernel.lstm_backward(
        acts, c, c_prev[0], dy, rows, m, r, rc_c, rec_mask, upd_mask, (w_ih, w_hh), dc_t, dh_t,
        want_dx,
    )  # fmt: skip
    if d_reset is not None:
        d_reset = (d_reset[0] + d_rc, d_reset[1] + d_rh)
    d_ih, d_hh = d_w if d_w is not None else (rows_t_mm(x, dz, F32), rows_t_mm(h_rec(), dz, F32))
    return (dc0, dh0, d_reset), (d_ih, d_hh, db, None), dx


def _span_backward(opts, weights, extras, span, carry_grads, acts=None, rows=None, want_dx=True):
    """Backward over one span of steps: carry, weight and input gradients.

    Without saved ``acts`` the gates are recomputed from the saved carries: with every
    ``h_{t-1}`` known, the pre-activations of the whole span are one large product
    ``X W_ih + H_{prev} W_hh`` rather than a sequential loop. ``rows`` are the compiled
    forward loop's ``[x_t, h']`` (``opts.kernel`` without recomputation). Without
    ``want_dx`` the input gradient is ``None`` (where it is a product of its own, XLA drops
    the unused product anyway; the compiled loop needs telling).
    """
    w_ih, w_hh, b, w_proj = weights
    (_, rc_h), rec_mask, _ = extras
    dt = opts.dtype
    (x, dy, m, r), ((c, _), (c_prev, h_prev)) = span
    # The h_{t-1} that entered W_hh: the reset carry after a reset, times the Gal mask.
    h_rec = lambda: scale_by(rec_mask, restart(r, rc_h, h_prev))
    if acts is None:
        z = mm(x, w_ih, dt) + mm(h_rec(), w_hh, dt) + b.astype(F32)
        acts = gate_activations(z, opts.one_tanh)
    if opts.kernel:
        return _kernel_span_backward(weights, extras, span, carry_grads, acts, rows, h_rec, want_dx)
    # The cell output o tanh(c_t) for W_proj's gradient, read before the reverse loop
    # overwrites the gate activations with their gradients.
    h_cell = None if w_proj is None else split_gates(acts, 4)[3] * jnp.tanh(c)
    out, carry_grads = _gate_grads(
        opts, w_hh, w_proj, extras, acts, c, c_prev, (dy, m, r), carry_grads
    )
    d_proj = None
    if w_proj is None:
        dzs = out
    else:
        # W_proj's gradient as one product over all rows: (o tanh c)^T dH.
        dzs, dh_ins = out
        d_proj = rows_t_mm(h_cell, dh_ins, dt)
    weight_grads = (
        rows_t_mm(x, dzs, dt),
        rows_t_mm(h_rec(), dzs, dt),
        jnp.sum(dzs, axis=(0, 1)),
        d_proj,
    )
    return carry_grads, weight_grads, (mm_t(dzs, w_ih, dt) if want_dx else None)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _lstm(opts, weights, xs, c0, h0, mask, resets, extras):
    # A pass that is not differentiated runs the XLA loops (kernel.undifferentiated).
    opts = opts._replace(kernel=opts.kernel and kernel.undifferentiated())
    return _forward(opts, weights, xs, c0, h0, mask, resets, extras, residuals=False)[0]


def _lstm_fwd(opts, weights, xs, c0, h0, mask, resets, extras):
    # symbolic_zeros: every leaf comes as (value, perturbed). Whether the inputs are
    # differentiated decides whether the compiled backward loop computes dX (constant
    # inputs, as a first layer's, need none); it travels to the backward pass as the
    # residuals' structure, a static choice: () wanted, None not.
    want_dx = () if xs.perturbed else None
    args = (weights, xs, c0, h0, mask, resets, extras)
    weights, xs, c0, h0, mask, resets, extras = custom_vjp_primal_tree_values(args)
    out, (acts, cs, hs, rows) = _forward(
        opts, weights, xs, c0, h0, mask, resets, extras, save_gates=not opts.recompute
    )
    return out, (weights, xs, c0, h0, mask, resets, extras, acts, cs, hs, rows, want_dx)


def _lstm_bwd(opts, res, cotangents):
    weights, xs, c0, h0, mask, resets, extras, acts, cs, hs, rows, want_dx = res
    want_dx = want_dx is not None
    # Outputs that the loss does not use come as symbolic zeros.
    dhs, dc_t, dh_t = (
        jnp.zeros(g.shape, g.dtype) if isinstance(g, SymbolicZero) else g for g in cotangents
    )
    reset_carry = extras[0]
    d_reset = None if resets is None else jax.tree.map(jnp.zeros_like, reset_carry)
    carry_grads = (dc_t, dh_t, d_reset)
    seq, states, first = (xs, dhs, mask, resets), (cs, hs), (c0, h0)
    if opts.recompute:
        zeros = jax.tree.map(lambda w: jnp.zeros(w.shape, F32), weights)
        span_fn = lambda span, carry: _span_backward(opts, weights, extras, span, carry)
        carry_grads, weight_grads, d_xs = backward_in_spans(
            span_fn, seq, states, first, opts.chunk, carry_grads, zeros
        )
    else:
        span = (seq, with_previous(states, first))
        carry_grads, weight_grads, d_xs = _span_backward(
            opts, weights, extras, span, carry_grads, acts, rows, want_dx
        )
    dc0, dh0, d_reset = carry_grads
    like = lambda g, p: None if g is None else g.astype(p.dtype)
    weight_grads = tuple(map(like, weight_grads, weights))
    # Without resets the reset carry is unused (zero cotangent); masks are constants.
    d_extras = (
        (None, None) if d_reset is None else tuple(map(like, d_reset, reset_carry)),
        None,
        None,
    )
    return weight_grads, like(d_xs, xs), like(dc0, c0), like(dh0, h0), None, None, d_extras


_lstm.defvjp(_lstm_fwd, _lstm_bwd, symbolic_zeros=True)


def lstm_sequence(
    params: dict[str, Array],
    xs: Array,
    carry: tuple[Array, Array],
    mask: Array | None = None,
    *,
    resets: Array | None = None,
    reset_carry: tuple[Array, Array] | None = None,
    options: FusedOptions = FusedOptions(),
) -> tuple[tuple[Array, Array], Array]:
    """Runs an LSTM over a time-major sequence with the fused backward pass.

    Per step, with :math:`r_t` the reset flag, :math:`m` the optional regulariser masks and
    :math:`(c^0, h^0)` the reset carry:

    .. math::
        (c', h') = r_t (c^0, h^0) + (1 - r_t)(c_{t-1}, h_{t-1}), \\quad
        z = x_t W_{ih} + (h' \\odot m_{rec}) W_{hh} + b, \\\\
        c_t = f c' + i (g \\odot m_{upd}), \\quad h_t = o \\tanh(c_t) \\, [W_{proj}]

    (Gal & Ghahramani 2016 recurrent dropout, Semeniuta et al. 2016 update dropout, the
    projection LSTM of Sak et al. 2014.)

    Args:
      params: ``kernel_ih [I, 4H]``, ``kernel_hh [P, 4H]``, ``bias [4H]`` (gate order
        ``i, f, g, o`` as :class:`rnnlab.cells.LSTMCell`), optionally ``kernel_proj [H, P]``
        (``P = H`` without it), ``recurrent_mask [B, P]`` and ``update_mask [B, H]``.
        Weight drop is a masked ``kernel_hh``. No gradient flows to the masks.
      xs: inputs ``[T, B, I]``.
      carry: ``(c [B, H], h [B, P])`` in float32, the carry before step 0.
      mask: optional bool ``[T, B]``; false marks padding (the carry holds, outputs are 0,
        a reset flagged there has no effect).
      resets: optional bool ``[T, B]``; true restarts the state from ``reset_carry`` before
        that step (its gradient goes to ``reset_carry``, none to the carry before).
      reset_carry: ``(c, h)`` like ``carry``; ``None`` means ``carry``.
      options: static :class:`FusedOptions`.

    Returns:
      ``((c_T, h_T), ys)`` with ``ys [T, B, P]`` in float32 (zero at padding).
    """
    c0, h0 = carry
    m = None if mask is None else mask[..., None]
    r = None
    if resets is not None:
        r = resets[..., None] if m is None else resets[..., None] & m
        reset_carry = carry if reset_carry is None else tuple(reset_carry)
    else:
        reset_carry = (None, None)
    f32 = lambda a: None if a is None else a.astype(F32)
    extras = (reset_carry, f32(params.get("recurrent_mask")), f32(params.get("update_mask")))
    weights = (params["kernel_ih"], params["kernel_hh"], params["bias"], params.get("kernel_proj"))
    hs, c_t, h_t = _lstm(options, weights, xs, c0, h0, m, r, extras)
    ys = hs if m is None else jnp.where(m, hs, 0.0)
    return (c_t, h_t), ys
