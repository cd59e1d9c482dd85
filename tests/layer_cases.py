"""Shared cases of the layer tests: the cells under test, inputs, the float64 NumPy loop they
are held to, and the jitted layer call (tests/test_layers.py, tests/test_layers_stacked.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from rnn_reference import random_module, run_batch, split_carry, step_fn, zero_carry

from rnnlab.cells import GRUCell, LSTMCell, SimpleCell

BATCH, TIME, IN, HIDDEN = 3, 7, 4, 5
LENGTHS = np.array([7, 4, 0])  # full, partial and empty sequences

CELLS = {
    "elman_tanh": lambda seed: SimpleCell(IN, HIDDEN, rngs=nnx.Rngs(seed)),
    "irnn": lambda seed: SimpleCell.irnn(IN, HIDDEN, rngs=nnx.Rngs(seed)),
    "lstm": lambda seed: LSTMCell(IN, HIDDEN, rngs=nnx.Rngs(seed)),
    "lstm_proj": lambda seed: LSTMCell(IN, HIDDEN, proj_features=3, rngs=nnx.Rngs(seed)),
    "gru_reset_after": lambda seed: GRUCell(IN, HIDDEN, rngs=nnx.Rngs(seed)),
    "gru_original": lambda seed: GRUCell(IN, HIDDEN, reset_after=False, rngs=nnx.Rngs(seed)),
}


def make_cell(kind, seed=0):
    return random_module(lambda: CELLS[kind](seed), seed=seed + 10)


def inputs(shape=(BATCH, TIME, IN), seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def random_carry(cell, batch_shape, seed=5):
    """A non-zero initial carry, so that tests see where the state starts from."""
    zeros = cell.initialize_carry(tuple(batch_shape) + (cell.in_features,))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda z: jnp.asarray(rng.normal(size=z.shape), jnp.float32), zeros)


def reference(cell, x, lengths=None, reverse=False, resets=None, carry0=None):
    """The NumPy loop over a ``[B, T, F]`` batch; carries and outputs as float64 arrays."""
    x = np.asarray(x)
    carries = zero_carry(cell, x.shape[0]) if carry0 is None else split_carry(carry0, x.shape[0])
    return run_batch(step_fn(cell), carries, x, lengths, reverse, resets)


@functools.partial(nnx.jit, static_argnames=("reverse", "keep_order"))
def run(layer, x, **kwargs):
    """``layer(x, return_carry=True, **kwargs)`` jitted: tests sharing a configuration share
    one compilation, and no test pays for op-by-op dispatch."""
    return layer(x, return_carry=True, **kwargs)


def assert_tree_close(got, want, tol=1e-5):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), w, rtol=tol, atol=tol)


def with_garbage(x, lengths, seed=9):
    """``x`` with large random values at and past each length."""
    x = np.array(x)
    noise = 50.0 * np.random.default_rng(seed).normal(size=x.shape)
    pad = np.arange(x.shape[-2])[None, :] >= np.asarray(lengths)[:, None]
    return jnp.asarray(np.where(pad[..., None], noise, x), jnp.float32)
