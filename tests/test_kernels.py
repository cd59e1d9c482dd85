"""The compiled CPU recurrence kernels (``rnnlab-kernels``, ``implementation="kernel"``)
against independent references, for every feature they claim: padding (``seq_lengths``),
resets from a given reset carry, the Gal recurrent and Semeniuta update masks, reversal, at
odd sizes (batch 1, hidden sizes that are not multiples of 16).

Values are checked against the float64 NumPy loops of ``rnn_reference`` and gradients
against autodiff of a float64 jnp loop written here from the equations; one-layer modules
against PyTorch's ``nn.LSTM``/``nn.GRU`` holding the same weights. Where the kernels are
not installed (no C++ compiler, a failed build) every test here is reported as not
applicable with the reason.
"""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from rnn_reference import gru_step, lstm_step, params64, randomize, run_batch

import rnnlab
from rnnlab.fused import kernel
from rnnlab.interop.torch import carry_from_torch, load_torch_rnn
from rnnlab.layers import dispatch
from tools.faults.process import one_cpu_device

REASON = kernel.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"not applicable: {REASON}")

T, F = 6, 3


@pytest.fixture(autouse=True)
def _kernel_in_every_pass(monkeypatch):
    """Passes that are not differentiated run the XLA loops by default
    (``kernel.undifferentiated``); the value checks here are of the kernel's forward loop."""
    monkeypatch.setenv("RNNLAB_KERNEL_FORWARD", "1")


def _cell(kind, hidden, seed=0):
    rngs = nnx.Rngs(seed)
    cls = rnnlab.LSTMCell if kind == "lstm" else rnnlab.GRUCell
    return randomize(cls(F, hidden, rngs=rngs), seed + 1, scale=0.4)


def _jnp_lstm(p, carry, x, rec, upd):
    """One LSTM step in jnp (gate order i, f, g, o), written from the equations."""
    c, h = carry
    n = c.shape[-1]
    z = x @ p["kernel_ih"] + (h * rec) @ p["kernel_hh"] + p["bias"]
    i, f = jax.nn.sigmoid(z[:n]), jax.nn.sigmoid(z[n : 2 * n])
    g, o = jnp.tanh(z[2 * n : 3 * n]) * upd, jax.nn.sigmoid(z[3 * n :])
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (c, h), h


def _jnp_gru(p, h, x, rec, upd):
    """One reset-after GRU step in jnp (gate order r, z, n)."""
    n = h.shape[-1]
    a = x @ p["kernel_ih"] + p["bias_ih"]
    u = (h * rec) @ p["kernel_hh"] + p["bias_hh"]
    r, z = jax.nn.sigmoid(a[:n] + u[:n]), jax.nn.sigmoid(a[n : 2 * n] + u[n : 2 * n])
    cand = jnp.tanh(a[2 * n :] + r * u[2 * n :]) * upd
    h = (1.0 - z) * cand + z * h
    return h, h


def _jnp_loop(step, carry0, xs, lengths, reverse, resets, reset_carry):
    """Each row on its own, in processing order: a step in another segment than the step
    processed before it restarts from ``reset_carry`` (and, going forwards, a flag on the
    first step too), as ``rnn_reference.run_sequence`` does; padding is skipped."""
    carries, outputs = [], []
    for b in range(xs.shape[0]):
        row = lambda tree, b=b: jax.tree.map(lambda a: a[b], tree)
        carry, start, out = row(carry0), row(reset_carry), {}
        segment = np.cumsum(resets[b])
        order = range(lengths[b] - 1, -1, -1) if reverse else range(lengths[b])
        previous = None
        for t in order:
            if previous is not None and segment[t] != segment[previous]:
                carry = start
            if previous is None and not reverse and resets[b, t]:
                carry = start
            carry, out[t] = step(b, carry, xs[b, t])
            previous = t
        zero = jnp.zeros_like(jax.tree.leaves(carry)[-1])
        outputs.append(jnp.stack([out.get(t, zero) for t in range(xs.shape[1])]))
        carries.append(carry)
    return jax.tree.map(lambda *a: jnp.stack(a), *carries), jnp.stack(outputs)


def _case(kind, batch, hidden, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, T, F)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=batch).astype(np.int32)
    lengths[0] = T
    resets = rng.random((batch, T)) < 0.3
    resets[0, 2] = True  # at least one reset inside a valid span
    rec = ((rng.random((batch, hidden)) > 0.3) / 0.7).astype(np.float32)
    upd = ((rng.random((batch, hidden)) > 0.4) / 0.6).astype(np.float32)
    shapes = [(batch, hidden)] * (2 if kind == "lstm" else 1)
    states = [tuple(rng.normal(size=s).astype(np.float32) for s in shapes) for _ in range(2)]
    carry0, reset0 = (s if kind == "lstm" else s[0] for s in states)
    return x, lengths, resets, rec, upd, carry0, reset0


@pytest.mark.parametrize("reverse, remat", [(False, None), (True, None), (False, "full")])
# hidden 48: 4H = 192, a multiple of the 64-column panels, so the LSTM's weight gradients are
# written in place, three panels over two threads (hidden 5 and 17 go through a buffer).
@pytest.mark.parametrize("batch, hidden", [(1, 5), (3, 17), (2, 48)])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_kernel_matches_float64_loops_with_every_feature(kind, batch, hidden, reverse, remat):
    """``remat`` recomputes the gates in XLA and runs only the backward loop compiled (the
    LSTM's weight gradient then comes from the rebuilt previous states, not kept rows)."""
    cell = _cell(kind, hidden)
    x, lengths, resets, rec, upd, carry0, reset0 = _case(kind, batch, hidden, seed=batch + hidden)
    params = dict(cell.cell_params(), recurrent_mask=jnp.asarray(rec), update_mask=jnp.asarray(upd))
    layer = rnnlab.RNN(
        cell, implementation="kernel", return_carry=True, reverse=reverse, remat=remat
    )
    kw = dict(seq_lengths=jnp.asarray(lengths), resets=jnp.asarray(resets), keep_order=True)

    def run(params, x, c0, r0):
        return layer(x, initial_carry=c0, reset_carry=r0, params=params, **kw)

    # Values: the NumPy float64 reference loops, one row at a time.
    p = params64(cell)
    ref = lstm_step if kind == "lstm" else gru_step
    steps = [
        lambda c, xt, b=b: ref(p, c, xt, rec_mask=rec[b], upd_mask=upd[b]) for b in range(batch)
    ]
    rows = lambda s: [jax.tree.map(lambda a, b=b: np.float64(a[b]), s) for b in range(batch)]
    want_carry, want = run_batch(
        steps, rows(carry0), x, lengths, reverse, resets, reset_carries=rows(reset0)
    )
    with dispatch.recording() as record:
        carry, y = jax.jit(run)(params, jnp.asarray(x), carry0, reset0)
    assert [impl for _, impl, _ in record] == ["kernel"]
    np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5)
    for got, ref_carry in zip(jax.tree.leaves(carry), jax.tree.leaves(want_carry), strict=True):
        np.testing.assert_allclose(got, ref_carry, rtol=2e-5, atol=2e-5)

    # Gradients of every input: autodiff of the float64 jnp loop.
    weights = np.random.default_rng(7).normal(size=want.shape)
    names = [k for k in params if k not in ("recurrent_mask", "update_mask")]

    def loss(out):
        carry, ys = out
        return jnp.sum(ys * weights.astype(ys.dtype)) + sum(
            jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(carry)
        )

    args = ({k: params[k] for k in names}, jnp.asarray(x), carry0, reset0)
    fixed = {k: params[k] for k in ("recurrent_mask", "update_mask")}
    got = jax.jit(jax.grad(lambda w, *a: loss(run({**w, **fixed}, *a)), argnums=(0, 1, 2, 3)))(
        *args
    )
    step = _jnp_lstm if kind == "lstm" else _jnp_gru
    with jax.enable_x64(True):
        args64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), args)
        rec64, upd64 = jnp.asarray(rec, jnp.float64), jnp.asarray(upd, jnp.float64)

        def naive(w, x, c0, r0):
            fn = lambda b, c, xt: step(w, c, xt, rec64[b], upd64[b])
            return loss(_jnp_loop(fn, c0, x, lengths, reverse, resets, r0))

        want_g = jax.grad(naive, argnums=(0, 1, 2, 3))(*args64)
        want_loss = float(naive(*args64))
    np.testing.assert_allclose(float(loss((carry, y))), want_loss, rtol=1e-5)
    leaves = jax.tree_util.tree_leaves_with_path(got)
    for (path, g), w in zip(leaves, jax.tree.leaves(want_g), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=jax.tree_util.keystr(path))


# T * B = 640 rows: the weight gradient's product takes its rows in blocks of 512 (one full
# block, then a part), copying each block before its tiles read it (kernels/csrc/tiles.h).
@pytest.mark.parametrize("hidden", [48, 17])  # 48: dW written in place; 17: the padded buffer
def test_lstm_weight_gradient_over_more_rows_than_one_block(hidden):
    steps, batch = 40, 16
    cell = _cell("lstm", hidden, seed=hidden)
    params = cell.cell_params()
    x = np.random.default_rng(3).normal(size=(batch, steps, F)).astype(np.float32)
    weights = np.random.default_rng(4).normal(size=(batch, steps, hidden))
    layer = rnnlab.RNN(cell, implementation="kernel")

    def loss(p, x):
        return jnp.sum(layer(x, params=p) * weights.astype(np.float32))

    with dispatch.recording() as record:
        got = jax.jit(jax.grad(loss))(params, jnp.asarray(x))
    assert [impl for _, impl, _ in record] == ["kernel"]
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        ones = jnp.ones(hidden, jnp.float64)

        def naive(p, x):
            rows = jax.vmap(lambda carry, xt: _jnp_lstm(p, carry, xt, ones, ones))
            zeros = jnp.zeros((batch, hidden), jnp.float64)
            _, ys = jax.lax.scan(rows, (zeros, zeros), jnp.swapaxes(x, 0, 1))
            return jnp.sum(jnp.swapaxes(ys, 0, 1) * weights)

        want = jax.grad(naive)(p64, jnp.asarray(x, jnp.float64))
    for name in ("kernel_ih", "kernel_hh", "bias"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4, err_msg=name)


TORCH = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


@pytest.mark.parametrize("batch, hidden", [(1, 19), (4, 33)])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_kernel_matches_pytorch(kind, batch, hidden):
    torch.manual_seed(batch + hidden)
    module = TORCH[kind](F, hidden, batch_first=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, T, F)).astype(np.float32)
    hx = [rng.normal(size=(1, batch, hidden)).astype(np.float32) for _ in range(len(TORCH))]
    hx = hx if kind == "lstm" else hx[:1]
    xt = torch.tensor(x, requires_grad=True)
    ht = [torch.tensor(h, requires_grad=True) for h in hx]
    yt, states = module(xt, tuple(ht) if kind == "lstm" else ht[0])
    weight = rng.normal(size=yt.shape).astype(np.float32)
    last = states[0] if kind == "lstm" else states
    (torch.sum(torch.tensor(weight) * yt) + torch.sum(last**2)).backward()

    layer = load_torch_rnn(module, rnn_kwargs={"implementation": "kernel"})

    def loss(layer, x, hx):
        carry0 = carry_from_torch(layer, tuple(hx) if kind == "lstm" else hx[0])
        carry, y = layer(x, initial_carry=carry0, return_carry=True)
        h_last = carry[1] if kind == "lstm" else carry
        return jnp.sum(weight * y) + jnp.sum(h_last**2), y

    grad = nnx.jit(nnx.grad(loss, argnums=(1, 2), has_aux=True))
    (g_x, g_hx), y = grad(layer, jnp.asarray(x), [jnp.asarray(h) for h in hx])
    tol = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(g_x, xt.grad.numpy(), **tol)
    for got, want in zip(g_hx, ht, strict=True):
        np.testing.assert_allclose(got, want.grad.numpy(), **tol)


def test_auto_takes_the_kernel_on_cpu_and_says_why_not_where_it_cannot():
    x = jnp.ones((2, 4, F))
    resets = jnp.zeros((2, 4), bool).at[:, 1].set(True)
    cases = {
        "lstm": (_cell("lstm", 5), "kernel", None),
        "gru": (_cell("gru", 5), "kernel", None),
        "proj": (rnnlab.LSTMCell(F, 5, proj_features=3, rngs=nnx.Rngs(0)), "fused", "projection"),
        "bf16": (
            rnnlab.LSTMCell(F, 5, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)),
            "fused",
            "bfloat16",
        ),
    }
    for name, (cell, impl, why) in cases.items():
        with dispatch.recording() as record:
            layer = rnnlab.RNN(cell)
            jax.eval_shape(lambda x, f=layer: f(x, resets=resets), x)
        [(_, got, reason)] = record
        assert got == impl, (name, record)
        assert (reason is None) if why is None else (why in reason), (name, record)
    with pytest.raises(ValueError, match="implementation='kernel' cannot run this call"):
        rnnlab.RNN(cases["proj"][0], implementation="kernel")(x)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_kernel_padding_garbage_changes_neither_outputs_nor_carry_nor_gradients(kind):
    cell = _cell(kind, 9)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, T, F)).astype(np.float32)
    lengths = np.array([T, 2], np.int32)
    pad = np.arange(T)[None, :] >= lengths[:, None]
    garbage = np.where(pad[..., None], 50.0 * rng.normal(size=x.shape), x).astype(np.float32)
    layer = rnnlab.RNN(cell, implementation="kernel", return_carry=True)

    def loss(x):
        carry, y = layer(x, seq_lengths=jnp.asarray(lengths))
        return jnp.sum(y * jnp.cos(y)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry))

    run = jax.jit(jax.value_and_grad(loss))
    (value, grad), (value_g, grad_g) = run(jnp.asarray(x)), run(jnp.asarray(garbage))
    assert float(value) == float(value_g)
    valid = lambda g: np.where(pad[..., None], 0.0, np.asarray(g))  # padding's own gradient aside
    np.testing.assert_array_equal(valid(grad), valid(grad_g))


def test_a_step_split_over_several_devices_takes_the_fused_path_and_says_why():
    """The kernel's custom call has no partitioning rule (XLA would run the whole batch on
    every device), so a step traced for a mesh of several devices runs the fused path, and
    the reason names the split; the same layer traced for one device runs the kernel."""
    from rnnlab import target

    layer = rnnlab.RNN(rnnlab.LSTMCell(3, 5, rngs=nnx.Rngs(0)))
    x = jnp.ones((4, 6, 3))
    with dispatch.recording() as whole:
        jax.jit(target.partitioned_over(1, lambda x: layer(x)))(x)
    with dispatch.recording() as split:
        jax.jit(target.partitioned_over(8, lambda x: layer(x)))(x)
    assert [impl for _, impl, _ in whole] == ["kernel"]
    assert [impl for _, impl, _ in split] == ["fused"]
    assert "split over 8 devices" in split[0][2]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_only_differentiated_passes_run_the_kernel_unless_asked(kind, monkeypatch):
    """The measured rule (docs/performance.md): a forward pass that is not differentiated
    runs the fused XLA loops, a differentiated one the kernel's, and
    ``RNNLAB_KERNEL_FORWARD=1`` puts the kernel in both."""
    layer = rnnlab.RNN(_cell(kind, 5), implementation="kernel")
    x = jnp.ones((2, 4, F))
    target = f"rnnlab_{kind}_forward"

    def compiled(differentiate: bool) -> str:
        fn = jax.grad(lambda x: jnp.sum(layer(x))) if differentiate else (lambda x: layer(x))
        return jax.jit(fn).lower(x).as_text()

    monkeypatch.delenv("RNNLAB_KERNEL_FORWARD")
    assert target not in compiled(False)
    assert target in compiled(True)
    monkeypatch.setenv("RNNLAB_KERNEL_FORWARD", "1")
    assert target in compiled(False)


def test_a_build_of_another_calling_convention_is_refused(monkeypatch):
    """A stale library (here one without the ABI symbol at all, as builds before it) is
    reported out of date and never called: this module may pass it results it would
    overrun."""
    monkeypatch.setenv("RNNLAB_KERNELS_LIBRARY", ctypes.util.find_library("m"))
    reason = kernel.unavailable_reason.__wrapped__()
    assert reason is not None and "out of date (ABI 1, need 3)" in reason


# The instructions that merely name a custom call's results.
OWN_OPS = ("get-tuple-element(", "bitcast(", "parameter(", "custom-call(")


def test_the_lstm_loops_run_both_products_and_write_gate_gradients_in_place():
    """The differentiated LSTM step runs no product in XLA: the input projection and
    ``dZ W_ih^T`` are in the loops and the weight gradients in the compiled backward
    call; the backward loop's gate gradients are written over the saved activations (its
    first result aliases its first operand), so the step keeps one ``[T, B, 4H]`` buffer
    instead of three. Where the inputs are constants the loop computes no input
    gradient."""
    steps, batch, hidden = 5, 3, 8
    graphdef, params = nnx.split(rnnlab.RNN(_cell("lstm", hidden), implementation="kernel"))
    x = jnp.ones((batch, steps, F))
    loss = lambda params, x: jnp.sum(nnx.merge(graphdef, params)(x) ** 2)
    gate_sized = f"f32[{steps},{batch},{4 * hidden}]"
    input_sized = f"f32[{steps},{batch},{F}]"
    for argnums in ((0, 1), 0):
        hlo = jax.jit(jax.grad(loss, argnums)).lower(params, x).compile().as_text()
        lines = hlo.splitlines()
        [backward] = [line for line in lines if "rnnlab_lstm_backward" in line]
        assert "output_to_operand_aliasing={{0}: (0, {})}" in backward, backward
        results = backward.split("custom-call(")[0]
        assert (input_sized in results) == (argnums == (0, 1)), backward
        # No other instruction makes a gate-sized array (a product, a copy, a fusion).
        made = [line for line in lines if f"= {gate_sized}" in line]
        assert not [m for m in made if not any(k in m for k in OWN_OPS)], made
        assert not [line for line in lines if " dot(" in line]


# One differentiated LSTM and GRU step through the kernel, its value and every gradient
# saved to the .npz named by argv[1]: run with the slices on XLA's pool and on threads
# started per call (RNNLAB_KERNEL_POOL, read once per process).
POOL_PROGRAM = """
import sys
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
import rnnlab
out = {}
for kind, cls in (("lstm", rnnlab.LSTMCell), ("gru", rnnlab.GRUCell)):
    layer = rnnlab.RNN(cls(5, 64, rngs=nnx.Rngs(0)), implementation="kernel")
    graphdef, params = nnx.split(layer)
    x = jax.random.normal(jax.random.key(1), (16, 12, 5))
    loss = lambda p, x: jnp.sum(jnp.sin(nnx.merge(graphdef, p)(x)))
    value, grads = jax.jit(jax.value_and_grad(loss, (0, 1)))(params, x)
    out[kind] = np.asarray(value)
    out.update({f"{kind}{i}": np.asarray(g) for i, g in enumerate(jax.tree.leaves(grads))})
np.savez(sys.argv[1], **out)
"""


@pytest.mark.slow(2)
@pytest.mark.parametrize("threads", ["", "3"])
def test_the_slices_on_xlas_pool_compute_what_threads_per_call_do(threads, tmp_path):
    """Where the slices of a call run changes no bit of the result: each slice of rows and
    each weight-gradient panel is computed whole by whichever thread takes it, and the
    slices' bias gradients are summed in slice order. ``make test`` runs the kernels on
    threads per call (``RNNLAB_KERNEL_POOL=0``), a training run on XLA's pool, so the pool
    runs here in processes of their own, at a batch that splits across threads and a
    hidden size whose weight gradients the pool cuts into more runs of panels than there
    are threads (4H = 256: four panels of 64); also with three threads per call, where
    adding the slices' parts as they finished gave other bits from run to run."""
    results = {}
    for pool in ("0", "1"):
        env = one_cpu_device({**os.environ, "RNNLAB_KERNEL_POOL": pool})
        if threads:
            env["RNNLAB_KERNEL_THREADS"] = threads
        path = tmp_path / f"pool{pool}.npz"
        command = [sys.executable, "-c", POOL_PROGRAM, str(path)]
        subprocess.run(command, env=env, check=True, timeout=300)
        results[pool] = dict(np.load(path))
    assert sorted(results["0"]) == sorted(results["1"]) and len(results["0"]) > 6
    for name, want in results["0"].items():
        np.testing.assert_array_equal(results["1"][name], want, err_msg=name)
