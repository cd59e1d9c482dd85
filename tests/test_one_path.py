"""The one sequence runner against independent references: resets that restart from a given
reset carry, the regulariser masks and the projection LSTM on the default path; NNX's
train/eval mode in the stack; the time-parallel path of the linear-cell configs; and a
batch-normalised classifier trained by the engine that evaluates on its running averages.

The references are naive per-step loops written here (NumPy for values, a plain jnp loop for
gradients), never the library's own other implementation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_data import FakeSource
from flax import nnx
from rnn_reference import params64, randomize, sigmoid

import rnnlab
from rnnlab.layers import StackedRNN, dispatch
from rnnlab.train import config as cfg_lib
from rnnlab.train import loop

B, T, F, H, P = 3, 7, 4, 5, 3


def _inputs(seed=0, shape=(B, T, F)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _lstm_step(p, carry, x, recurrent_mask=None, update_mask=None):
    c, h = carry
    h_in = h if recurrent_mask is None else h * recurrent_mask
    z = x @ p["kernel_ih"] + h_in @ p["kernel_hh"] + p["bias"]
    n = c.shape[-1]
    i, f, o = sigmoid(z[:, :n]), sigmoid(z[:, n : 2 * n]), sigmoid(z[:, 3 * n :])
    g = np.tanh(z[:, 2 * n : 3 * n])
    if update_mask is not None:
        g = g * update_mask
    c = f * c + i * g
    h = o * np.tanh(c)
    if "kernel_proj" in p:
        h = h @ p["kernel_proj"]
    return (c, h), h


def _gru_step(p, h, x, recurrent_mask=None, update_mask=None):
    n = h.shape[-1]
    h_in = h if recurrent_mask is None else h * recurrent_mask
    a = x @ p["kernel_ih"] + p["bias_ih"]
    u = h_in @ p["kernel_hh"] + p["bias_hh"]
    r, z = sigmoid(a[:, :n] + u[:, :n]), sigmoid(a[:, n : 2 * n] + u[:, n : 2 * n])
    cand = np.tanh(a[:, 2 * n :] + r * u[:, 2 * n :])
    if update_mask is not None:
        cand = cand * update_mask
    h = (1 - z) * cand + z * h
    return h, h


def _naive(step, carry, xs, lengths, resets, reset_carry):
    """Batch-major ``xs``; a flagged step restarts from ``reset_carry``; padding holds."""
    ys = np.zeros(xs.shape[:2] + (np.shape(step(carry, xs[:, 0])[1])[-1],))
    for t in range(xs.shape[1]):
        r = resets[:, t][:, None]
        state = jax.tree.map(lambda a, b, r=r: np.where(r, a, b), reset_carry, carry)
        new, y = step(state, xs[:, t])
        m = (t < lengths)[:, None]
        carry = jax.tree.map(lambda a, b, m=m: np.where(m, a, b), new, carry)
        ys[:, t] = np.where(m, y, 0.0)
    return carry, ys


def _cell(kind, seed=0):
    rngs = nnx.Rngs(seed)
    if kind == "lstm":
        cell = rnnlab.LSTMCell(F, H, rngs=rngs)
    elif kind == "lstm_proj":
        cell = rnnlab.LSTMCell(F, H, proj_features=P, rngs=rngs)
    else:
        cell = rnnlab.GRUCell(F, H, rngs=rngs)
    return randomize(cell, seed + 1, scale=0.4)


def _carries(cell, seed):
    rng = np.random.default_rng(seed)
    leaves = jax.tree.leaves(cell.initialize_carry((B, F)))
    made = [rng.normal(size=leaf.shape).astype(np.float32) for leaf in leaves]
    return made[0] if len(made) == 1 else tuple(made)


@pytest.mark.parametrize("implementation", ["auto", "scan"])
@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru"])
@pytest.mark.parametrize("masks", [False, True])
def test_resets_from_a_reset_carry_and_masks_match_a_naive_loop(kind, implementation, masks):
    cell = _cell(kind)
    layer = rnnlab.RNN(cell, implementation=implementation, return_carry=True)
    x = _inputs(1)
    lengths = np.array([7, 4, 6], np.int32)
    resets = np.zeros((B, T), bool)
    resets[0, 3] = resets[2, 0] = resets[1, 5] = True  # row 1's reset lies in its padding
    carry0, reset0 = _carries(cell, 2), _carries(cell, 3)
    p = params64(cell)
    params = dict(cell.cell_params())
    mask_args = {}
    if masks:
        rng = np.random.default_rng(4)
        rec_size = P if kind == "lstm_proj" else H
        rec = (rng.random((B, rec_size)) > 0.3).astype(np.float32) / 0.7
        upd = (rng.random((B, H)) > 0.4).astype(np.float32) / 0.6
        drop = (rng.random(p["kernel_hh"].shape) > 0.5).astype(np.float32) * 2
        params.update(
            recurrent_mask=jnp.asarray(rec),
            update_mask=jnp.asarray(upd),
            kernel_hh=params["kernel_hh"] * jnp.asarray(drop),
        )
        p = dict(p, kernel_hh=p["kernel_hh"] * drop)
        mask_args = dict(recurrent_mask=rec, update_mask=upd)
    ref_step = _gru_step if kind == "gru" else _lstm_step
    to64 = lambda c: jax.tree.map(lambda a: np.asarray(a, np.float64), c)
    want_carry, want = _naive(
        lambda c, xt: ref_step(p, c, xt, **mask_args),
        to64(carry0),
        x.astype(np.float64),
        lengths,
        resets,
        to64(reset0),
    )
    kw = dict(
        initial_carry=carry0,
        seq_lengths=jnp.asarray(lengths),
        resets=jnp.asarray(resets),
        reset_carry=reset0,
        params=params,
    )
    carry, y = layer(jnp.asarray(x), **kw)
    np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5)
    for got, ref in zip(jax.tree.leaves(carry), jax.tree.leaves(want_carry), strict=True):
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-5)

    # Gradients of every input against autodiff of a naive jnp loop over the cell's maths.
    def naive_jnp(params, x, c0, r0):
        carry, ys = c0, []
        for t in range(T):
            r = jnp.asarray(resets[:, t])[:, None]
            state = jax.tree.map(lambda a, b, r=r: jnp.where(r, a, b), r0, carry)
            new, y_t = cell.step_with(params, state, cell.project(params, x[:, t]))
            m = jnp.asarray(t < lengths)[:, None]
            carry = jax.tree.map(lambda a, b, m=m: jnp.where(m, a, b), new, carry)
            ys.append(jnp.where(m, y_t, 0.0))
        return carry, jnp.stack(ys, 1)

    weights = jnp.asarray(np.random.default_rng(5).normal(size=want.shape), jnp.float32)

    def loss(fn):
        def inner(params, x, c0, r0):
            carry, ys = fn(params, x, c0, r0)
            return jnp.sum(ys * weights) + sum(jnp.sum(a**2) for a in jax.tree.leaves(carry))

        return inner

    def layer_fn(params, x, c0, r0):
        kw2 = dict(kw, initial_carry=c0, reset_carry=r0, params=params)
        return layer(x, **kw2)

    args = (params, jnp.asarray(x), carry0, reset0)
    want_g = jax.grad(loss(naive_jnp), argnums=(0, 1, 2, 3))(*args)
    got_g = jax.jit(jax.grad(loss(layer_fn), argnums=(0, 1, 2, 3)))(*args)
    for name in ("kernel_ih", "kernel_hh", "kernel_proj", "bias", "bias_ih", "bias_hh"):
        if name in want_g[0]:
            np.testing.assert_allclose(
                got_g[0][name], want_g[0][name], rtol=1e-4, atol=1e-4, err_msg=name
            )
    for got, ref in zip(jax.tree.leaves(got_g[1:]), jax.tree.leaves(want_g[1:]), strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_auto_takes_the_fused_path_for_lstm_and_gru_with_resets_and_masks():
    x = jnp.asarray(_inputs(6))
    resets = jnp.zeros((B, T), bool).at[:, 2].set(True)
    for kind in ("lstm", "lstm_proj", "gru"):
        cell = _cell(kind)
        params = dict(cell.cell_params(), update_mask=jnp.ones((B, H)))
        with dispatch.recording() as record:
            layer = rnnlab.RNN(cell)
            jax.eval_shape(lambda x, p, f=layer: f(x, resets=resets, params=p), x, params)
        # On CPU with rnnlab-kernels installed the fused path runs its loops compiled
        # (tests/test_kernels.py); a projection LSTM stays on the XLA loops.
        compiled = kind != "lstm_proj" and rnnlab.fused.kernel.available()
        assert [impl for _, impl, _ in record] == ["kernel" if compiled else "fused"], record


def test_stacked_dropout_follows_train_and_eval_mode():
    stack = StackedRNN(F, H, 2, dropout=0.5, rngs=nnx.Rngs(0))
    x = jnp.asarray(_inputs(7))
    first, second = stack.layers[0], stack.layers[1]
    no_dropout = second(first(x))
    stack.eval()
    np.testing.assert_allclose(stack(x), no_dropout, rtol=1e-6, atol=1e-6)
    stack.train()
    y = stack(x, rngs=nnx.Rngs(dropout=3))
    # The same mask nnx.Dropout draws from the same stream, applied by hand between layers.
    dropped = nnx.Dropout(0.5)(first(x), rngs=nnx.Rngs(dropout=3))
    np.testing.assert_allclose(y, second(dropped), rtol=1e-6, atol=1e-6)
    assert not np.allclose(y, no_dropout)
    # A copy in evaluation form leaves the stack training: the one way besides .eval().
    view = nnx.with_attributes(stack, deterministic=True)
    np.testing.assert_allclose(view(x), no_dropout, rtol=1e-6, atol=1e-6)
    assert not stack.deterministic


def test_the_lru_adding_config_trains_on_the_parallel_path():
    from rnnlab.train import state as state_lib

    config = cfg_lib.load("experiments/adding.py:lru,T=20")
    info = {"task": "regression", "input_features": 2, "output_features": 1}
    model = state_lib.build_model(config, info, 0)
    x = jnp.ones((2, 20, 2))
    with dispatch.recording() as record:
        jax.eval_shape(lambda x: model({"inputs": x}, train=True), x)
    assert record and all(impl == "parallel" for _, impl, _ in record), record


def test_bn_lstm_classifier_trained_by_the_engine_evaluates_on_running_averages(tmp_path):
    c = cfg_lib.base_config()
    c.data.name = "fake_classification"
    c.data.seq_len = 6
    c.model.update(
        {
            "name": "classifier",
            "cell": "bn_lstm",
            "hidden_features": 8,
            "pooling": "last",
            "cell_kwargs": {"max_stat_steps": 6, "momentum": 0.5},
        }
    )
    c.optim.lr = 1e-2
    c.train.update(
        {"steps": 6, "batch_size": 8, "log_every": 3, "eval_every": 0, "checkpoint_every": 6}
    )
    c.train.stateful = False
    config = cfg_lib.lock(c)
    loop.train(config, str(tmp_path / "run"), source=FakeSource())
    run = loop.Run(config, str(tmp_path / "run"), source=FakeSource())
    state, _ = run.restore(run.checkpoints.latest_step())
    model = nnx.merge(run.graphdef, state.params, state.rest)
    cell = model.rnn.layers[0].cell
    # The training steps moved the running averages away from their initial zeros.
    assert float(jnp.max(jnp.abs(cell.mean_x[...]))) > 1e-3
    batch = next(iter(run.batches("validation")))
    x = {"inputs": jnp.asarray(batch["inputs"]), "seq_lengths": jnp.asarray(batch["seq_lengths"])}
    model.eval()
    full, _ = model(x)
    alone, _ = model({k: v[:1] for k, v in x.items()})
    np.testing.assert_allclose(alone, full[:1], rtol=1e-5, atol=1e-5)
    model.train()
    with_batch_stats, _ = model(x)
    assert not np.allclose(with_batch_stats, full, atol=1e-4)


def _naive_lstm_jnp(cell, x):
    carry = cell.initialize_carry((x.shape[0], F))
    ys = []
    for t in range(x.shape[1]):
        carry, y = cell(carry, x[:, t])
        ys.append(y)
    return jnp.stack(ys, 1)


def test_forward_mode_autodiff_works_by_default_and_fused_names_the_way_out():
    cell = _cell("lstm")
    x = jnp.asarray(_inputs(8))
    tangent = jnp.asarray(_inputs(9))
    layer = rnnlab.RNN(cell)
    y, dy = jax.jvp(layer, (x,), (tangent,))
    y_ref, dy_ref = jax.jvp(lambda v: _naive_lstm_jnp(cell, v), (x,), (tangent,))
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dy, dy_ref, rtol=1e-4, atol=1e-5)
    jac = jax.jacfwd(lambda v: layer(v)[0, -1])(x[:1])
    jac_ref = jax.jacrev(lambda v: _naive_lstm_jnp(cell, v)[0, -1])(x[:1])
    np.testing.assert_allclose(jac, jac_ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="implementation='scan'"):
        jax.jvp(rnnlab.RNN(cell, implementation="fused"), (x,), (tangent,))


@pytest.mark.parametrize("kind", ["gru", "lstm", "optimized_lstm"])
def test_stock_flax_cells_run_with_rnnlab_semantics(kind):
    make = {"gru": nnx.GRUCell, "lstm": nnx.LSTMCell, "optimized_lstm": nnx.OptimizedLSTMCell}
    cell = make[kind](F, H, rngs=nnx.Rngs(0))
    x = jnp.asarray(_inputs(10))
    ours = rnnlab.RNN(cell)(x)
    np.testing.assert_allclose(ours, nnx.RNN(cell)(x), rtol=1e-5, atol=1e-5)
    # Padding against a naive loop over the stock cell: outputs zero past each length,
    # the carry of the last valid step, reversal of the valid part only.
    lengths = np.array([7, 3, 5])
    carry, y = rnnlab.RNN(cell, return_carry=True)(x, seq_lengths=jnp.asarray(lengths))
    _, y_rev = rnnlab.RNN(cell, return_carry=True, reverse=True, keep_order=True)(
        x, seq_lengths=jnp.asarray(lengths)
    )
    for b, n in enumerate(lengths):
        c = cell.initialize_carry((1, F), nnx.Rngs(carry=0))
        want = []
        for t in range(n):
            c, out = cell(c, x[b : b + 1, t])
            want.append(out[0])
        np.testing.assert_allclose(y[b, :n], np.stack(want), rtol=1e-5, atol=1e-5)
        assert np.all(np.asarray(y[b, n:]) == 0)
        for got, ref in zip(jax.tree.leaves(carry), jax.tree.leaves(c), strict=True):
            np.testing.assert_allclose(got[b], ref[0], rtol=1e-5, atol=1e-5)
        c = cell.initialize_carry((1, F), nnx.Rngs(carry=0))
        back = {}
        for t in reversed(range(n)):
            c, out = cell(c, x[b : b + 1, t])
            back[t] = out[0]
        np.testing.assert_allclose(
            y_rev[b, :n], np.stack([back[t] for t in range(n)]), rtol=1e-5, atol=1e-5
        )
    stack = StackedRNN(
        F, H, 2, cell=lambda i, h, rngs: make[kind](i, h, rngs=rngs), rngs=nnx.Rngs(1)
    )
    assert stack(x).shape == (B, T, H)
