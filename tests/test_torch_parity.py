"""rnnlab layers against PyTorch's nn.RNN / nn.LSTM / nn.GRU holding the same weights.

Outputs, final states, and the gradients of a loss with respect to the input, the initial
state and every weight agree to 1e-5 in float32, for one-layer and two-layer bidirectional
modules, and for padded batches against ``pack_padded_sequence``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from rnn_reference import random_module

import rnnlab
from rnnlab.interop.torch import (
    carry_from_torch,
    carry_to_torch,
    load_torch_rnn,
    to_torch_state_dict,
)

# PyTorch's own notice that it falls back from oneDNN for proj_size; not a problem here.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")

BATCH, TIME, IN, HIDDEN = 3, 7, 4, 5
TOL = dict(rtol=1e-5, atol=1e-5)

MODULES = {
    "rnn_tanh": lambda **kw: torch.nn.RNN(IN, HIDDEN, **kw),
    "rnn_relu": lambda **kw: torch.nn.RNN(IN, HIDDEN, nonlinearity="relu", **kw),
    "lstm": lambda **kw: torch.nn.LSTM(IN, HIDDEN, **kw),
    "lstm_proj": lambda **kw: torch.nn.LSTM(IN, HIDDEN, proj_size=3, **kw),
    "gru": lambda **kw: torch.nn.GRU(IN, HIDDEN, **kw),
}


def build(kind, seed=0, **kw):
    torch.manual_seed(seed)
    return MODULES[kind](batch_first=True, **kw)


def cell_at(layer, k, direction):
    """The cell of rnnlab ``layer`` at depth ``k`` and direction 0 (forward) or 1."""
    if isinstance(layer, rnnlab.StackedRNN):
        layer = layer.layers[k]
    if isinstance(layer, rnnlab.Bidirectional):
        return (layer.forward_rnn, layer.backward_rnn)[direction].cell
    return layer.cell


def expected_grad(grad_layer, torch_name):
    """The rnnlab gradient that should equal PyTorch's gradient of ``torch_name``."""
    base, layer_tag = torch_name.rsplit("_l", 1)
    k, direction = int(layer_tag.split("_")[0]), int(layer_tag.endswith("_reverse"))
    cell = cell_at(grad_layer, k, direction)
    if base in ("weight_ih", "weight_hh", "weight_hr"):
        attr = {"weight_ih": "kernel_ih", "weight_hh": "kernel_hh", "weight_hr": "kernel_proj"}
        return np.asarray(getattr(cell, attr[base])[...]).T
    if isinstance(cell, rnnlab.GRUCell):
        return np.asarray(getattr(cell, base)[...])
    # One fused bias receives the gradient of both PyTorch biases, which only enter summed.
    return np.asarray(cell.bias[...])


def readout_weights(shapes, seed=1):
    """Fixed random weights that turn every output into one scalar loss."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(np.float32) for s in shapes]


def torch_run(module, x, hx, lengths=None):
    """Forward and backward in PyTorch; returns outputs, states and gradients as NumPy."""
    x = torch.tensor(x, requires_grad=True)
    hx = tuple(torch.tensor(h, requires_grad=True) for h in hx)
    if lengths is None:
        y, states = module(x, hx if len(hx) == 2 else hx[0])
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.tensor(lengths), batch_first=True, enforce_sorted=False
        )
        y, states = module(packed, hx if len(hx) == 2 else hx[0])
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=TIME)
    states = states if isinstance(states, tuple) else (states,)
    weights = readout_weights([tuple(y.shape)] + [tuple(s.shape) for s in states])
    loss = sum(
        (torch.tensor(w) * torch.tanh(t)).sum() for w, t in zip(weights, (y, *states), strict=True)
    )
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    return (
        y.detach().numpy(),
        [s.detach().numpy() for s in states],
        x.grad.numpy(),
        [h.grad.numpy() for h in hx],
        grads,
    )


def rnnlab_run(layer, x, hx, lengths=None):
    """The same loss in JAX; returns outputs, PyTorch-layout states and gradients."""

    def loss(layer, x, hx):
        carry0 = carry_from_torch(layer, hx if len(hx) == 2 else hx[0])
        carry, y = layer(x, initial_carry=carry0, seq_lengths=lengths, return_carry=True)
        states = carry_to_torch(layer, carry)
        states = states if isinstance(states, tuple) else (states,)
        weights = readout_weights([y.shape] + [s.shape for s in states])
        total = sum(jnp.sum(w * jnp.tanh(t)) for w, t in zip(weights, (y, *states), strict=True))
        return total, (y, states)

    grad = nnx.jit(nnx.grad(loss, argnums=(0, 1, 2), has_aux=True))
    (g_layer, g_x, g_hx), (y, states) = grad(layer, jnp.asarray(x), tuple(map(jnp.asarray, hx)))
    graphdef, _ = nnx.split(layer)
    return np.asarray(y), states, np.asarray(g_x), g_hx, nnx.merge(graphdef, g_layer)


def initial_states(module, seed=2):
    rng = np.random.default_rng(seed)
    rows = module.num_layers * (2 if module.bidirectional else 1)
    out = getattr(module, "proj_size", 0) or HIDDEN
    shapes = [(rows, BATCH, out)]
    if isinstance(module, torch.nn.LSTM):
        shapes.append((rows, BATCH, HIDDEN))
    return [rng.normal(size=s).astype(np.float32) for s in shapes]


def assert_parity(module, lengths=None, implementation="auto"):
    x = np.random.default_rng(0).normal(size=(BATCH, TIME, IN)).astype(np.float32)
    hx = initial_states(module)
    t_y, t_states, t_gx, t_ghx, t_grads = torch_run(module, x, hx, lengths)
    layer = load_torch_rnn(module, rnn_kwargs={"implementation": implementation})
    y, states, g_x, g_hx, g_layer = rnnlab_run(layer, x, hx, lengths)
    np.testing.assert_allclose(y, t_y, **TOL)
    for got, want in zip(states, t_states, strict=True):
        np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(g_x, t_gx, **TOL)
    # carry_from_torch takes (h_0, c_0) for an LSTM, as PyTorch does.
    for got, want in zip(jax.tree.leaves(g_hx), t_ghx, strict=True):
        np.testing.assert_allclose(got, want, **TOL)
    assert t_grads, "the module has parameters"
    for name, want in t_grads.items():
        np.testing.assert_allclose(expected_grad(g_layer, name), want, err_msg=name, **TOL)


# "auto" runs the fused whole-sequence kernel where it applies (LSTM without projection,
# GRU); "scan" is the step-by-step loop every cell has.
@pytest.mark.parametrize(
    "kind, implementation",
    [(kind, "auto") for kind in sorted(MODULES)] + [("lstm", "scan"), ("gru", "scan")],
)
def test_one_layer_matches_pytorch(kind, implementation):
    assert_parity(build(kind), implementation=implementation)


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_two_layer_bidirectional_padded_batch_matches_packed_sequences(kind):
    # Unsorted lengths, one of them full: pack_padded_sequence sorts them itself
    # (enforce_sorted=False); PyTorch's h_n of the backward direction is its state at t = 0.
    module = build(kind, num_layers=2, bidirectional=True)
    assert_parity(module, lengths=np.array([4, 7, 1]))


def test_exported_weights_reproduce_the_layer_in_pytorch():
    stack = random_module(
        lambda: rnnlab.StackedRNN(
            IN,
            HIDDEN,
            2,
            cell="lstm",
            cell_kwargs={"proj_features": 3},
            bidirectional=True,
            rngs=nnx.Rngs(0),
        )
    )
    x = np.random.default_rng(0).normal(size=(BATCH, TIME, IN)).astype(np.float32)
    module = build("lstm_proj", num_layers=2, bidirectional=True)
    state = {k: torch.from_numpy(v) for k, v in to_torch_state_dict(stack).items()}
    module.load_state_dict(state, strict=True)
    with torch.no_grad():
        want, _ = module(torch.from_numpy(x))
    np.testing.assert_allclose(nnx.jit(stack)(jnp.asarray(x)), want.numpy(), **TOL)
