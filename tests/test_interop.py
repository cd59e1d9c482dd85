"""rnnlab cells in flax.nnx.RNN and in Linen models; the PyTorch loader's interface; and a
core import that stays free of the harness and of torch."""

import json
import os
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen, nnx
from rnn_reference import random_module, run_batch, step_fn, zero_carry

import rnnlab
from rnnlab.interop.linen import linen_cell, linen_rnn
from rnnlab.interop.torch import fill_from_torch, load_torch_rnn

BATCH, TIME, IN, HIDDEN = 3, 7, 4, 5
LENGTHS = np.array([7, 4, 1])  # flax.nnx.RNN selects carry[length - 1]: no empty sequences
TOL = dict(rtol=1e-5, atol=1e-5)


def inputs(seed=0, shape=(BATCH, TIME, IN)):
    return jax.device_put(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def valid(y, lengths=LENGTHS):
    return np.asarray(y)[np.arange(TIME)[None, :] < np.asarray(lengths)[:, None]]


# -- flax.nnx.RNN -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, reverse",
    [
        (lambda: rnnlab.LSTMCell(IN, HIDDEN, proj_features=3, rngs=nnx.Rngs(0)), False),
        (lambda: rnnlab.GRUCell(IN, HIDDEN, reset_after=False, rngs=nnx.Rngs(0)), True),
    ],
    ids=["lstm_proj", "gru_original_reverse"],
)
def test_cell_inside_flax_nnx_rnn_matches_rnnlab_rnn(build, reverse):
    cell = random_module(build, seed=1)
    x = inputs()
    flax_rnn = nnx.RNN(cell, reverse=reverse, keep_order=True, return_carry=True)
    ours = rnnlab.RNN(cell, reverse=reverse, keep_order=True, return_carry=True)
    carry0 = jax.tree.map(lambda c: c + 0.5, cell.initialize_carry((BATCH, IN)))
    lengths = jnp.asarray(LENGTHS)
    f_carry, f_y = nnx.jit(lambda m, x: m(x, seq_lengths=lengths, initial_carry=carry0))(
        flax_rnn, x
    )
    carry, y = nnx.jit(lambda m, x: m(x, seq_lengths=lengths, initial_carry=carry0))(ours, x)
    # flax.nnx.RNN does not zero the padding; valid positions and final carries agree.
    np.testing.assert_allclose(valid(y), valid(f_y), **TOL)
    for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(f_carry), strict=True):
        np.testing.assert_allclose(a, b, **TOL)


# -- Linen, through flax.nnx.bridge -----------------------------------------------------------


class Tagger(linen.Module):
    """A Linen model with an rnnlab LSTM layer inside (the example of docs/interop.md)."""

    @linen.compact
    def __call__(self, x, lengths):
        h = linen_rnn("lstm", IN, HIDDEN, name="rnn")(x, seq_lengths=lengths)
        return linen.Dense(2, name="head")(h)


def cell_from_linen(params, build):
    """An rnnlab cell carrying the parameters stored in a Linen ``params`` subtree."""
    cell = nnx.eval_shape(build)
    for name, value in params.items():
        getattr(cell, name).set_value(value)
    return cell


def test_linen_model_with_rnnlab_layer_matches_reference():
    x, lengths = inputs(), jnp.asarray(LENGTHS)
    variables = jax.jit(Tagger().init)(jax.random.key(0), x, lengths)
    params = variables["params"]
    assert set(params["rnn"]["cell"]) == {"kernel_ih", "kernel_hh", "bias"}
    y = jax.jit(Tagger().apply)(variables, x, lengths)

    cell = cell_from_linen(
        params["rnn"]["cell"], lambda: rnnlab.LSTMCell(IN, HIDDEN, rngs=nnx.Rngs(0))
    )
    _, h = run_batch(step_fn(cell), zero_carry(cell, BATCH), np.asarray(x), LENGTHS)
    head = params["head"]
    want = h @ np.asarray(head["kernel"], np.float64) + np.asarray(head["bias"], np.float64)
    np.testing.assert_allclose(valid(y), valid(want), **TOL)
    # Padded outputs of the layer are zero, so the head returns its bias there.
    np.testing.assert_allclose(np.asarray(y)[2, 1:], np.broadcast_to(head["bias"], (6, 2)))

    # Training through the bridge: gradients reach the rnnlab parameters.
    grads = jax.jit(jax.grad(lambda v: jnp.sum(Tagger().apply(v, x, lengths) ** 2)))(variables)
    assert all(np.any(np.asarray(g)) for g in jax.tree.leaves(grads["params"]["rnn"]))


def test_linen_cell_stepped_in_a_loop_keeps_the_parameters_it_was_built_with():
    class Stepper(linen.Module):
        @linen.compact
        def __call__(self, xs):
            cell = linen_cell("gru", IN, HIDDEN, name="cell")
            carry = cell(xs.shape[:1] + xs.shape[2:], nnx_method="initialize_carry")
            outputs = []
            for t in range(xs.shape[1]):
                carry, y = cell(carry, xs[:, t])
                outputs.append(y)
            return jnp.stack(outputs, axis=1)

    x = inputs(1, (BATCH, 3, IN))  # three steps: the loop unrolls into the program
    y_init, variables = jax.jit(Stepper().init_with_output)(jax.random.key(0), x)
    y = jax.jit(Stepper().apply)(variables, x)
    # Plain ToLinen would redraw the parameters at every call during init (a 0.5 difference).
    np.testing.assert_allclose(y_init, y, rtol=1e-6, atol=1e-6)
    cell = cell_from_linen(
        variables["params"]["cell"], lambda: rnnlab.GRUCell(IN, HIDDEN, rngs=nnx.Rngs(0))
    )
    _, want = run_batch(step_fn(cell), zero_carry(cell, BATCH), np.asarray(x))
    np.testing.assert_allclose(y, want, **TOL)


def test_plain_to_linen_wraps_any_rnnlab_factory():
    def factory(*, rngs):
        return rnnlab.RNN(rnnlab.SimpleCell(IN, HIDDEN, rngs=rngs), reverse=True)

    module = nnx.bridge.ToLinen(factory)
    x = inputs(2)
    variables = jax.jit(module.init)(jax.random.key(0), x)
    cell = cell_from_linen(
        variables["params"]["cell"], lambda: rnnlab.SimpleCell(IN, HIDDEN, rngs=nnx.Rngs(0))
    )
    _, want = run_batch(step_fn(cell), zero_carry(cell, BATCH), np.asarray(x), reverse=True)
    # rnnlab.RNN(reverse=True) returns outputs in processing order (keep_order=False).
    np.testing.assert_allclose(jax.jit(module.apply)(variables, x), want[:, ::-1], **TOL)


# -- the PyTorch loader's interface --------------------------------------------------------


def abstract(build):
    """A layer without parameter values: the loader's checks run before any value is needed."""
    return nnx.eval_shape(build)


def torch_lstm(**kw):
    torch.manual_seed(0)
    return torch.nn.LSTM(IN, HIDDEN, batch_first=True, **kw)


def torch_forward(module, x):
    with torch.no_grad():
        return module(torch.tensor(np.asarray(x)))[0].numpy()


def test_numpy_state_dict_with_prefix_inside_a_larger_model():
    module = torch_lstm(num_layers=2)
    state = {f"encoder.rnn.{k}": v.numpy() for k, v in module.state_dict().items()}
    state["encoder.embed.weight"] = np.zeros((10, IN), np.float32)
    layer = load_torch_rnn(state, prefix="encoder.rnn.")
    assert isinstance(layer, rnnlab.StackedRNN) and layer.num_layers == 2
    x = inputs(3)
    np.testing.assert_allclose(nnx.jit(layer)(x), torch_forward(module, x), **TOL)


def test_time_major_option_follows_pytorch_default_layout():
    torch.manual_seed(0)
    module = torch.nn.GRU(IN, HIDDEN, bidirectional=True)  # batch_first=False
    layer = load_torch_rnn(module, time_major=True)
    x = inputs(4, (TIME, BATCH, IN))
    np.testing.assert_allclose(nnx.jit(layer)(x), torch_forward(module, x), **TOL)


def test_elman_state_dict_needs_its_nonlinearity():
    torch.manual_seed(0)
    module = torch.nn.RNN(IN, HIDDEN, nonlinearity="relu", batch_first=True)
    state = module.state_dict()  # records no nonlinearity
    assert load_torch_rnn(module).cell.activation == "relu"
    assert load_torch_rnn(state).cell.activation == "tanh"  # PyTorch's default
    layer = load_torch_rnn(state, nonlinearity="relu")
    x = inputs(5)
    np.testing.assert_allclose(nnx.jit(layer)(x), torch_forward(module, x), **TOL)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
def test_file_is_read_with_weights_only(tmp_path):
    module = torch_lstm(proj_size=3)
    path = tmp_path / "lstm.pt"
    torch.save(module.state_dict(), path)
    layer = load_torch_rnn(path)
    assert layer.cell.proj_features == 3
    x = inputs(6)
    np.testing.assert_allclose(nnx.jit(layer)(x), torch_forward(module, x), **TOL)


CALLED = []


def _record(*args):
    CALLED.append(args)


class Payload:
    """An object whose unpickling would run code."""

    def __reduce__(self):
        return (_record, ("unpickled",))


def test_file_with_arbitrary_objects_is_refused_without_running_them(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weight_ih_l0": Payload()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_torch_rnn(path)
    assert CALLED == []


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda sd: load_torch_rnn(sd, prefix="decoder."), "weight_ih_l0"),
        (lambda sd: load_torch_rnn({**sd, "weight_xx_l0": sd["weight_ih_l0"]}), "weight_xx_l0"),
        (lambda sd: load_torch_rnn(42), "source"),
        (
            lambda sd: fill_from_torch(
                abstract(lambda: rnnlab.RNN(rnnlab.GRUCell(IN, HIDDEN, rngs=nnx.Rngs(0)))), sd
            ),
            "must be a LSTMCell for a LSTM, got GRUCell",
        ),
        (
            lambda sd: fill_from_torch(
                abstract(lambda: rnnlab.RNN(rnnlab.LSTMCell(IN, 6, rngs=nnx.Rngs(0)))), sd
            ),
            r"weight_ih_l0.*\(4, 24\).*\(4, 20\)",
        ),
        (
            lambda sd: fill_from_torch(
                abstract(lambda: rnnlab.StackedRNN(IN, HIDDEN, 2, rngs=nnx.Rngs(0))), sd
            ),
            "2 layer",
        ),
    ],
    ids=["wrong prefix", "unknown key", "not a state_dict", "cell type", "sizes", "depth"],
)
def test_loader_errors_name_the_problem(make, match):
    sd = {k: v.numpy() for k, v in torch_lstm().state_dict().items()}
    with pytest.raises(ValueError, match=match):
        make(sd)


def test_pytorch_gru_needs_the_reset_after_form():
    torch.manual_seed(0)
    gru = torch.nn.GRU(IN, HIDDEN)
    layer = abstract(
        lambda: rnnlab.RNN(rnnlab.GRUCell(IN, HIDDEN, reset_after=False, rngs=nnx.Rngs(0)))
    )
    with pytest.raises(ValueError, match="reset_after"):
        fill_from_torch(layer, gru)


# -- import hygiene -------------------------------------------------------------------------

HEAVY = ["tensorflow", "orbax", "grain", "tensorflow_datasets", "ml_collections", "torch"]

PROBE = """
import json, sys
import numpy as np
import rnnlab, rnnlab.cells, rnnlab.layers, rnnlab.scan, rnnlab.interop
import rnnlab.interop.linen, rnnlab.interop.torch
from rnnlab.interop.torch import load_torch_rnn
rng = np.random.default_rng(0)
state = {"weight_ih_l0": rng.normal(size=(20, 4)), "weight_hh_l0": rng.normal(size=(20, 5)),
         "bias_ih_l0": rng.normal(size=20), "bias_hh_l0": rng.normal(size=20)}
layer = load_torch_rnn(state)  # a NumPy state_dict loads without torch
heavy = %r
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def test_core_import_pulls_in_neither_the_harness_nor_torch():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", PROBE % HEAVY],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
