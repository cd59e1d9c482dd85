"""Closed-loop decoders on the one path: ``StackedRNN.step`` and ``feedback_loop`` against
naive NumPy loops of the cell equations, the decoders of the models built on them, and the
errors a misuse gets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from rnn_reference import params64, sigmoid

from rnnlab.layers import StackedRNN
from rnnlab.layers.feedback import feedback_loop
from rnnlab.models.forecaster import Forecaster
from rnnlab.models.language_model import LanguageModel
from rnnlab.regularizers import Regularization

B, F, H = 3, 4, 5


def _lstm(p, c, h, x):
    z = x @ p["kernel_ih"] + h @ p["kernel_hh"] + p["bias"]
    i, f = sigmoid(z[:, :H]), sigmoid(z[:, H : 2 * H])
    g, o = np.tanh(z[:, 2 * H : 3 * H]), sigmoid(z[:, 3 * H :])
    c = f * c + i * g
    return c, o * np.tanh(c)


def _naive_stack(stack, xs, zoneout_c=0.0, zoneout_h=0.0):
    """Batch-major ``xs`` through the stack's LSTM layers in float64, evaluation mode:
    zoneout at its expectation ``s = p s' + (1 - p) s_new`` (Krueger et al. 2017)."""
    params = [params64(layer.cell) for layer in stack.layers]
    state = [(np.zeros((xs.shape[0], H)), np.zeros((xs.shape[0], H))) for _ in params]
    ys = []
    for t in range(xs.shape[1]):
        x = xs[:, t].astype(np.float64)
        for i, p in enumerate(params):
            c0, h0 = state[i]
            c, h = _lstm(p, c0, h0, x)
            c = zoneout_c * c0 + (1 - zoneout_c) * c
            h = zoneout_h * h0 + (1 - zoneout_h) * h
            state[i] = (c, h)
            x = h
        ys.append(x)
    return np.stack(ys, 1)


@pytest.mark.parametrize("zoneout", [0.0, 0.3])
def test_stepping_a_stack_is_the_naive_loop_evaluation_regularisers_included(zoneout):
    reg = Regularization(zoneout_c=zoneout, zoneout_h=zoneout / 2)
    stack = StackedRNN(F, H, 2, regularization=reg, rngs=nnx.Rngs(0))
    stack.eval()
    xs = np.random.default_rng(0).normal(size=(B, 6, F)).astype(np.float32)
    carries = stack.initialize_carry((B, F))

    def body(carries, x):
        carries, y = stack.step(carries, x)
        return carries, y

    _, ys = feedback_loop(body, carries, jnp.swapaxes(jnp.asarray(xs), 0, 1))
    ref = _naive_stack(stack, xs, zoneout, zoneout / 2)
    np.testing.assert_allclose(np.swapaxes(np.asarray(ys), 0, 1), ref, rtol=1e-5, atol=1e-5)


def test_feedback_loop_feeds_the_output_back_and_remat_keeps_the_gradient():
    w = jnp.asarray(np.random.default_rng(1).normal(size=(H, H)) * 0.4, jnp.float32)

    def step(h, x):
        h = jnp.tanh(h @ w + x)
        return h, h

    def run(w_scale, remat):
        def body(h, x):
            return step(h * w_scale, x)

        _, ys = feedback_loop(body, jnp.ones((B, H)), jnp.ones((8, B, H)), remat=remat)
        return jnp.sum(ys**2)

    def naive(w_scale):
        h, total = jnp.ones((B, H)), 0.0
        for _ in range(8):
            h = jnp.tanh((h * w_scale) @ w + 1.0)
            total = total + jnp.sum(h**2)
        return total

    for remat in (False, True):
        value, grad = jax.value_and_grad(run)(1.3, remat)
        ref_value, ref_grad = jax.value_and_grad(naive)(1.3)
        np.testing.assert_allclose(value, ref_value, rtol=1e-5)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-4)


def test_free_running_forecaster_feeds_back_its_forecast():
    model = Forecaster(1, 4, mode="autoregressive", hidden_features=H, rngs=nnx.Rngs(2))
    model.eval()
    x = np.random.default_rng(3).normal(size=(B, 10, 1)).astype(np.float32)
    forecast, _ = model({"inputs": jnp.asarray(x)})
    # Naive: the stack over the history, then each forecast is the next input.
    p, head = params64(model.rnn.layers[0].cell), model.head
    kernel, bias = np.asarray(head.kernel[...], np.float64), np.asarray(head.bias[...])
    c, h = np.zeros((B, H)), np.zeros((B, H))
    for t in range(x.shape[1]):
        c, h = _lstm(p, c, h, x[:, t])
    value, expected = x[:, -1], []
    for _ in range(4):
        value = value + h @ kernel + bias  # residual: an offset from the last value
        expected.append(value)
        c, h = _lstm(p, c, h, value)
    np.testing.assert_allclose(forecast, np.stack(expected, 1), rtol=1e-4, atol=1e-5)


def test_language_model_decode_step_is_one_position_of_the_whole_sequence():
    model = LanguageModel(11, embed_features=6, hidden_features=H, num_layers=2, rngs=nnx.Rngs(4))
    model.eval()
    tokens = jnp.asarray(np.random.default_rng(5).integers(0, 11, size=(B, 6)), jnp.int32)
    logits, _ = model({"inputs": tokens})
    carry = model.rnn.initialize_carry((B, 6))
    for t in range(tokens.shape[1]):
        step_logits, carry = model.decode_step(tokens[:, t], carry)
        np.testing.assert_allclose(step_logits, logits[:, t], rtol=1e-5, atol=1e-5)


def test_a_language_model_with_zoneout_samples_what_its_whole_sequence_call_computes():
    """Zoneout in evaluation is its expectation, in the whole-sequence call and in the
    sampler's steps alike: both against the float64 loop of the cell equations."""
    reg = Regularization(zoneout_c=0.4, zoneout_h=0.2)
    model = LanguageModel(
        11, embed_features=6, hidden_features=H, num_layers=2, regularization=reg,
        rngs=nnx.Rngs(4),
    )  # fmt: skip
    model.eval()
    tokens = jnp.asarray(np.random.default_rng(5).integers(0, 11, size=(B, 6)), jnp.int32)
    logits, _ = model({"inputs": tokens})
    emb = np.asarray(model.embed.embedding[...], np.float64)[np.asarray(tokens)]
    top = _naive_stack(model.rnn, emb, 0.4, 0.2)
    kernel = np.asarray(model.head.kernel[...], np.float64)
    want = top @ kernel + np.asarray(model.head.bias[...], np.float64)
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-5)
    carry = model.rnn.initialize_carry((B, 6))
    for t in range(tokens.shape[1]):
        step_logits, carry = model.decode_step(tokens[:, t], carry)
        np.testing.assert_allclose(step_logits, want[:, t], rtol=1e-4, atol=1e-5)


def test_misuse_is_named():
    stack = StackedRNN(F, H, 1, bidirectional=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="bidirectional"):
        stack.step(stack.initialize_carry((B, F)), jnp.ones((B, F)))
    bn = StackedRNN(F, H, 1, cell="bn_lstm", rngs=nnx.Rngs(0))  # training mode
    with pytest.raises(ValueError, match="BNLSTMCell returns per-step extras"):
        bn.step(bn.initialize_carry((B, F)), jnp.ones((B, F)))
    with pytest.raises(ValueError, match="xs or length"):
        feedback_loop(lambda c, x: (c, x), 0.0)


def test_stepping_a_residual_time_major_stack_is_the_naive_loop():
    stack = StackedRNN(H, H, 2, residual=True, rnn_kwargs={"time_major": True}, rngs=nnx.Rngs(6))
    stack.eval()
    xs = np.random.default_rng(7).normal(size=(5, B, H)).astype(np.float32)  # [T, B, H]
    carries = stack.initialize_carry((B, H))
    _, ys = feedback_loop(lambda c, x: stack.step(c, x), carries, jnp.asarray(xs))
    params = [params64(layer.cell) for layer in stack.layers]
    state = [(np.zeros((B, H)), np.zeros((B, H))) for _ in params]
    for t in range(xs.shape[0]):
        x = xs[t].astype(np.float64)
        for i, p in enumerate(params):
            state[i] = _lstm(p, *state[i], x)
            x = state[i][1] + x  # the residual: each layer's input added to its output
        np.testing.assert_allclose(ys[t], x, rtol=1e-5, atol=1e-5)


def test_a_batch_norm_stack_free_runs_in_training_on_its_running_averages():
    model = Forecaster(
        1, 3, mode="autoregressive", cell="bn_lstm", teacher_forcing=False, hidden_features=H,
        rngs=nnx.Rngs(8),
    )  # fmt: skip
    model.train()
    x = jnp.asarray(np.random.default_rng(9).normal(size=(B, 6, 1)), jnp.float32)
    cell = model.rnn.layers[0].cell
    before = jax.tree.map(np.asarray, nnx.state(cell, nnx.BatchStat))
    forecast, _ = model({"inputs": x})
    assert forecast.shape == (B, 3, 1) and np.all(np.isfinite(forecast))
    # The history pass moved the running averages; the cell is back in training form.
    after = jax.tree.map(np.asarray, nnx.state(cell, nnx.BatchStat))
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: not np.allclose(a, b), before, after))
    assert any(moved) and cell.step_extras
