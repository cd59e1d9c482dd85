"""Converters between Flax's stock recurrent cells (NNX and Linen) and rnnlab's cells.

The reference is Flax itself: the same inputs through the Flax cell and through the
converted rnnlab cell (and back) give the same outputs and carries over several steps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen, nnx
from rnn_reference import random_module

import rnnlab
from rnnlab.interop.flax_cells import from_flax, from_linen, to_flax, to_linen

BATCH, TIME, IN, HIDDEN = 3, 5, 4, 6
TOL = dict(rtol=1e-5, atol=1e-5)
NNX_CELLS = {
    "lstm": nnx.LSTMCell,
    "optimized_lstm": nnx.OptimizedLSTMCell,
    "gru": nnx.GRUCell,
}
LINEN_CELLS = {
    "lstm": linen.LSTMCell,
    "optimized_lstm": linen.OptimizedLSTMCell,
    "gru": linen.GRUCell,
}


def xs(seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(TIME, BATCH, IN)), jnp.float32)


def unroll(step, carry, inputs):
    outs = []
    for x in inputs:
        carry, y = step(carry, x)
        outs.append(y)
    return carry, jnp.stack(outs)


def random_carry(kind, seed=1):
    rng = np.random.default_rng(seed)
    leaf = lambda: jnp.asarray(rng.normal(size=(BATCH, HIDDEN)), jnp.float32)
    return leaf() if kind == "gru" else (leaf(), leaf())


def assert_same(a, b):
    for got, want in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), **TOL)


@pytest.mark.parametrize("kind", sorted(NNX_CELLS))
def test_nnx_cell_to_rnnlab_gives_the_same_outputs(kind):
    # Random biases too: the defaults are zero and would hide a misplaced bias.
    flax_cell = random_module(lambda: NNX_CELLS[kind](IN, HIDDEN, rngs=nnx.Rngs(0)), seed=3)
    cell = from_flax(flax_cell)
    assert isinstance(cell, rnnlab.GRUCell if kind == "gru" else rnnlab.LSTMCell)
    carry = random_carry(kind)
    assert_same(unroll(cell, carry, xs()), unroll(flax_cell, carry, xs()))


@pytest.mark.parametrize("kind", sorted(NNX_CELLS))
def test_rnnlab_cell_to_nnx_gives_the_same_outputs(kind):
    build = rnnlab.GRUCell if kind == "gru" else rnnlab.LSTMCell
    cell = random_module(lambda: build(IN, HIDDEN, rngs=nnx.Rngs(0)), seed=4)
    if kind == "gru":  # nnx.GRUCell has no b_hn: zero it (to_linen keeps any b_hn)
        cell.bias_hh[...] = cell.bias_hh[...].at[2 * HIDDEN :].set(0.0)
    flax_cell = to_flax(cell, NNX_CELLS[kind])
    assert type(flax_cell) is NNX_CELLS[kind]
    carry = random_carry(kind)
    assert_same(unroll(flax_cell, carry, xs(1)), unroll(cell, carry, xs(1)))
    # Flax's own sequence layer runs the converted cell as well.
    y = nnx.RNN(flax_cell, time_major=True)(xs(1), initial_carry=carry)
    np.testing.assert_allclose(y, unroll(cell, carry, xs(1))[1], **TOL)


def linen_variables(kind, seed=5):
    module = LINEN_CELLS[kind](features=HIDDEN)
    carry = random_carry(kind)
    variables = module.init(jax.random.key(0), carry, xs()[0])
    leaves, tree = jax.tree.flatten(variables)
    rng = np.random.default_rng(seed)
    leaves = [jnp.asarray(rng.normal(size=a.shape) * 0.5, a.dtype) for a in leaves]
    return module, jax.tree.unflatten(tree, leaves)


@pytest.mark.parametrize("kind", sorted(LINEN_CELLS))
def test_linen_cell_params_to_rnnlab_give_the_same_outputs(kind):
    module, variables = linen_variables(kind)
    cell = from_linen(variables)
    carry = random_carry(kind)
    want = unroll(lambda c, x: module.apply(variables, c, x), carry, xs(2))
    assert_same(unroll(cell, carry, xs(2)), want)


@pytest.mark.parametrize("kind", sorted(LINEN_CELLS))
def test_rnnlab_cell_to_linen_params_give_the_same_outputs(kind):
    build = rnnlab.GRUCell if kind == "gru" else rnnlab.LSTMCell
    cell = random_module(lambda: build(IN, HIDDEN, rngs=nnx.Rngs(0)), seed=6)  # b_hn != 0
    variables = to_linen(cell)
    module = LINEN_CELLS[kind](features=HIDDEN)
    carry = random_carry(kind)
    # The tree matches what Linen's own init creates, name for name and shape for shape.
    own = module.init(jax.random.key(0), carry, xs()[0])
    assert jax.tree.map(jnp.shape, own) == jax.tree.map(jnp.shape, variables)
    want = unroll(cell, carry, xs(3))
    assert_same(unroll(lambda c, x: module.apply(variables, c, x), carry, xs(3)), want)


def test_conversions_without_a_flax_twin_are_refused():
    lstm_proj = random_module(
        lambda: rnnlab.LSTMCell(IN, HIDDEN, proj_features=2, rngs=nnx.Rngs(0))
    )
    with pytest.raises(ValueError, match="proj_features=2 has no Flax equivalent"):
        to_flax(lstm_proj)
    with pytest.raises(ValueError, match="proj_features"):
        to_linen(lstm_proj)
    gru_orig = random_module(
        lambda: rnnlab.GRUCell(IN, HIDDEN, reset_after=False, rngs=nnx.Rngs(0))
    )
    with pytest.raises(ValueError, match="reset_after=False"):
        to_flax(gru_orig)
    gru = random_module(lambda: rnnlab.GRUCell(IN, HIDDEN, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="b_hn"):
        to_flax(gru)  # a non-zero b_hn: only Linen's GRUCell has one
    with pytest.raises(ValueError, match="nnx.GRUCell"):
        to_flax(gru, nnx.LSTMCell)
    with pytest.raises(ValueError, match="gate_fn"):
        from_flax(nnx.GRUCell(IN, HIDDEN, gate_fn=jax.nn.relu, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="flax.nnx LSTMCell"):
        from_flax(nnx.SimpleCell(IN, HIDDEN, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="GRUCell \\(keys"):
        from_linen({"params": {"i": {"kernel": np.zeros((IN, HIDDEN))}}})


def test_round_trips_keep_dtypes():
    # Flax's own orthogonal init cannot run in bfloat16 on CPU: another recurrent init.
    flax_cell = nnx.OptimizedLSTMCell(
        IN,
        HIDDEN,
        param_dtype=jnp.bfloat16,
        recurrent_kernel_init=jax.nn.initializers.lecun_normal(),
        rngs=nnx.Rngs(0),
    )
    cell = from_flax(flax_cell)
    assert cell.param_dtype == jnp.bfloat16 and cell.kernel_ih[...].dtype == jnp.bfloat16
    back = to_flax(cell)
    np.testing.assert_array_equal(
        np.asarray(back.dense_h.kernel[...], np.float32),
        np.asarray(flax_cell.dense_h.kernel[...], np.float32),
    )
