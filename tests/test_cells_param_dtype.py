"""bfloat16 parameters for every cell, and the shared gate-parameter helper.

Initialisers run in float32 and are cast (XLA's CPU QR, which the orthogonal initialiser
needs, has no bfloat16 kernel), so every cell must build with ``param_dtype=bfloat16``, hold
bfloat16 parameters equal to the rounded float32 initialisation, and run a step.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import rnnlab
import rnnlab.cells as cells
from rnnlab.cells.params import gate_params, init_dtype
from rnnlab.layers import BNLSTM

BF16 = jnp.bfloat16
IN, HIDDEN, BATCH = 3, 4, 2
# Constructor arguments a cell needs beyond (in, hidden); shapes of its one-step input.
EXTRA = {"conv_lstm": {"kernel_size": 3}, "ConvLSTMCell": {"kernel_size": 3}}
SPATIAL = (5, 5)


def exported_cell_classes():
    """The concrete cell classes (and the BN-LSTM layer) exported by ``rnnlab.cells``."""
    out = []
    for name in cells.__all__:
        obj = getattr(cells, name)
        if not inspect.isclass(obj) or obj in (cells.RecurrentCell, cells.LinearRecurrentCell):
            continue
        if issubclass(obj, cells.RecurrentCell):
            out.append(name)
    return out + ["BNLSTM"]  # the BN-LSTM layer (rnnlab.layers) keeps float32 statistics


def build(name, param_dtype, seed=0):
    kwargs = dict(EXTRA.get(name, {}), param_dtype=param_dtype, rngs=nnx.Rngs(seed))
    if name in cells.cell_names():
        return cells.make_cell(name, IN, HIDDEN, **kwargs)
    return (BNLSTM if name == "BNLSTM" else getattr(cells, name))(IN, HIDDEN, **kwargs)


def one_input(cell):
    spatial = SPATIAL if cell.num_feature_axes == 3 else ()
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.normal(size=(BATCH, *spatial, IN)), jnp.float32).astype(BF16)


def params_of(module):
    return {"/".join(map(str, k)): v.get_value() for k, v in nnx.to_flat_state(nnx.state(module))}


ALL = sorted(set(cells.cell_names()) | set(exported_cell_classes()))


def test_the_sweep_covers_every_registered_name_and_exported_class():
    assert {"lstm", "gru", "simple", "orthogonal", "lru", "conv_lstm"} <= set(ALL)
    assert {"LSTMCell", "GRUCell", "BNLSTM", "MinLSTMCell", "LRUCell"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_bfloat16_params_build_run_a_step_and_round_the_float32_init(name):
    module = build(name, BF16)
    want = params_of(build(name, jnp.float32))
    got = params_of(module)
    assert got.keys() == want.keys()
    for key, value in got.items():
        if key.rsplit("/", 1)[-1] in cells.batchnorm.STAT_NAMES:
            assert value.dtype == jnp.float32, key  # running statistics stay float32
            continue
        assert value.dtype == BF16, f"{name}: {key} is {value.dtype}"
        # The same draw as in float32, rounded once: initialised in float32, then cast.
        np.testing.assert_array_equal(
            np.asarray(value, np.float32), np.asarray(want[key].astype(BF16), np.float32)
        )
    if isinstance(module, BNLSTM):
        x = one_input(module.cell)[:, None]  # [batch, time=1, features]
        y = module(x)
        assert y.shape == (BATCH, 1, HIDDEN)
    else:
        x = one_input(module)
        carry, y = module(module.initialize_carry(x.shape), x)
        assert y.dtype == BF16, f"{name}: output dtype {y.dtype}"
        assert y.shape[:1] == (BATCH,)
    assert bool(jnp.all(jnp.isfinite(jnp.asarray(y, jnp.float32))))


def test_bfloat16_layer_runs_a_sequence():
    layer = rnnlab.RNN(rnnlab.LSTMCell(IN, HIDDEN, param_dtype=BF16, rngs=nnx.Rngs(0)))
    y = layer(jnp.ones((BATCH, 6, IN), BF16))
    assert y.shape == (BATCH, 6, HIDDEN) and y.dtype == BF16


def test_gate_params_shapes_order_and_key_draws():
    rngs = nnx.Rngs(7)
    k_ih, k_hh, b_ih, b_hh = gate_params(
        rngs,
        input_shape=(3,),
        recurrent_shape=(4,),
        width=12,
        kernel_init=jax.nn.initializers.lecun_normal(),
        recurrent_kernel_init=jax.nn.initializers.orthogonal(),
        bias_init=jax.nn.initializers.zeros,
        num_biases=2,
    )
    assert [p.shape for p in (k_ih, k_hh, b_ih, b_hh)] == [(3, 12), (4, 12), (12,), (12,)]
    # Four arrays, four keys: the next draw is the fifth of the stream.
    ref = nnx.Rngs(7)
    for _ in range(4):
        ref.params()
    assert np.array_equal(jax.random.key_data(rngs.params()), jax.random.key_data(ref.params()))
    key = nnx.Rngs(7).params()
    np.testing.assert_array_equal(
        k_ih.get_value(), jax.nn.initializers.lecun_normal()(key, (3, 12), jnp.float32)
    )


def test_gate_params_rejects_bad_arguments():
    common = dict(input_shape=(3,), width=4, kernel_init=jax.nn.initializers.zeros)
    with pytest.raises(ValueError, match="num_biases"):
        gate_params(nnx.Rngs(0), recurrent_shape=None, bias_init=jnp.zeros, num_biases=3, **common)
    with pytest.raises(ValueError, match="recurrent_kernel_init"):
        gate_params(nnx.Rngs(0), recurrent_shape=(4,), bias_init=jnp.zeros, **common)
    with pytest.raises(ValueError, match="floating"):
        init_dtype(jnp.int32)
