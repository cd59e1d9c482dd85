"""The compiled CPU recurrence loops of the optional ``rnnlab-kernels`` package (XLA FFI).

The package (``kernels/`` in the repository; ``make venv`` builds it where a C++ compiler
exists) holds the time loops of :mod:`rnnlab.fused.lstm` and :mod:`rnnlab.fused.gru` as
XLA custom calls: each thread owns a fixed slice of the batch for the whole sequence, the
weights are packed once per call and stay in cache across steps, and the gate
nonlinearities run on each step's product while it is in cache. The LSTM loops run both
products of a step (``[x_t, h'] [W_ih; W_hh]`` forward, ``dz_t [W_hh^T | W_ih^T]`` backward,
giving the input gradient with the recurrent one), write the gate gradients over the
saved activations and compute the weight gradients as one product inside the backward
call. The GRU loops take the input projection from one XLA product before the loop. The
slices of a call run on XLA's own intra-op thread pool, or with ``RNNLAB_KERNEL_POOL=0`` on
threads started per call (decisions 136, 145).

Without the package (no compiler, a failed build, a TPU VM) :func:`unavailable_reason`
says why, and the fused XLA path runs instead.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil

import jax
import jax.numpy as jnp

Array = jax.Array
F32 = jnp.float32

# The library's calling convention (RnnlabKernelsAbi in kernels/csrc/lstm.cc).
ABI = 3

_TARGETS = {
    "rnnlab_lstm_forward": "RnnlabLstmForward",
    "rnnlab_lstm_backward": "RnnlabLstmBackward",
    "rnnlab_gru_forward": "RnnlabGruForward",
    "rnnlab_gru_backward": "RnnlabGruBackward",
}


@functools.cache
def unavailable_reason() -> str | None:
    """Why the compiled kernels cannot run here (``None`` when they can); registers them."""
    if os.environ.get("RNNLAB_KERNELS", "1") == "0":
        return "turned off (RNNLAB_KERNELS=0)"
    try:
        import rnnlab_kernels
    except ImportError:
        names = [os.environ.get("CXX", "c++"), "g++", "clang++"]
        if not any(shutil.which(c) for c in names):
            return f"rnnlab-kernels not installed: no C++ compiler ({', '.join(names)} not found)"
        return "rnnlab-kernels not installed (make kernels, or pip install ./kernels)"
    try:
        # RNNLAB_KERNELS_LIBRARY: a library built elsewhere (development builds).
        path = os.environ.get("RNNLAB_KERNELS_LIBRARY") or rnnlab_kernels.library_path()
        library = ctypes.CDLL(path)
        # An older build writes results that this module now passes empty: refuse it.
        abi = library.RnnlabKernelsAbi() if hasattr(library, "RnnlabKernelsAbi") else 1
        if abi != ABI:
            return f"rnnlab-kernels is out of date (ABI {abi}, need {ABI}): run make kernels"
        for name, symbol in _TARGETS.items():
            capsule = jax.ffi.pycapsule(getattr(library, symbol))
            jax.ffi.register_ffi_target(name, capsule, platform="cpu")
    except (ImportError, OSError, AttributeError) as e:
        return f"rnnlab-kernels failed to load: {e}"
    return None


def available() -> bool:
    """True when the compiled kernels are installed and registered."""
    return unavailable_reason() is None


def undifferentiated() -> bool:
    """Whether a forward pass that is not differentiated (evaluation, sampling) runs the
    kernel too: only with ``RNNLAB_KERNEL_FORWARD=1``. By default such a pass runs the
    fused path's XLA loops, which took less CPU time there at every measured shape but
    LSTM B (docs/performance.md): the kernel needs the input projection hoisted into a
    ``[T, B, G H]`` array, which the XLA loops do not; it pays off in training steps."""
    return os.environ.get("RNNLAB_KERNEL_FORWARD", "0") == "1"


def _threads() -> int:
    """Threads per call: ``RNNLAB_KERNEL_THREADS``, or 0 (the cores the process may use)."""
    return int(os.environ.get("RNNLAB_KERNEL_THREADS", "0"))


def _opt(a: Array | None) -> Array:
    """A float32 array, or an empty one standing for "absent"."""
    return jnp.zeros((0,), F32) if a is None else jnp.asarray(a, F32)


def _flags(a: Array | None) -> Array:
    """A ``[T, B(, 1)]`` bool flag array as float32 ``[T, B]`` (empty when absent)."""
    if a is None:
        return _opt(None)
    return a.reshape(a.shape[:2]).astype(F32)


def _call(name: str, shapes, *args, aliases=None):
    """``jax.ffi.ffi_call`` of a registered target with float32 results of ``shapes``;
    ``aliases`` maps an argument's index to the result that is written over it."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"the CPU recurrence kernels are unavailable: {reason}")
    out = [jax.ShapeDtypeStruct(s, F32) for s in shapes]
    call = jax.ffi.ffi_call(name, out, vmap_method="sequential", input_output_aliases=aliases or {})
    return call(*args, threads=_threads())


def lstm_forward(
    xs,
    weights,
    c0,
    h0,
    mask,
    resets,
    reset_carry,
    rec_mask,
    upd_mask,
    save_acts=True,
    save_cs=True,
    save_rows=True,
):
    """The LSTM forward loop: ``(acts [T, B, 4H], cs, hs [T, B, H], rows, c_T, h_T)``.

    ``weights = (w_ih [I, 4H], w_hh [H, 4H], b [4H])``: both products of a step run in the
    loop, as one product of the row ``[x_t, h']`` with ``[W_ih; W_hh]``, so no
    ``[T, B, 4H]`` input projection is written. ``rows [T, B, I + H]`` are those rows (``h'``
    the reset-aware, recurrent-masked state that entered ``W_hh``), kept for the weight
    gradient ``rows^T dZ``. ``mask``/``resets`` are ``[T, B, 1]`` bool or ``None``; the masks
    ``[B, H]`` or ``None`` (see :func:`rnnlab.fused.lstm_sequence` for the maths). Without
    ``save_acts``/``save_cs``/``save_rows`` (a pass that is not differentiated, or one that
    recomputes its gates) those results are ``None`` and the kernel writes none of them.
    """
    w_ih, w_hh, b = weights
    steps, batch, features = xs.shape
    hidden = w_hh.shape[0]
    rc_c, rc_h = reset_carry if resets is not None else (None, None)
    seq, state = (steps, batch, hidden), (batch, hidden)
    shapes = [
        (steps, batch, 4 * hidden) if save_acts else (0,),
        seq if save_cs else (0,),
        seq,
        (steps, batch, features + hidden) if save_rows else (0,),
        state,
        state,
    ]
    acts, cs, hs, rows, c_t, h_t = _call(
        "rnnlab_lstm_forward",
        shapes,
        xs.astype(F32),
        w_ih.astype(F32),
        w_hh.astype(F32),
        b.astype(F32),
        c0.astype(F32),
        h0.astype(F32),
        _flags(mask),
        _flags(resets),
        _opt(rc_c),
        _opt(rc_h),
        _opt(rec_mask),
        _opt(upd_mask),
    )
    keep = lambda a, saved: a if saved else None
    return keep(acts, save_acts), keep(cs, save_cs), hs, keep(rows, save_rows), c_t, h_t


def lstm_backward(
    acts, cs, c_first, dhs, rows, mask, resets, rc_c, rec_mask, upd_mask, weights, dc, dh,
    want_dx=True,
):  # fmt: skip
    """The LSTM backward loop: ``(dz [T, B, 4H], dx [T, B, I], db [4H], (dW_ih, dW_hh),
    dc_0, dh_0, d_reset_c, d_reset_h)``.

    ``c_first`` is the cell state before step 0 (step ``t`` reads ``cs[t - 1]``), ``weights =
    (w_ih, w_hh)``. ``dz`` is written over ``acts`` (XLA aliases the two buffers: the
    activations of a step are dead once its gradients exist), so the backward pass allocates
    no second ``[T, B, 4H]`` array; ``dx = dZ W_ih^T`` comes from the same per-step product
    as the recurrent gradient, and is ``None`` (not computed) without ``want_dx``. With the
    forward loop's ``rows [T, B, I + H]`` the weight gradients ``rows^T dZ`` are computed
    after the loop on every thread; without (``None``) they are ``None``.
    """
    w_ih, w_hh = weights
    steps, batch, gates = acts.shape
    features, hidden = w_ih.shape[0], gates // 4
    state = (batch, hidden)
    dx_shape = (steps, batch, features) if want_dx else (0,)
    dw_shapes = [(features, gates), (hidden, gates)] if rows is not None else [(0,), (0,)]
    dz, dx, db, dw_ih, dw_hh, *carries = _call(
        "rnnlab_lstm_backward",
        [acts.shape, dx_shape, (gates,), *dw_shapes, state, state, state, state],
        acts,
        cs,
        c_first.astype(F32),
        dhs.astype(F32),
        _opt(rows),
        _flags(mask),
        _flags(resets),
        _opt(rc_c if resets is not None else None),
        _opt(rec_mask),
        _opt(upd_mask),
        w_ih.astype(F32),
        w_hh.astype(F32),
        dc.astype(F32),
        dh.astype(F32),
        aliases={0: 0},
    )
    d_weights = None if rows is None else (dw_ih, dw_hh)
    return (dz, dx if want_dx else None, db, d_weights, *carries)


def gru_forward(gx, w_hh, b_hh, h0, mask, resets, reset_carry, rec_mask, upd_mask, save_gates=True):
    """The GRU forward loop: ``(gates [T, B, 4H] = [r, z, n, u_n], hs [T, B, H], h_T)``;
    ``gates`` is ``None``, and not written, without ``save_gates``."""
    steps, batch, gates = gx.shape
    hidden = gates // 3
    saved = (steps, batch, 4 * hidden) if save_gates else (0,)
    out, hs, h_t = _call(
        "rnnlab_gru_forward",
        [saved, (steps, batch, hidden), (batch, hidden)],
        gx.astype(F32),
        w_hh.astype(F32),
        b_hh.astype(F32),
        h0.astype(F32),
        _flags(mask),
        _flags(resets),
        _opt(reset_carry if resets is not None else None),
        _opt(rec_mask),
        _opt(upd_mask),
    )
    return (out if save_gates else None), hs, h_t


def gru_backward(gates, h_seen, dhs, mask, resets, rec_mask, upd_mask, w_hh, dh):
    """The GRU backward loop: ``(da [T, B, 3H], dh_0, d_reset)`` (``da``: gradients of the
    input pre-activations ``x W_ih + b_ih``)."""
    steps, batch, four_h = gates.shape
    hidden = four_h // 4
    return _call(
        "rnnlab_gru_backward",
        [(steps, batch, 3 * hidden), (batch, hidden), (batch, hidden)],
        gates,
        h_seen.astype(F32),
        dhs.astype(F32),
        _flags(mask),
        _flags(resets),
        _opt(rec_mask),
        _opt(upd_mask),
        w_hh.astype(F32),
        dh.astype(F32),
    )
