"""Cells against the textbook equations (a float64 NumPy loop), and the initialisers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from rnn_reference import random_module, split_carry, stack_carry, step_fn, zero_carry

from rnnlab.cells import GRUCell, LSTMCell, SimpleCell, cell_names, initializers, make_cell

BATCH, IN, HIDDEN = 3, 4, 5

CELLS = {
    "elman_tanh": lambda: SimpleCell(IN, HIDDEN, rngs=nnx.Rngs(0)),
    "elman_relu": lambda: SimpleCell(IN, HIDDEN, activation="relu", rngs=nnx.Rngs(0)),
    "irnn": lambda: SimpleCell.irnn(IN, HIDDEN, rngs=nnx.Rngs(0)),
    "lstm": lambda: LSTMCell(IN, HIDDEN, rngs=nnx.Rngs(0)),
    "lstm_proj": lambda: LSTMCell(IN, HIDDEN, proj_features=3, rngs=nnx.Rngs(0)),
    "gru_reset_after": lambda: GRUCell(IN, HIDDEN, rngs=nnx.Rngs(0)),
    "gru_original": lambda: GRUCell(IN, HIDDEN, reset_after=False, rngs=nnx.Rngs(0)),
}


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_cell_steps_match_textbook_equations(kind):
    cell = random_module(CELLS[kind], seed=1)
    ref_step = step_fn(cell)
    xs = np.random.default_rng(2).normal(size=(4, BATCH, IN)).astype(np.float32)
    carry = cell.initialize_carry((BATCH, IN))
    ref = zero_carry(cell, BATCH)
    call = nnx.jit(lambda cell, carry, x: cell(carry, x))
    for x in xs:  # several steps, so the recurrent weights matter
        carry, y = call(cell, carry, jax.device_put(x))
        stepped = [ref_step(ref[b], x[b].astype(np.float64)) for b in range(BATCH)]
        ref = [c for c, _ in stepped]
        np.testing.assert_allclose(y, np.stack([y for _, y in stepped]), rtol=1e-5, atol=1e-6)
    for got, want in zip(jax.tree.leaves(carry), jax.tree.leaves(stack_carry(ref)), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["elman_tanh", "lstm_proj", "gru_original"])
def test_project_then_step_is_the_cell_call(kind):
    cell = random_module(CELLS[kind], seed=3)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(BATCH, IN)), jnp.float32)
    carry = jax.tree.map(lambda c: c + 0.3, cell.initialize_carry((BATCH, IN)))
    ref_carry, ref_y = step_fn(cell)(split_carry(carry, BATCH)[0], np.asarray(x[0], np.float64))
    carry_b, y_b = nnx.jit(lambda cell, c, x: cell.step(c, cell.project_inputs(x)))(cell, carry, x)
    np.testing.assert_allclose(y_b[0], ref_y, rtol=1e-5, atol=1e-6)
    for got, want in zip(jax.tree.leaves(carry_b), jax.tree.leaves(ref_carry), strict=True):
        np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)


def test_initialize_carry_shapes_and_float32_with_bf16_compute():
    # Carries need no parameters: abstract cells (nnx.eval_shape) skip the initialisers.
    cell = nnx.eval_shape(
        lambda: LSTMCell(IN, HIDDEN, proj_features=3, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    )
    c, h = cell.initialize_carry((2, 3, IN))
    assert (c.shape, h.shape) == ((2, 3, HIDDEN), (2, 3, 3))
    assert c.dtype == h.dtype == jnp.float32
    assert cell.num_feature_axes == 1
    gru = nnx.eval_shape(lambda: GRUCell(IN, HIDDEN, rngs=nnx.Rngs(0)))
    assert gru.initialize_carry((IN,)).shape == (HIDDEN,)


def test_carry_init_fills_the_initial_carry():
    cell = nnx.eval_shape(
        lambda: SimpleCell(IN, HIDDEN, carry_init=jax.nn.initializers.ones, rngs=nnx.Rngs(0))
    )
    np.testing.assert_array_equal(cell.initialize_carry((BATCH, IN)), np.ones((BATCH, HIDDEN)))


def test_random_carry_init_uses_the_given_stream_and_differs_per_leaf():
    normal = jax.nn.initializers.normal(1.0)
    cell = nnx.eval_shape(lambda: LSTMCell(IN, HIDDEN, carry_init=normal, rngs=nnx.Rngs(0)))
    c, h = cell.initialize_carry((BATCH, IN))
    assert not np.allclose(c, h)  # one key per leaf
    # flax.nnx.RNN hands over a stream (``rngs.carry``), not an ``nnx.Rngs``.
    c1, _ = cell.initialize_carry((BATCH, IN), nnx.Rngs(carry=1).carry)
    c2, _ = cell.initialize_carry((BATCH, IN), nnx.Rngs(carry=2).carry)
    c3, _ = cell.initialize_carry((BATCH, IN), nnx.Rngs(carry=1))
    assert not np.allclose(c1, c2)
    np.testing.assert_array_equal(c1, c3)  # the stream and its Rngs draw the same key


def test_wrong_feature_size_names_inputs_and_in_features():
    cell = random_module(CELLS["lstm"])
    with pytest.raises(ValueError, match=r"inputs.*in_features=4.*got 6"):
        cell(cell.initialize_carry((BATCH, IN)), jnp.ones((BATCH, 6)))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: LSTMCell(0, HIDDEN, rngs=nnx.Rngs(0)), "in_features"),
        (lambda: GRUCell(IN, -1, rngs=nnx.Rngs(0)), "hidden_features"),
        (lambda: LSTMCell(IN, HIDDEN, proj_features=0, rngs=nnx.Rngs(0)), "proj_features"),
        (lambda: SimpleCell(IN, HIDDEN, activation="gelu", rngs=nnx.Rngs(0)), "activation"),
        (lambda: make_cell("transformer", IN, HIDDEN, rngs=nnx.Rngs(0)), "unknown cell"),
    ],
)
def test_bad_cell_arguments_raise_value_error(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_registry_builds_each_family():
    assert {"lstm", "gru", "simple", "irnn"} <= set(cell_names())
    assert isinstance(
        nnx.eval_shape(lambda: make_cell("gru", IN, HIDDEN, rngs=nnx.Rngs(0))), GRUCell
    )
    irnn = make_cell("irnn", HIDDEN, HIDDEN, rngs=nnx.Rngs(0))
    assert irnn.activation == "relu"
    np.testing.assert_array_equal(irnn.kernel_hh[...], np.eye(HIDDEN))


# -- initialisers -------------------------------------------------------------------------


@pytest.mark.parametrize("rows, size, blocks", [(6, 6, 4), (3, 6, 4), (5, 5, 3)])
def test_orthogonal_blocks_are_each_orthogonal(rows, size, blocks):
    w = np.asarray(initializers.orthogonal_blocks(blocks)(jax.random.key(0), (rows, size * blocks)))
    for k in range(blocks):
        block = w[:, k * size : (k + 1) * size]
        # Square blocks are orthogonal; wide ones have orthonormal rows.
        np.testing.assert_allclose(block @ block.T, np.eye(rows), atol=1e-5)
    # Blocks come from independent keys.
    assert not np.allclose(w[:, :size], w[:, size : 2 * size])


def test_default_recurrent_kernels_are_orthogonal_per_gate():
    for cell, gates in [
        (LSTMCell(IN, HIDDEN, rngs=nnx.Rngs(0)), 4),
        (GRUCell(2, 6, rngs=nnx.Rngs(1)), 3),
    ]:
        w = np.asarray(cell.kernel_hh[...])
        size = cell.hidden_features
        for k in range(gates):
            block = w[:, k * size : (k + 1) * size]
            np.testing.assert_allclose(block.T @ block, np.eye(size), atol=1e-5)


def test_orthogonal_blocks_rejects_indivisible_width():
    with pytest.raises(ValueError, match="num_blocks"):
        initializers.orthogonal_blocks(4)(jax.random.key(0), (5, 10))


def test_identity_initializer():
    np.testing.assert_array_equal(
        initializers.identity(0.5)(jax.random.key(0), (4, 4)), 0.5 * np.eye(4)
    )
    with pytest.raises(ValueError, match="square"):
        initializers.identity()(jax.random.key(0), (4, 3))


def test_lstm_forget_bias_defaults_to_one():
    bias = np.asarray(LSTMCell(IN, HIDDEN, rngs=nnx.Rngs(0)).bias[...]).reshape(4, HIDDEN)
    np.testing.assert_array_equal(
        bias, np.stack([np.zeros(5), np.ones(5), np.zeros(5), np.zeros(5)])
    )


def test_chrono_initialisation_spreads_forget_bias_and_negates_input_bias():
    t_max = 50.0
    hidden = 400  # enough draws to see both ends of the range
    zeros = jax.nn.initializers.zeros  # only the bias initialiser is under test
    cell = LSTMCell(
        IN,
        hidden,
        chrono_max_timescale=t_max,
        kernel_init=zeros,
        recurrent_kernel_init=zeros,
        rngs=nnx.Rngs(0),
    )
    b_i, b_f, b_g, b_o = np.asarray(cell.bias[...]).reshape(4, hidden)
    assert b_f.min() >= np.log(1.0) and b_f.max() <= np.log(t_max - 1.0) + 1e-6
    # log of a uniform draw: the spread covers most of [0, log(T-1)], not a constant.
    assert b_f.min() < 1.0 and b_f.max() > np.log(t_max - 1.0) - 0.1
    np.testing.assert_array_equal(b_i, -b_f)
    np.testing.assert_array_equal(b_g, 0.0)
    np.testing.assert_array_equal(b_o, 0.0)
    with pytest.raises(ValueError, match="max_timescale"):
        initializers.chrono_forget_bias(2.0)
