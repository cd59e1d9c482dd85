"""The modern cells against their authors' code (the ``compare`` extra): DeepMind's
``recurrentgemma`` (JAX) for the RG-LRU and the Hawk block, the xLSTM authors' ``xlstm``
(PyTorch) for sLSTM and mLSTM, ``mambapy`` (PyTorch) for S6. The oracles get rnnlab's
parameters mapped into their own layouts; outputs and gradients must agree on every path
each cell runs.

recurrentgemma skips the ``sqrt(1 - a^2)`` normalisation on the first token of each document
(``segment_pos == 0``); rnnlab applies the paper's equation at every step, so the oracle is
fed positions that never restart (``segment_pos = t + 1``)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import rnnlab
from rnnlab import cells

B, T = 2, 8


@pytest.fixture(autouse=True)
def _torch_float64():
    """The oracles build their modules in float64; the default goes back afterwards (a
    process-wide setting, which other test files in the same process must not inherit)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def _np(x):
    return np.asarray(x, np.float64)


def _t(x, grad=False):
    return torch.tensor(_np(x), requires_grad=grad)


# -- recurrentgemma --------------------------------------------------------------------------


def _value_and_grad(f):
    """``f``'s value and gradient in both arguments as one compiled program: op by op, the
    backward pass of the parallel paths and of recurrentgemma's scan compiles each primitive
    at each level size of the scan, most of these tests' time."""
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))


def _gemma(module, variables, x):
    positions = jnp.broadcast_to(jnp.arange(1, T + 1), (B, T))
    with jax.numpy_dtype_promotion("standard"):
        return module.apply(variables, x, positions, return_cache=False)[0]


def _rglru_vars(p):
    return {
        "a_param": p["a_param"],
        "input_gate": {"w": p["gate_x_kernel"], "b": p["gate_x_bias"]},
        "a_gate": {"w": p["gate_a_kernel"], "b": p["gate_a_bias"]},
    }


@pytest.mark.parametrize("impl", ["parallel", "scan"])
def test_rglru_equals_recurrentgemma(impl):
    from recurrentgemma.jax import layers

    cell = cells.RGLRUCell(8, 8, num_heads=2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (B, T, 8))
    w = jax.random.normal(jax.random.key(2), (B, T, 8))
    oracle = layers.RGLRU(width=8, num_heads=2)
    layer = rnnlab.RNN(cell, implementation=impl)

    def ours(p, x):
        return jnp.sum(layer(x, params=p) * w), layer(x, params=p)

    def theirs(p, x):
        y = _gemma(oracle, {"params": _rglru_vars(p)}, x)
        return jnp.sum(y * w), y

    p = cell.cell_params()
    (_, y), g = _value_and_grad(ours)(p, x)
    (_, y_ref), g_ref = _value_and_grad(theirs)(p, x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    for got, want in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_hawk_block_equals_recurrentgemma_recurrent_block():
    from recurrentgemma.jax import modules

    cell = cells.HawkCell(6, 8, out_features=6, num_heads=2, rngs=nnx.Rngs(0))
    cell.conv_kernel[...] = jax.random.normal(jax.random.key(3), cell.conv_kernel.shape)
    x = jax.random.normal(jax.random.key(1), (B, T, 6))
    w = jax.random.normal(jax.random.key(2), (B, T, 6))
    oracle = modules.RecurrentBlock(width=6, num_heads=2, lru_width=8, conv1d_temporal_width=4)
    layer = rnnlab.RNN(cell)

    def dense(p, name):
        return {"kernel": p[f"kernel_{name}"], "bias": p[f"bias_{name}"]}

    def theirs(p, x):
        variables = {
            "linear_y": dense(p, "y"),
            "linear_x": dense(p, "x"),
            "linear_out": dense(p, "out"),
            "conv_1d": {"w": p["conv_kernel"], "b": p["conv_bias"]},
            "rg_lru": _rglru_vars(p),
        }
        y = _gemma(oracle, {"params": variables}, x)
        return jnp.sum(y * w), y

    def ours(p, x):
        y = layer(x, params=p)
        return jnp.sum(y * w), y

    p = cell.cell_params()
    (_, y), g = _value_and_grad(ours)(p, x)
    (_, y_ref), g_ref = _value_and_grad(theirs)(p, x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# -- rnnlab's side of the PyTorch comparisons ------------------------------------------------


@functools.cache
def _ours(name: str, impl: str):
    """rnnlab's ``(params, x, w, y, (dparams, dx))`` for the loss ``sum(y * w)`` of the mLSTM
    (3 inputs, 8 units, 2 heads) or the S6 cell (8 channels, state 3, rank 2) on path
    ``impl``. Cached: it does not depend on the oracle's form (mLSTM) or scan (S6) that the
    tests vary, so each path's value and gradient is computed once."""
    if name == "mlstm":
        cell = cells.MLSTMCell(3, 8, num_heads=2, chunk_size=4, rngs=nnx.Rngs(0))
        features = 3
    else:
        cell = cells.S6Cell(8, 8, state_size=3, dt_rank=2, rngs=nnx.Rngs(0))
        features = 8
    x = jax.random.normal(jax.random.key(1), (B, T, features))
    w = jax.random.normal(jax.random.key(2), (B, T, 8))
    layer = rnnlab.RNN(cell, implementation=impl)

    def ours(p, x):
        y = layer(x, params=p)
        return jnp.sum(y * w), y

    p = cell.cell_params()
    (_, y), grads = _value_and_grad(ours)(p, x)
    return p, x, w, y, grads


# -- xlstm -------------------------------------------------------------------------------------


def _grads_match(ours, torch_tensors, names):
    for name in names:
        want = torch_tensors[name].grad.numpy()
        got = _np(ours[name])
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5, err_msg=name)


def test_slstm_equals_xlstm():
    from xlstm.blocks.slstm.src.vanilla import slstm_forward, slstm_forward_pointwise_slstm

    heads, hidden = 2, 8
    cell = cells.SLSTMCell(3, hidden, num_heads=heads, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (B, T, 3))
    w = jax.random.normal(jax.random.key(2), (B, T, hidden))
    p = cell.cell_params()

    def ours(p, x):
        y = rnnlab.RNN(cell)(x, params=p)
        return jnp.sum(y * w), y

    (_, y), (g_p, g_x) = _value_and_grad(ours)(p, x)

    tp = {name: _t(p[name], grad=True) for name in p}
    tx = _t(x, grad=True)
    wx = (tx @ tp["kernel_ih"]).transpose(0, 1)  # [S, B, 4H]
    r = tp["kernel_hh"].transpose(1, 2)  # [K, 4d, d]
    states = torch.zeros(4, B, hidden)
    all_states, _, _ = slstm_forward(wx, states, r, tp["bias"], slstm_forward_pointwise_slstm)
    y_ref = all_states[0, 1:].transpose(0, 1)
    np.testing.assert_allclose(_np(y), y_ref.detach().numpy(), rtol=1e-5, atol=1e-6)
    (y_ref * _t(w)).sum().backward()
    np.testing.assert_allclose(_np(g_x), tx.grad.numpy(), rtol=2e-4, atol=2e-5)
    _grads_match(g_p, tp, ["kernel_ih", "kernel_hh", "bias"])


@pytest.mark.parametrize("impl", ["parallel", "scan"])
@pytest.mark.parametrize("form", ["recurrent", "parallel", "chunkwise"])
def test_mlstm_equals_xlstm(impl, form):
    from xlstm.blocks.mlstm import backends

    heads, hidden = 2, 8
    d = hidden // heads
    p, x, w, y, (g_p, g_x) = _ours("mlstm", impl)

    tp = {name: _t(p[name], grad=True) for name in p}
    tx = _t(x, grad=True)
    qkv = tx @ tp["kernel_qkv"]
    per_head = lambda z: z.reshape(B, T, heads, d).transpose(1, 2)  # noqa: E731
    q, k, v = (per_head(z) for z in qkv.split(hidden, dim=-1))
    gates = tx @ tp["kernel_if"] + tp["bias_if"]
    i_pre = gates[..., :heads].transpose(1, 2)[..., None]  # [B, K, S, 1]
    f_pre = gates[..., heads:].transpose(1, 2)[..., None]
    if form == "parallel":
        h = backends.parallel_stabilized_simple(q, k, v, i_pre, f_pre)
    elif form == "chunkwise":
        h = backends.chunkwise_simple(q, k, v, i_pre[..., 0], f_pre[..., 0], chunk_size=4)
    else:
        c = torch.zeros(B, heads, d, d)
        n, m, outs = torch.zeros(B, heads, d, 1), torch.zeros(B, heads, 1, 1), []
        for t in range(T):
            sl = slice(t, t + 1)
            # The oracle squeezes its q, k, v in place: it gets copies.
            qt, kt, vt = (z[:, :, sl].clone() for z in (q, k, v))
            h_t, (c, n, m) = backends.recurrent_step_stabilized_simple(
                c, n, m, qt, kt, vt, i_pre[:, :, sl], f_pre[:, :, sl]
            )
            outs.append(h_t)
        h = torch.cat(outs, dim=2)
    o = torch.sigmoid(tx @ tp["kernel_o"] + tp["bias_o"])
    y_ref = o * h.transpose(1, 2).reshape(B, T, hidden)
    np.testing.assert_allclose(_np(y), y_ref.detach().numpy(), rtol=1e-4, atol=1e-5)
    (y_ref * _t(w)).sum().backward()
    np.testing.assert_allclose(_np(g_x), tx.grad.numpy(), rtol=2e-4, atol=2e-5)
    _grads_match(g_p, tp, list(p))


# -- mambapy -----------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["parallel", "scan"])
@pytest.mark.parametrize("pscan", [True, False])
def test_s6_equals_mambapy(impl, pscan):
    from mambapy.mamba import MambaBlock, MambaConfig

    channels, state, rank = 8, 3, 2
    p, x, w, y, (g_p, g_x) = _ours("s6", impl)

    config = MambaConfig(d_model=channels // 2, n_layers=1, d_state=state, dt_rank=rank)
    config.pscan = pscan
    block = MambaBlock(config).double()
    with torch.no_grad():
        block.x_proj.weight.copy_(_t(p["x_proj"]).T)
        block.dt_proj.weight.copy_(_t(p["dt_proj"]).T)
        block.dt_proj.bias.copy_(_t(p["dt_bias"]))
        block.A_log.copy_(_t(p["A_log"]))
        block.D.copy_(_t(p["D"]))
    tx = _t(x, grad=True)
    y_ref = block.ssm(tx, None)
    np.testing.assert_allclose(_np(y), y_ref.detach().numpy(), rtol=1e-4, atol=1e-5)
    (y_ref * _t(w)).sum().backward()
    np.testing.assert_allclose(_np(g_x), tx.grad.numpy(), rtol=2e-4, atol=2e-5)
    pairs = {
        "x_proj": block.x_proj.weight.grad.T,
        "dt_proj": block.dt_proj.weight.grad.T,
        "dt_bias": block.dt_proj.bias.grad,
        "A_log": block.A_log.grad,
        "D": block.D.grad,
    }
    for name, want in pairs.items():
        scale = float(want.abs().max()) + 1e-9
        np.testing.assert_allclose(_np(g_p[name]) / scale, want.numpy() / scale, atol=2e-4)
