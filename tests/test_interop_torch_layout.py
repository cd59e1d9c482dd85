"""``load_torch_rnn`` takes the module's own input layout and never overrides the caller's.

PyTorch's default ``batch_first=False`` modules take ``[time, batch, features]``; a layer
loaded from one must take the same tensor and give the same outputs. The reference is
PyTorch itself (2.13, CPU, float32).
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import rnnlab
from rnnlab.interop.torch import build_layer, infer_spec, load_torch_rnn, read_state_dict

TIME, BATCH, IN, HIDDEN = 6, 3, 4, 5
TOL = dict(rtol=1e-5, atol=1e-5)
KINDS = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def module(kind, **kw):
    torch.manual_seed(0)
    return KINDS[kind](IN, HIDDEN, **kw)


def run_torch(m, x):
    with torch.no_grad():
        return m(torch.from_numpy(np.asarray(x)))[0].numpy()


def data(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize(
    "kw", [{}, {"num_layers": 2, "bidirectional": True}], ids=["one_layer", "stack_bidir"]
)
def test_default_layout_module_takes_its_own_time_major_input(kind, kw):
    m = module(kind, **kw)  # batch_first=False, PyTorch's default
    layer = load_torch_rnn(m)
    x = data((TIME, BATCH, IN))
    np.testing.assert_allclose(nnx.jit(layer)(jnp.asarray(x)), run_torch(m, x), **TOL)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_batch_first_module_takes_batch_major_input(kind):
    m = module(kind, batch_first=True, num_layers=2)
    layer = load_torch_rnn(m)
    x = data((BATCH, TIME, IN))
    np.testing.assert_allclose(nnx.jit(layer)(jnp.asarray(x)), run_torch(m, x), **TOL)


def test_explicit_rnn_kwargs_time_major_is_respected():
    m = module("lstm", batch_first=True)
    layer = load_torch_rnn(m, rnn_kwargs={"time_major": True, "implementation": "scan"})
    assert layer.time_major is True and layer.implementation == "scan"
    x = data((BATCH, TIME, IN))
    want = run_torch(m, x)  # PyTorch fed batch-major; rnnlab the same data time-major
    got = nnx.jit(layer)(jnp.asarray(np.swapaxes(x, 0, 1)))
    np.testing.assert_allclose(np.swapaxes(np.asarray(got), 0, 1), want, **TOL)


def test_explicit_time_major_argument_overrides_the_module_layout():
    m = module("gru")  # time-major module, batch-major caller
    layer = load_torch_rnn(m, time_major=False)
    x = data((BATCH, TIME, IN))
    want = run_torch(m, np.swapaxes(x, 0, 1))
    np.testing.assert_allclose(nnx.jit(layer)(jnp.asarray(x)), np.swapaxes(want, 0, 1), **TOL)


def test_contradicting_layouts_are_an_error_naming_both():
    with pytest.raises(
        ValueError, match=r"time_major=False contradicts rnn_kwargs\['time_major'\]"
    ):
        load_torch_rnn(module("lstm"), time_major=False, rnn_kwargs={"time_major": True})
    spec = infer_spec(read_state_dict(module("gru")))
    with pytest.raises(ValueError, match="contradicts"):
        build_layer(spec, time_major=True, rnn_kwargs={"time_major": False})


def test_state_dict_alone_defaults_to_batch_major_and_stacks_keep_rnn_kwargs():
    m = module("gru", num_layers=2)
    layer = load_torch_rnn(m.state_dict(), rnn_kwargs={"unroll": 2})
    assert isinstance(layer, rnnlab.StackedRNN)
    assert all(sub.time_major is False and sub.unroll == 2 for sub in layer.layers)
    x = data((BATCH, TIME, IN))
    want = np.swapaxes(run_torch(m, np.swapaxes(x, 0, 1)), 0, 1)
    np.testing.assert_allclose(nnx.jit(layer)(jnp.asarray(x)), want, **TOL)
