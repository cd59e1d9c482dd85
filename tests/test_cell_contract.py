"""Flax's cell contract with outside code: dtypes, custom cells, subclasses, partitioning
metadata, the stack's dropout stream and complex inputs. Each reference is independent of
rnnlab's layers: a plain Python loop over ``cell(carry, x)``, ``flax.nnx``'s own cells and
layers, or the mesh's device placement."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.nn import initializers
from jax.sharding import AxisType, PartitionSpec

import rnnlab
from rnnlab import cells
from rnnlab.layers import dispatch


def python_loop(cell, carry, xs):
    """``flax.nnx.RNN``'s semantics written out: ``cell(carry, x_t)`` over batch-major xs."""
    ys = []
    for t in range(xs.shape[1]):
        carry, y = cell(carry, xs[:, t])
        ys.append(y)
    return carry, jnp.stack(ys, axis=1)


# -- integer inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [None, jnp.bfloat16])
def test_integer_inputs_are_promoted_as_flax_promotes_them(dtype):
    cell = cells.LSTMCell(3, 5, dtype=dtype, rngs=nnx.Rngs(0))
    flax_cell = nnx.LSTMCell(3, 5, dtype=dtype, rngs=nnx.Rngs(0))
    ints = jnp.arange(24, dtype=jnp.int32).reshape(2, 4, 3) % 3
    floats = ints.astype(cell.compute_dtype)
    _, y_int = cell(cell.initialize_carry((2, 3)), ints[:, 0])
    with jax.numpy_dtype_promotion("standard"):  # Flax's cells rely on implicit promotion
        _, y_flax = flax_cell(flax_cell.initialize_carry((2, 3), nnx.Rngs(0)), ints[:, 0])
    # Both promote the integers to the compute dtype; outputs differ in dtype only where
    # rnnlab returns the compute dtype and Flax the float32 of its carry.
    assert y_int.dtype == (y_flax.dtype if dtype is None else dtype)
    _, y_ref = python_loop(cell, cell.initialize_carry((2, 3)), floats)
    for impl in ("scan", "fused"):
        y = rnnlab.RNN(cell, implementation=impl)(ints)
        np.testing.assert_allclose(np.float32(y), np.float32(y_ref), rtol=1e-2, atol=1e-5)
    y_bool = rnnlab.RNN(cells.MinGRUCell(3, 4, rngs=nnx.Rngs(1)))(ints > 0)
    assert y_bool.dtype == jnp.float32 and y_bool.shape == (2, 4, 4)


# -- a custom cell with Flax's contract ----------------------------------------------------------


class LeakyCell(nnx.Module):
    """A cell written to Flax's contract only: ``initialize_carry(input_shape, rngs)``."""

    num_feature_axes = 1

    def __init__(self, rngs: nnx.Rngs):
        self.w = nnx.Param(jax.random.normal(rngs.params(), (3, 4)))

    def __call__(self, carry, x):
        h = 0.5 * carry + jnp.tanh(x @ self.w[...])
        return h, 2.0 * h

    def initialize_carry(self, input_shape, rngs):
        del rngs
        return jnp.zeros(tuple(input_shape[:-1]) + (4,))


def test_a_flax_contract_cell_takes_an_initial_carry():
    cell = LeakyCell(nnx.Rngs(0))
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    h0 = jnp.full((2, 4), 0.7)
    w = np.asarray(cell.w[...], np.float64)
    h, want = np.full((2, 4), 0.7), []
    for t in range(5):
        h = 0.5 * h + np.tanh(np.asarray(xs[:, t], np.float64) @ w)
        want.append(2 * h)
    carry, ys = rnnlab.RNN(cell, return_carry=True)(xs, initial_carry=h0)
    np.testing.assert_allclose(ys, np.stack(want, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry, h, rtol=1e-5, atol=1e-6)


# -- a subclass that overrides only __call__ -----------------------------------------------------


class ScaledLSTM(cells.LSTMCell):
    """Overrides ``__call__`` only, as a user adding a recurrent dropout would."""

    def __call__(self, carry, x):
        (c, h), y = super().__call__(carry, x)
        return (0.5 * c, h), 0.5 * y


def test_a_subclass_overriding_call_runs_its_call_and_the_header_says_so():
    cell = ScaledLSTM(3, 4, rngs=nnx.Rngs(0))
    xs = jax.random.normal(jax.random.key(2), (2, 6, 3))
    _, want = python_loop(cell, cell.initialize_carry((2, 3)), xs)
    flax_ys = nnx.RNN(cell)(xs)
    np.testing.assert_allclose(flax_ys, want, rtol=1e-5, atol=1e-6)
    with dispatch.recording() as record:
        ys = rnnlab.RNN(cell)(xs)
    np.testing.assert_allclose(ys, want, rtol=1e-5, atol=1e-6)
    assert record == [("ScaledLSTM", "scan", "an overridden __call__")]
    assert "overridden __call__" in dispatch.summary(record)
    with pytest.raises(ValueError, match="override project and step_with"):
        rnnlab.RNN(cell, implementation="fused")(xs)
    with pytest.raises(ValueError, match="overrides __call__"):
        rnnlab.RNN(cell)(xs, params=cell.cell_params())


# -- partitioning metadata ---------------------------------------------------------------------

# Every cell with the arguments it needs; (name of a 2-D input kernel, its partition).
CELLS = {
    "simple": (lambda **kw: cells.SimpleCell(3, 8, **kw), "kernel_ih"),
    "lstm": (lambda **kw: cells.LSTMCell(3, 8, **kw), "kernel_ih"),
    "gru": (lambda **kw: cells.GRUCell(3, 8, **kw), "kernel_ih"),
    "indrnn": (lambda **kw: cells.IndRNNCell(3, 8, **kw), "kernel_ih"),
    "orthogonal": (lambda **kw: cells.OrthogonalCell(3, 8, **kw), "kernel_ih"),
    "ln_lstm": (lambda **kw: cells.LayerNormLSTMCell(3, 8, **kw), "kernel_ih"),
    "ln_gru": (lambda **kw: cells.LayerNormGRUCell(3, 8, **kw), "kernel_ih"),
    "bn_lstm": (lambda **kw: cells.BNLSTMCell(3, 8, max_stat_steps=4, **kw), "kernel_ih"),
    "mingru": (lambda **kw: cells.MinGRUCell(3, 8, **kw), "kernel"),
    "minlstm": (lambda **kw: cells.MinLSTMCell(3, 8, **kw), "kernel"),
    "lru": (lambda **kw: cells.LRUCell(3, 8, glu=True, **kw), "glu_kernel"),
}


@pytest.mark.parametrize("name", sorted(CELLS))
def test_every_cell_takes_nnx_partitioning_metadata(name):
    build, kernel = CELLS[name]
    plain = build(rngs=nnx.Rngs(0))
    bias_names = [n for n in plain.param_names if "bias" in n and getattr(plain, n, None)]
    cell = build(
        kernel_metadata={"out_sharding": (None, "model")},
        bias_metadata={"out_sharding": ("model",)},
        param_metadata={kernel: {"out_sharding": ("embed", "model")}},
        rngs=nnx.Rngs(0),
    )
    specs = nnx.get_partition_spec(nnx.state(cell, nnx.Param))
    assert specs[kernel].get_value() == PartitionSpec("embed", "model")
    for bias in bias_names:
        assert specs[bias].get_value() == PartitionSpec("model")
    # Metadata changes no value.
    for n in plain.param_names:
        if getattr(plain, n, None) is not None:
            np.testing.assert_array_equal(getattr(cell, n)[...], getattr(plain, n)[...])


def test_partitioned_initialisers_are_honoured_under_a_mesh():
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
    xs = jax.random.normal(jax.random.key(3), (4, 6, 3))
    plain = cells.LSTMCell(3, 8, rngs=nnx.Rngs(0))
    want = rnnlab.RNN(plain)(xs)
    with jax.set_mesh(mesh):
        cell = cells.LSTMCell(
            3,
            8,
            kernel_init=nnx.with_partitioning(initializers.lecun_normal(), (None, "model")),
            recurrent_kernel_metadata={"out_sharding": (None, "model")},
            rngs=nnx.Rngs(0),
        )
        specs = nnx.get_partition_spec(nnx.state(cell, nnx.Param))
        assert specs["kernel_ih"].get_value() == PartitionSpec(None, "model")
        for name in ("kernel_ih", "kernel_hh"):
            assert getattr(cell, name)[...].sharding.spec == PartitionSpec(None, "model")
            assert len(getattr(cell, name)[...].sharding.device_set) == 8
        ys = jax.jit(lambda x: rnnlab.RNN(cell)(x))(xs)
    np.testing.assert_allclose(ys, want, rtol=1e-5, atol=1e-6)


def test_metadata_naming_the_wrong_rank_or_parameter_is_refused():
    with pytest.raises(ValueError, match="names 3 axes, but it has 2"):
        cells.LSTMCell(3, 8, kernel_metadata={"out_sharding": (None, "a", "b")}, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="param_metadata names \\['kernal_ih'\\]"):
        cells.LSTMCell(3, 8, param_metadata={"kernal_ih": {}}, rngs=nnx.Rngs(0))


# -- the stack's dropout stream ----------------------------------------------------------------


def test_stack_dropout_draws_from_its_construction_rngs_in_training():
    xs = jax.random.normal(jax.random.key(4), (2, 5, 3))
    stack = rnnlab.StackedRNN(3, 16, 2, dropout=0.5, rngs=nnx.Rngs(0))
    no_drop = rnnlab.StackedRNN(3, 16, 2, rngs=nnx.Rngs(0))
    stack.train()
    first, second = stack(xs), stack(xs)
    assert not np.allclose(first, second)  # the stream moved on between calls
    stack.eval()
    np.testing.assert_allclose(stack(xs), no_drop(xs), rtol=1e-6, atol=1e-7)
    # The layer's input to layer 2 is dropped: the stack's hidden output differs from eval.
    assert not np.allclose(first, no_drop(xs))
    regularized = rnnlab.StackedRNN(
        3, 16, 2, regularization={"input_dropout": 0.3}, rngs=nnx.Rngs(0)
    )
    regularized.train()
    assert not np.allclose(regularized(xs), regularized(xs))
    # Without a dropout or default stream (the trainer's nnx.Rngs(params=seed)) there is
    # nothing to fork: the stack builds, and a training call asks for its rngs.
    params_only = rnnlab.StackedRNN(3, 16, 2, dropout=0.5, rngs=nnx.Rngs(params=0))
    params_only.train()
    with pytest.raises(ValueError, match="rngs"):
        params_only(xs)
    np.testing.assert_allclose(params_only(xs, rngs=nnx.Rngs(dropout=1)).shape, (2, 5, 16))


# -- complex inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["simple", "lstm", "gru", "mingru"])
def test_complex_inputs_are_refused_with_the_reason(name):
    cell = CELLS[name][0](rngs=nnx.Rngs(0))
    x = jnp.ones((2, 3), jnp.complex64)
    with pytest.raises(ValueError, match="no bounded complex form"):
        cell(cell.initialize_carry((2, 3)), x)
    with pytest.raises(ValueError, match="real and imaginary parts"):
        rnnlab.RNN(cell)(jnp.ones((2, 4, 3), jnp.complex64))
