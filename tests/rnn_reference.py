"""Naive float64 NumPy references: the textbook recurrences, one step and one sequence at a time.

Nothing here calls rnnlab. Parameters are read from a cell once (as float64 arrays) and every
equation is written out per gate, so a slip in the library's fused maths shows up as a
mismatch. Sequences are processed one batch element at a time in plain Python loops.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def params64(cell) -> dict[str, np.ndarray]:
    """The cell's parameter arrays as float64 NumPy arrays, by attribute name."""
    out = {}
    for name in ("kernel_ih", "kernel_hh", "bias", "bias_ih", "bias_hh", "kernel_proj"):
        var = getattr(cell, name, None)
        if var is not None:
            out[name] = np.asarray(var[...], np.float64)
    return out


def randomize(module, seed: int = 0, scale: float = 0.5):
    """Replaces every parameter of ``module`` by N(0, scale^2) draws (biases included), and
    gives its random streams concrete keys (``nnx.eval_shape`` leaves them abstract)."""
    rng = np.random.default_rng(seed)
    for _, var in nnx.iter_graph(module):
        if isinstance(var, nnx.Param):
            value = rng.normal(0.0, scale, var.shape)
            var.set_value(jax.numpy.asarray(value, var.get_value().dtype))
        elif isinstance(var, nnx.RngKey):  # a dropout stream forked at construction
            var.set_value(jax.random.key(seed))
        elif isinstance(var, nnx.RngCount):
            var.set_value(jax.numpy.zeros((), jax.numpy.uint32))
    return module


def random_module(build, seed: int = 0):
    """``build()`` with random parameters, skipping its own initialisers.

    The module is built abstractly (``nnx.eval_shape``) and then filled from NumPy, so tests
    do not pay for compiling initialisers (an orthogonal init compiles a QR decomposition).
    """
    return randomize(nnx.eval_shape(build), seed)


def simple_step(p, h, x, activation="tanh"):
    pre = x @ p["kernel_ih"] + h @ p["kernel_hh"] + p["bias"]
    h = np.tanh(pre) if activation == "tanh" else np.maximum(pre, 0.0)
    return h, h


def lstm_step(p, carry, x, rec_mask=None, upd_mask=None):
    """One LSTM(P) step; ``rec_mask`` scales ``h`` where it meets ``W_hh`` (Gal), ``upd_mask``
    the candidate ``tanh(g)`` (Semeniuta)."""
    c, h = carry
    size = c.shape[-1]
    h_rec = h if rec_mask is None else h * rec_mask

    def gate(k):
        cols = slice(k * size, (k + 1) * size)
        return x @ p["kernel_ih"][:, cols] + h_rec @ p["kernel_hh"][:, cols] + p["bias"][cols]

    i, f, g, o = sigmoid(gate(0)), sigmoid(gate(1)), np.tanh(gate(2)), sigmoid(gate(3))
    if upd_mask is not None:
        g = g * upd_mask
    c = f * c + i * g
    h = o * np.tanh(c)
    if "kernel_proj" in p:
        h = h @ p["kernel_proj"]
    return (c, h), h


def gru_step(p, h, x, reset_after=True, rec_mask=None, upd_mask=None):
    """One GRU step; ``rec_mask`` scales ``h`` inside the gates only, ``upd_mask`` scales ``n``."""
    size = h.shape[-1]
    w, u, b_i, b_h = p["kernel_ih"], p["kernel_hh"], p["bias_ih"], p["bias_hh"]
    s = [slice(k * size, (k + 1) * size) for k in range(3)]
    hr = h if rec_mask is None else h * rec_mask
    r = sigmoid(x @ w[:, s[0]] + b_i[s[0]] + hr @ u[:, s[0]] + b_h[s[0]])
    z = sigmoid(x @ w[:, s[1]] + b_i[s[1]] + hr @ u[:, s[1]] + b_h[s[1]])
    if reset_after:
        n = np.tanh(x @ w[:, s[2]] + b_i[s[2]] + r * (hr @ u[:, s[2]] + b_h[s[2]]))
    else:
        n = np.tanh(x @ w[:, s[2]] + b_i[s[2]] + (r * hr) @ u[:, s[2]] + b_h[s[2]])
    if upd_mask is not None:
        n = n * upd_mask
    h = (1.0 - z) * n + z * h
    return h, h


def step_fn(cell):
    """The reference step ``(carry, x) -> (carry, y)`` for an rnnlab cell's kind and options."""
    p = params64(cell)
    kind = type(cell).__name__
    if kind == "SimpleCell":
        return lambda c, x: simple_step(p, c, x, cell.activation)
    if kind == "LSTMCell":
        return lambda c, x: lstm_step(p, c, x)
    if kind == "GRUCell":
        return lambda c, x: gru_step(p, c, x, cell.reset_after)
    raise ValueError(kind)


def zero_carry(cell, batch: int):
    """Zero carries of one sequence each: a list of ``batch`` carries."""
    if type(cell).__name__ == "LSTMCell":
        out = cell.proj_features or cell.hidden_features
        return [(np.zeros(cell.hidden_features), np.zeros(out)) for _ in range(batch)]
    return [np.zeros(cell.hidden_features) for _ in range(batch)]


def split_carry(carry, batch: int):
    """A batched carry (array or tuple of arrays, batch first) as a list of per-row carries."""
    if isinstance(carry, tuple | list):
        return [tuple(np.asarray(c, np.float64)[b] for c in carry) for b in range(batch)]
    return [np.asarray(carry, np.float64)[b] for b in range(batch)]


def stack_carry(carries):
    if isinstance(carries[0], tuple):
        return tuple(np.stack([c[k] for c in carries]) for k in range(len(carries[0])))
    return np.stack(carries)


def run_sequence(step, carry0, xs, length=None, reverse=False, resets=None, reset_carry=None):
    """One sequence ``xs[T, F]``: outputs in original order (zeros past ``length``), final carry.

    With ``reverse`` the valid part is processed from ``length - 1`` down to 0. ``resets[t]``
    marks the first step of a segment; whenever the step being processed lies in another
    segment than the previous one, the state restarts from ``reset_carry`` (default
    ``carry0``). Going forwards, a flag on step 0 restarts too (the carry came from an
    earlier batch of a stream and a new segment starts here); going backwards the first step
    processed is a segment's last, and nothing restarts there.
    """
    reset_carry = carry0 if reset_carry is None else reset_carry
    num_steps = xs.shape[0]
    length = num_steps if length is None else int(length)
    segment = np.cumsum(resets[:num_steps]) if resets is not None else np.zeros(num_steps)
    order = range(length - 1, -1, -1) if reverse else range(length)
    carry, outputs, previous = carry0, {}, None
    for t in order:
        if previous is not None and segment[t] != segment[previous]:
            carry = reset_carry
        if previous is None and not reverse and resets is not None and resets[t]:
            carry = reset_carry
        carry, outputs[t] = step(carry, xs[t])
        previous = t
    out_size = np.shape(step(carry0, xs[0])[1])[-1]
    ys = np.zeros((num_steps, out_size))
    for t, y in outputs.items():
        ys[t] = y
    return carry, ys


def run_batch(step, carries0, xs, lengths=None, reverse=False, resets=None, reset_carries=None):
    """:func:`run_sequence` for each row of ``xs[B, T, F]``; returns ``(stacked carry, ys)``.

    ``step`` is one step function or a list of one per row (e.g. per-row dropout masks);
    ``reset_carries`` a list of per-row reset carries (default: each row's ``carries0``).
    """
    carries, ys = [], []
    for b in range(xs.shape[0]):
        carry, y = run_sequence(
            step[b] if isinstance(step, list) else step,
            carries0[b],
            np.asarray(xs[b], np.float64),
            None if lengths is None else lengths[b],
            reverse,
            None if resets is None else resets[b],
            None if reset_carries is None else reset_carries[b],
        )
        carries.append(carry)
        ys.append(y)
    return stack_carry(carries), np.stack(ys)


def processing_order(ys, lengths):
    """Outputs of a reversed pass rearranged from original order into processing order."""
    out = np.array(ys)
    for b, length in enumerate(lengths):
        out[b, :length] = ys[b, :length][::-1]
    return out
