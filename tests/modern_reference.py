"""Naive per-step references of the modern cells, written from the papers' equations.

Plain JAX, one Python step per time step, no rnnlab code: each ``*_step(p, carry, x)``
takes the parameter dict of the rnnlab cell (the tests check its layout against the
oracles) and :func:`run` drives any of them with rnnlab's layer semantics (padding holds the
carry and zeroes the output, a reset restarts from the initial carry before the step,
``reverse`` walks each sequence's valid part backwards).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np


def blockdiag(x, w, b):
    k = w.shape[0]
    xs = jnp.split(x, k, axis=-1)
    return jnp.concatenate([xs[h] @ w[h] + b[h] for h in range(k)], axis=-1)


def rglru_core(p, h, u):
    """De et al. 2024, eq. (1)-(4): one RG-LRU step on its input ``u``."""
    r = jax.nn.sigmoid(blockdiag(u, p["gate_a_kernel"], p["gate_a_bias"]))
    i = jax.nn.sigmoid(blockdiag(u, p["gate_x_kernel"], p["gate_x_bias"]))
    a = jax.nn.sigmoid(-p["a_param"]) ** (8.0 * r)
    return a * h + jnp.sqrt(1.0 - a**2) * (i * u)


def rglru_step(p, h, x):
    u = x @ p["kernel_in"] + p["bias_in"] if "kernel_in" in p else x
    h = rglru_core(p, h, u)
    return h, h


def hawk_step(p, carry, x):
    h, window = carry
    gate = jax.nn.gelu(x @ p["kernel_y"] + p["bias_y"])
    u = x @ p["kernel_x"] + p["bias_x"]
    k = p["conv_kernel"].shape[0]
    past = [window[:, j] for j in range(k - 1)] + [u]  # u_{t-K+1} ... u_t
    v = sum(p["conv_kernel"][j] * past[j] for j in range(k)) + p["conv_bias"]
    h = rglru_core(p, h, v)
    y = (h * gate) @ p["kernel_out"] + p["bias_out"]
    return (h, jnp.stack(past[1:], axis=1)), y


def s6_step(p, h, x, state_size):
    """Gu & Dao 2023, Algorithm 2 with ZOH on A and Euler on B, one step."""
    u = x @ p["kernel_in"] if "kernel_in" in p else x
    d = u.shape[-1]
    rank = p["dt_proj"].shape[0]
    proj = u @ p["x_proj"]
    low, b, c = proj[:, :rank], proj[:, rank : rank + state_size], proj[:, rank + state_size :]
    dt = jax.nn.softplus(low @ p["dt_proj"] + p["dt_bias"])
    a = -jnp.exp(p["A_log"])
    hs = h.reshape(-1, d, state_size)
    hs = jnp.exp(dt[:, :, None] * a) * hs + dt[:, :, None] * b[:, None, :] * u[:, :, None]
    y = jnp.einsum("bdn,bn->bd", hs, c) + p["D"] * u
    return hs.reshape(h.shape), y


def slstm_step(p, carry, x, num_heads):
    """Beck et al. 2024, eq. (8)-(17), unstabilised in exact form but with the stabiliser."""
    c, n, m, h = carry
    d = h.shape[-1] // num_heads
    rec = []
    for k in range(num_heads):
        rk = h[:, k * d : (k + 1) * d] @ p["kernel_hh"][k]  # [B, 4d], gate-major
        rec.append(rk.reshape(-1, 4, d))
    rec = jnp.concatenate(rec, axis=-1).reshape(h.shape[0], -1)  # gate-major over heads
    z = x @ p["kernel_ih"] + p["bias"] + rec
    i_pre, f_pre, z_pre, o_pre = jnp.split(z, 4, axis=-1)
    log_f = jnp.log(jax.nn.sigmoid(f_pre))
    m_new = jnp.maximum(log_f + m, i_pre)
    i, f = jnp.exp(i_pre - m_new), jnp.exp(log_f + m - m_new)
    c = f * c + i * jnp.tanh(z_pre)
    n = f * n + i
    h = jax.nn.sigmoid(o_pre) * c / n
    return (c, n, m_new, h), h


def mlstm_step(p, carry, x, num_heads, eps=1e-6):
    """Beck et al. 2024, eq. (19)-(27) per head, stabilised as in the authors' code."""
    c, n, m = carry
    hsz = p["kernel_o"].shape[1]
    d = hsz // num_heads
    qkv = x @ p["kernel_qkv"]
    gates = x @ p["kernel_if"] + p["bias_if"]
    o = jax.nn.sigmoid(x @ p["kernel_o"] + p["bias_o"])
    cs, ns, ms, outs = [], [], [], []
    for k in range(num_heads):
        q = qkv[:, k * d : (k + 1) * d]
        key = qkv[:, hsz + k * d : hsz + (k + 1) * d] / math.sqrt(d)
        v = qkv[:, 2 * hsz + k * d : 2 * hsz + (k + 1) * d]
        i_pre, f_pre = gates[:, k], gates[:, num_heads + k]
        log_f = jnp.log(jax.nn.sigmoid(f_pre))
        m_k = jnp.maximum(log_f + m[:, k], i_pre)
        i, f = jnp.exp(i_pre - m_k), jnp.exp(log_f + m[:, k] - m_k)
        c_k = f[:, None, None] * c[:, k] + i[:, None, None] * key[:, :, None] * v[:, None, :]
        n_k = f[:, None] * n[:, k] + i[:, None] * key
        num = jnp.einsum("bd,bde->be", q, c_k)
        den = jnp.maximum(jnp.abs(jnp.sum(q * n_k, -1)), jnp.exp(-m_k)) + eps
        cs.append(c_k), ns.append(n_k), ms.append(m_k), outs.append(num / den[:, None])
    h = o * jnp.concatenate(outs, axis=-1)
    return (jnp.stack(cs, 1), jnp.stack(ns, 1), jnp.stack(ms, 1)), h


def run(step, carry0, xs, seq_lengths=None, resets=None, reverse=False, reset_carry=None):
    """Batch-major ``xs [B, T, F]`` through ``step`` one example and one step at a time."""
    batch, steps = xs.shape[0], xs.shape[1]
    lengths = np.full(batch, steps) if seq_lengths is None else np.asarray(seq_lengths)
    outs, finals = [], []
    for b in range(batch):
        pick = lambda z, b=b: jax.tree.map(lambda leaf: leaf[b : b + 1], z)  # noqa: E731
        carry, ys = pick(carry0), [None] * steps
        order = range(lengths[b])
        if reverse:
            order = reversed(list(order))
        order = list(order)
        for j, t in enumerate(order):
            # Reversed, a segment that starts at t + 1 ends at t: restart there.
            if resets is None:
                restart = False
            elif reverse:
                restart = j > 0 and bool(resets[b, order[j - 1]])
            else:
                restart = bool(resets[b, t])
            if restart:
                carry = pick(carry0 if reset_carry is None else reset_carry)
            carry, y = step(carry, xs[b : b + 1, t])
            ys[t] = y[0]
        zero = jnp.zeros_like(ys[order[0]]) if order else None
        outs.append(jnp.stack([y if y is not None else zero for y in ys]))
        finals.append(carry)
    final = jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *finals)
    return final, jnp.stack(outs)
