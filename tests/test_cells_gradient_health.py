"""Normalised and constrained cells against float64 NumPy loops of their papers' equations.

Layer-norm LSTM/GRU (Ba et al. 2016), recurrent batch-norm LSTM (Cooijmans et al. 2016),
IndRNN (Li et al. 2018) and the expRNN orthogonal cell (Lezcano-Casado & Martinez-Rubio 2019).
Every reference below is written per gate from the equations, without calling rnnlab.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from rnn_reference import randomize

import rnnlab
from rnnlab.cells import (
    BNLSTMCell,
    IndRNNCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    OrthogonalCell,
    make_cell,
)
from rnnlab.layers import BNLSTM

B, IN, H, T = 3, 4, 5, 6


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def p64(cell):
    return {n: np.asarray(v, np.float64) for n, v in cell.cell_params().items()}


def inputs(seed=0, shape=(B, T, IN)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def gate(z, k, size):
    return z[..., k * size : (k + 1) * size]


def layer_norm_ref(z, gain, bias=None, groups=1, eps=1e-5):
    """Mean/variance over each block of ``size / groups`` features, one vector at a time."""
    out = np.empty_like(z)
    width = z.shape[-1] // groups
    for k in range(groups):
        blk = z[..., k * width : (k + 1) * width]
        mu = blk.mean(-1, keepdims=True)
        var = ((blk - mu) ** 2).mean(-1, keepdims=True)
        out[..., k * width : (k + 1) * width] = (blk - mu) / np.sqrt(var + eps)
    out = out * gain
    return out if bias is None else out + bias


def run_ref(step, carry, xs):
    """``xs`` batch-major ``[B, T, F]``; returns outputs ``[B, T, H]`` and the final carry."""
    ys = []
    for t in range(xs.shape[1]):
        carry, y = step(carry, xs[:, t].astype(np.float64))
        ys.append(y)
    return np.stack(ys, 1), carry


# -- layer normalisation ----------------------------------------------------------------------


@pytest.mark.parametrize("per_gate", [False, True])
def test_layernorm_lstm_matches_ba_et_al_equations(per_gate):
    cell = randomize(LayerNormLSTMCell(IN, H, per_gate=per_gate, rngs=nnx.Rngs(0)), 1)
    p, groups = p64(cell), 4 if per_gate else 1

    def step(carry, x):
        c, h = carry
        z = (
            layer_norm_ref(h @ p["kernel_hh"], p["ln_hh_scale"], groups=groups)
            + layer_norm_ref(x @ p["kernel_ih"], p["ln_ih_scale"], groups=groups)
            + p["bias"]
        )
        i, f, g, o = (gate(z, k, H) for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(layer_norm_ref(c, p["ln_c_scale"], p["ln_c_bias"]))
        return (c, h), h

    xs = inputs(2)
    want, (c_ref, h_ref) = run_ref(step, (np.zeros((B, H)), np.zeros((B, H))), xs)
    (c, h), got = rnnlab.RNN(cell, return_carry=True)(jnp.asarray(xs))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c, c_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per_gate", [False, True])
def test_layernorm_gru_matches_reference(per_gate):
    cell = randomize(LayerNormGRUCell(IN, H, per_gate=per_gate, rngs=nnx.Rngs(0)), 3)
    p, groups = p64(cell), 3 if per_gate else 1

    def step(h, x):
        xz = layer_norm_ref(x @ p["kernel_ih"], p["ln_ih_scale"], p["bias_ih"], groups)
        hz = layer_norm_ref(h @ p["kernel_hh"], p["ln_hh_scale"], p["bias_hh"], groups)
        r = sigmoid(gate(xz, 0, H) + gate(hz, 0, H))
        z = sigmoid(gate(xz, 1, H) + gate(hz, 1, H))
        n = np.tanh(gate(xz, 2, H) + r * gate(hz, 2, H))
        h = (1 - z) * n + z * h
        return h, h

    xs = inputs(4)
    want, _ = run_ref(step, np.zeros((B, H)), xs)
    got = rnnlab.RNN(cell)(jnp.asarray(xs))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_layernorm_lstm_is_invariant_to_input_scale():
    # LN of the gate pre-activations removes any rescaling of the input (Ba et al., sec. 5).
    cell = randomize(LayerNormLSTMCell(IN, H, rngs=nnx.Rngs(0)), 5)
    xs = jnp.asarray(inputs(6))
    np.testing.assert_allclose(rnnlab.RNN(cell)(xs), rnnlab.RNN(cell)(xs * 50.0), atol=1e-4)


# -- recurrent batch normalisation ------------------------------------------------------------


def bn_lstm_ref(p, xs, *, stats=None, max_steps, eps=1e-5, weights=None):
    """Cooijmans et al. eq. 6-8 over a batch; ``stats`` = running averages (evaluation).

    Returns outputs, final ``(c, h)`` and the per-step batch statistics used in training.
    """
    c, h = np.zeros((xs.shape[0], H)), np.zeros((xs.shape[0], H))
    ys, used = [], []
    for t in range(xs.shape[1]):
        w = np.ones(xs.shape[0]) if weights is None else weights[:, t].astype(np.float64)
        w = w[:, None]

        def moments(z, w=w):
            n = max(w.sum(), 1.0)
            mu = (w * z).sum(0) / n
            return mu, (w * (z - mu) ** 2).sum(0) / n

        wx, wh = xs[:, t].astype(np.float64) @ p["kernel_ih"], h @ p["kernel_hh"]
        s = min(t, max_steps - 1)
        if stats is None:
            (mx, vx), (mh, vh) = moments(wx), moments(wh)
        else:
            mx, vx, mh, vh = (stats[k][s] for k in ("mean_x", "var_x", "mean_h", "var_h"))
        z = (
            p["gamma_x"] * (wx - mx) / np.sqrt(vx + eps)
            + p["gamma_h"] * (wh - mh) / np.sqrt(vh + eps)
            + p["bias"]
        )
        i, f, g, o = (gate(z, k, H) for k in range(4))
        c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        mc, vc = moments(c_new) if stats is None else (stats["mean_c"][s], stats["var_c"][s])
        h_new = sigmoid(o) * np.tanh(p["gamma_c"] * (c_new - mc) / np.sqrt(vc + eps) + p["beta_c"])
        keep = w > 0
        c, h = np.where(keep, c_new, c), np.where(keep, h_new, h)
        ys.append(np.where(keep, h_new, 0.0))
        used.append((mx, vx, mh, vh, mc, vc, w.sum()))
    return np.stack(ys, 1), (c, h), used


def running_update_ref(old, used, max_steps, momentum):
    names = ("mean_x", "var_x", "mean_h", "var_h", "mean_c", "var_c")
    new = {k: v.copy() for k, v in old.items()}
    for s in range(max_steps):
        steps = [u for t, u in enumerate(used) if min(t, max_steps - 1) == s and u[6] > 0]
        if not steps:
            continue
        n = sum(u[6] for u in steps)
        for j, k in enumerate(names):
            pooled = sum(u[6] * u[j] for u in steps) / n
            new[k][s] = momentum * old[k][s] + (1 - momentum) * pooled
    return new


def bn_stats(cell):
    names = ("mean_x", "var_x", "mean_h", "var_h", "mean_c", "var_c")
    return {k: np.asarray(getattr(cell, k)[...], np.float64) for k in names}


def test_bn_lstm_training_uses_per_step_batch_statistics_and_updates_running_averages():
    layer = BNLSTM(IN, H, max_stat_steps=4, momentum=0.8, rngs=nnx.Rngs(0))
    randomize(layer, 7, scale=0.4)
    p, old = p64(layer.cell), bn_stats(layer.cell)
    xs = inputs(8)
    want, _, used = bn_lstm_ref(p, xs, max_steps=4)
    np.testing.assert_allclose(layer(jnp.asarray(xs)), want, rtol=1e-4, atol=1e-5)
    # T = 6 > max_stat_steps = 4: the last slot pools the statistics of steps 3, 4 and 5.
    new = running_update_ref(old, used, 4, 0.8)
    for k, v in bn_stats(layer.cell).items():
        np.testing.assert_allclose(v, new[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_bn_lstm_padding_is_excluded_from_batch_statistics():
    layer = BNLSTM(IN, H, max_stat_steps=8, rngs=nnx.Rngs(0))
    randomize(layer, 9, scale=0.4)
    p, old = p64(layer.cell), bn_stats(layer.cell)
    xs, lengths = inputs(10), np.array([6, 2, 4])
    weights = np.arange(T)[None] < lengths[:, None]
    want, _, used = bn_lstm_ref(p, xs, max_steps=8, weights=weights)
    got = layer(jnp.asarray(xs), seq_lengths=jnp.asarray(lengths))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    new = running_update_ref(old, used, 8, 0.99)
    for k, v in bn_stats(layer.cell).items():
        np.testing.assert_allclose(v, new[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_bn_lstm_eval_uses_running_statistics_per_step_then_the_last_slot():
    cell = randomize(BNLSTMCell(IN, H, max_stat_steps=3, rngs=nnx.Rngs(0)), 11, scale=0.4)
    rng = np.random.default_rng(12)
    for k in ("mean_x", "mean_h", "mean_c"):
        getattr(cell, k)[...] = jnp.asarray(rng.normal(size=getattr(cell, k).shape), jnp.float32)
    for k in ("var_x", "var_h", "var_c"):
        getattr(cell, k)[...] = jnp.asarray(rng.uniform(0.5, 2, getattr(cell, k).shape))
    cell.eval()
    assert cell.use_running_average
    xs = inputs(13)
    want, _, _ = bn_lstm_ref(p64(cell), xs, stats=bn_stats(cell), max_steps=3)
    np.testing.assert_allclose(rnnlab.RNN(cell)(jnp.asarray(xs)), want, rtol=1e-4, atol=1e-5)
    # Evaluation is per example: one sequence alone gives the same outputs.
    one = rnnlab.RNN(cell)(jnp.asarray(xs[:1]))
    np.testing.assert_allclose(one, want[:1], rtol=1e-4, atol=1e-5)


def test_bn_lstm_statistics_are_global_under_a_data_sharded_jit():
    # 16 sequences over 8 simulated devices: 2 per device. Per-device statistics would differ
    # from the full-batch reference; the jitted global mean must reduce across devices.
    layer = BNLSTM(IN, H, max_stat_steps=T, momentum=0.5, rngs=nnx.Rngs(0))
    randomize(layer, 14, scale=0.4)
    p, old = p64(layer.cell), bn_stats(layer.cell)
    xs = inputs(15, (16, T, IN))
    want, _, used = bn_lstm_ref(p, xs, max_steps=T)
    graphdef, state = nnx.split(layer)

    @jax.jit
    def forward(state, x):
        model = nnx.merge(graphdef, state)
        return model(x), nnx.state(model, nnx.BatchStat)

    mesh = jax.make_mesh((8,), ("data",))
    x_sharded = jax.device_put(jnp.asarray(xs), NamedSharding(mesh, P("data")))
    y, stats = forward(state, x_sharded)
    assert len(y.sharding.device_set) == 8
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    new = running_update_ref(old, used, T, 0.5)
    np.testing.assert_allclose(stats["cell"]["mean_x"][...], new["mean_x"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["cell"]["var_c"][...], new["var_c"], rtol=1e-4, atol=1e-5)


# -- IndRNN -----------------------------------------------------------------------------------


def test_indrnn_matches_li_et_al_equations():
    cell = randomize(IndRNNCell(IN, H, rngs=nnx.Rngs(0)), 16)
    p = p64(cell)

    def step(h, x):
        h = np.maximum(x @ p["kernel_ih"] + p["recurrent_weight"] * h + p["bias"], 0.0)
        return h, h

    xs = inputs(17)
    want, _ = run_ref(step, np.zeros((B, H)), xs)
    np.testing.assert_allclose(rnnlab.RNN(cell)(jnp.asarray(xs)), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("u, gain", [(5.0, 2.0), (0.01, 0.5)])
def test_indrnn_bound_fixes_the_gradient_gain_over_the_horizon(u, gain):
    # ReLU units kept active by a large positive bias: dh_T/dh_0 = u_eff^T exactly, and the
    # bound makes it max_gain (u too large) or min_gain (u too small) over the horizon.
    horizon = 10
    cell = IndRNNCell(1, 3, horizon=horizon, max_gain=2.0, min_gain=0.5, rngs=nnx.Rngs(0))
    cell.recurrent_weight[...] = jnp.full((3,), u)
    cell.bias[...] = jnp.full((3,), 100.0)
    x = jnp.zeros((1, horizon, 1))
    h0 = jnp.full((1, 3), 1.0)
    grad = jax.grad(lambda h: rnnlab.RNN(cell)(x, initial_carry=h)[0, -1].sum())(h0)
    np.testing.assert_allclose(grad, np.full((1, 3), gain), rtol=1e-4)  # u_eff^T
    cell.project_weights()
    np.testing.assert_allclose(
        np.abs(cell.recurrent_weight[...]), np.full(3, gain ** (1 / horizon)), rtol=1e-6
    )


def test_indrnn_bound_keeps_the_sign_of_u():
    cell = IndRNNCell(1, 4, horizon=10, max_gain=2.0, min_gain=0.5, rngs=nnx.Rngs(0))
    cell.recurrent_weight[...] = jnp.array([-3.0, -0.001, 0.0, 0.99])
    hi, lo = 2.0**0.1, 0.5**0.1
    np.testing.assert_allclose(cell.effective_recurrent_weight(), [-hi, -lo, lo, 0.99], rtol=1e-6)


def test_indrnn_rejects_bad_bounds():
    with pytest.raises(ValueError, match="min_gain"):
        IndRNNCell(IN, H, horizon=10, max_gain=2.0, min_gain=3.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="horizon"):
        IndRNNCell(IN, H, horizon=0, rngs=nnx.Rngs(0))


# -- orthogonal (expRNN) ----------------------------------------------------------------------


def expm_ref(a):
    """Matrix exponential in float64 by scaling and squaring of the Taylor series."""
    squarings = max(0, int(np.ceil(np.log2(max(np.abs(a).sum(1).max(), 1e-12)))) + 4)
    x = a / 2.0**squarings
    out, term = np.eye(len(a)), np.eye(len(a))
    for k in range(1, 25):
        term = term @ x / k
        out = out + term
    for _ in range(squarings):
        out = out @ out
    return out


@pytest.mark.parametrize("activation", ["modrelu", "tanh"])
def test_orthogonal_cell_matches_exprnn_equations(activation):
    cell = randomize(OrthogonalCell(IN, H, activation=activation, rngs=nnx.Rngs(0)), 18)
    p = p64(cell)
    upper = np.triu(p["recurrent_skew"], 1)
    w = expm_ref(upper - upper.T)
    np.testing.assert_allclose(cell.recurrent_matrix(), w, atol=1e-5)

    def step(h, x):
        z = x @ p["kernel_ih"] + p["bias"] + h @ w
        if activation == "tanh":
            h = np.tanh(z)
        else:
            h = np.sign(z) * np.maximum(np.abs(z) + p["modrelu_bias"], 0.0)
        return h, h

    xs = inputs(19)
    want, _ = run_ref(step, np.zeros((B, H)), xs)
    np.testing.assert_allclose(rnnlab.RNN(cell)(jnp.asarray(xs)), want, rtol=1e-4, atol=1e-5)


def test_orthogonal_recurrent_matrix_stays_orthogonal_through_adam_steps():
    hidden = 16
    model = OrthogonalCell(IN, hidden, rngs=nnx.Rngs(0))
    rnn = rnnlab.RNN(model)
    optimizer = nnx.Optimizer(rnn, optax.adam(3e-2), wrt=nnx.Param)
    xs, target = jnp.asarray(inputs(20, (8, 12, IN))), jnp.asarray(inputs(21, (8, hidden)))
    skew0 = np.asarray(model.recurrent_skew[...])

    @nnx.jit
    def train_step(rnn, optimizer):
        loss = lambda m: jnp.mean((m(xs)[:, -1] - target) ** 2)
        value, grads = nnx.value_and_grad(loss)(rnn)
        with jax.numpy_dtype_promotion("standard"):  # optax's bias correction: float ** int
            optimizer.update(rnn, grads)
        return value

    losses = [float(train_step(rnn, optimizer)) for _ in range(10)]
    assert losses[-1] < losses[0]
    assert np.abs(np.asarray(model.recurrent_skew[...]) - skew0).max() > 0.1
    w = np.asarray(model.recurrent_matrix(), np.float64)
    np.testing.assert_allclose(w.T @ w, np.eye(hidden), atol=1e-5)
    assert abs(np.linalg.det(w) - 1.0) < 1e-4  # exp of a skew matrix: a rotation


# -- registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["layernorm_lstm", "layernorm_gru", "bn_lstm", "indrnn", "orthogonal"]
)
def test_registered_cells_build_stacked_layers(name):
    model = rnnlab.StackedRNN(IN, H, 2, cell=name, rngs=nnx.Rngs(0))
    y = model(jnp.asarray(inputs(22)), seq_lengths=jnp.array([T, 3, 1]))
    assert y.shape == (B, T, H)
    assert np.isfinite(np.asarray(y)).all()
    assert isinstance(make_cell(name, IN, H, rngs=nnx.Rngs(0)), rnnlab.RecurrentCell)
