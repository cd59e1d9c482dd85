"""Bidirectional and StackedRNN, and properties of the layers, against a float64 NumPy loop
of the textbook equations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from layer_cases import (
    BATCH,
    CELLS,
    HIDDEN,
    IN,
    LENGTHS,
    TIME,
    assert_tree_close,
    inputs,
    make_cell,
    random_carry,
    reference,
    run,
    with_garbage,
)
from rnn_reference import random_module

import rnnlab
from rnnlab.scan import reverse_valid

# -- Bidirectional --------------------------------------------------------------------------


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_matches_forward_and_backward_loops(merge):
    fwd, bwd = make_cell("lstm", seed=1), make_cell("lstm", seed=2)
    x = inputs()
    c0 = (random_carry(fwd, (BATCH,), seed=3), random_carry(bwd, (BATCH,), seed=4))
    layer = rnnlab.Bidirectional(rnnlab.RNN(fwd), rnnlab.RNN(bwd), merge=merge)
    (carry_f, carry_b), y = run(layer, x, seq_lengths=LENGTHS, initial_carry=c0)
    want_cf, want_f = reference(fwd, x, LENGTHS, carry0=c0[0])
    want_cb, want_b = reference(bwd, x, LENGTHS, reverse=True, carry0=c0[1])
    want = np.concatenate([want_f, want_b], -1) if merge == "concat" else want_f + want_b
    assert layer.output_features == want.shape[-1]
    assert_tree_close(y, want)
    assert_tree_close((carry_f, carry_b), (want_cf, want_cb))


# -- StackedRNN -----------------------------------------------------------------------------


def stacked_reference(stack, x, lengths, carries0=None, residual=False):
    """Chains the per-layer NumPy loops; padded outputs are zero between layers."""
    out, carries = np.asarray(x, np.float64), []
    for k, layer in enumerate(stack.layers):
        c0 = None if carries0 is None else carries0[k]
        if isinstance(layer, rnnlab.Bidirectional):
            cf, yf = reference(layer.forward_rnn.cell, out, lengths, carry0=c0 and c0[0])
            cb, yb = reference(layer.backward_rnn.cell, out, lengths, True, carry0=c0 and c0[1])
            carry, y = (cf, cb), np.concatenate([yf, yb], -1)
        else:
            carry, y = reference(layer.cell, out, lengths, carry0=c0)
        if residual and y.shape == out.shape:
            y = y + out
        carries.append(carry)
        out = y
    return carries, out


@pytest.mark.parametrize("bidirectional", [False, True])
def test_stacked_rnn_matches_chained_loops_with_per_layer_carries(bidirectional):
    stack = random_module(
        lambda: rnnlab.StackedRNN(
            IN, HIDDEN, 2, cell="lstm", bidirectional=bidirectional, rngs=nnx.Rngs(0)
        ),
        seed=1,
    )
    x = inputs()
    carries0 = []
    for k, layer in enumerate(stack.layers):
        if bidirectional:
            cells = (layer.forward_rnn.cell, layer.backward_rnn.cell)
            carries0.append(
                tuple(random_carry(c, (BATCH,), seed=k + d) for d, c in enumerate(cells))
            )
        else:
            carries0.append(random_carry(layer.cell, (BATCH,), seed=k))
    carries, y = run(stack, x, seq_lengths=LENGTHS, initial_carry=carries0)
    want_carries, want_y = stacked_reference(stack, x, LENGTHS, carries0)
    assert len(carries) == 2
    assert_tree_close(y, want_y)
    assert_tree_close(carries, want_carries)


def test_residual_stack_adds_layer_inputs_and_keeps_padding_zero():
    stack = random_module(
        lambda: rnnlab.StackedRNN(IN, IN, 2, cell="gru", residual=True, rngs=nnx.Rngs(0)), seed=2
    )
    x = with_garbage(inputs(), LENGTHS)
    _, y = run(stack, x, seq_lengths=LENGTHS)
    _, want = stacked_reference(stack, x, LENGTHS, residual=True)
    valid = np.arange(TIME)[None, :] < LENGTHS[:, None]
    np.testing.assert_allclose(np.asarray(y)[valid], want[valid], rtol=1e-5, atol=1e-5)
    # Padding semantics hold for the stack too: outputs past the length are zero.
    assert not np.any(np.asarray(y)[~valid])


def test_dropout_is_off_in_evaluation_mode_and_on_in_training():
    x = inputs()
    build = lambda rate: random_module(
        lambda: rnnlab.StackedRNN(IN, HIDDEN, 2, cell="simple", dropout=rate, rngs=nnx.Rngs(0))
    )
    plain, dropped = build(0.0), build(0.5)  # same parameters
    _, want = run(plain, x, seq_lengths=LENGTHS)
    dropped.eval()
    _, y = run(dropped, x, seq_lengths=LENGTHS)
    np.testing.assert_array_equal(y, want)
    dropped.train()
    _, noisy = run(dropped, x, seq_lengths=LENGTHS, rngs=nnx.Rngs(dropout=1))
    assert not np.allclose(noisy, want)
    assert not np.any(np.asarray(noisy)[2])  # padding stays zero


# -- properties -----------------------------------------------------------------------------
# Shapes come from a small set and layers run jitted, so that examples share compilations.

PROPERTY = settings(max_examples=20, deadline=None, derandomize=True)


@st.composite
def padded_batches(draw, kinds=("lstm_proj", "gru_original"), times=(1, 6)):
    """A cell kind, inputs ``[3, T, IN]`` with ``T`` from ``times`` and lengths in ``[0, T]``."""
    time = draw(st.sampled_from(times))
    lengths = np.array(draw(st.lists(st.integers(0, time), min_size=BATCH, max_size=BATCH)))
    seed = draw(st.integers(0, 2**16))
    return draw(st.sampled_from(kinds)), inputs((BATCH, time, IN), seed), lengths


@PROPERTY
@given(padded_batches(), st.booleans())
def test_property_padding_garbage_is_ignored(case, reverse):
    kind, x, lengths = case
    layer = rnnlab.RNN(make_cell(kind), reverse=reverse)
    lengths = jnp.asarray(lengths)
    carry, y = run(layer, x, seq_lengths=lengths)
    carry_g, y_g = run(layer, with_garbage(x, lengths), seq_lengths=lengths)
    assert_tree_close(y_g, np.asarray(y), tol=0)
    assert_tree_close(carry_g, jax.tree.map(np.asarray, carry), tol=0)
    assert not np.any(np.asarray(y)[np.arange(x.shape[1])[None, :] >= lengths[:, None]])


@PROPERTY
@given(padded_batches(kinds=("gru_original",), times=(6,)))
def test_property_reversing_the_valid_part_twice_is_the_identity(case):
    kind, x, lengths = case
    xs, lengths = jnp.swapaxes(x, 0, 1), jnp.asarray(lengths)  # the scan helpers are time-major
    once = np.asarray(jax.jit(reverse_valid)(xs, lengths))
    twice = np.asarray(jax.jit(reverse_valid)(jnp.asarray(once), lengths))
    np.testing.assert_array_equal(twice, np.asarray(xs))
    for b, length in enumerate(np.asarray(lengths)):
        np.testing.assert_array_equal(once[:length, b], np.asarray(xs)[:length, b][::-1])
        np.testing.assert_array_equal(once[length:, b], np.asarray(xs)[length:, b])
    # keep_order=False is the same reversal applied to the outputs.
    cell = make_cell(kind)
    _, ordered = run(rnnlab.RNN(cell, reverse=True, keep_order=True), x, seq_lengths=lengths)
    _, unordered = run(rnnlab.RNN(cell, reverse=True), x, seq_lengths=lengths)
    flipped = jnp.swapaxes(reverse_valid(jnp.swapaxes(unordered, 0, 1), lengths), 0, 1)
    np.testing.assert_array_equal(np.asarray(flipped), np.asarray(ordered))


@PROPERTY
@given(padded_batches(kinds=("lstm_proj",), times=(6,)), st.booleans(), st.floats(0.0, 0.5))
def test_property_one_layer_stack_is_the_rnn_layer(case, with_carry, reset_rate):
    kind, x, lengths = case
    build = lambda i, h, rngs: CELLS[kind](0)
    stack = random_module(lambda: rnnlab.StackedRNN(IN, HIDDEN, 1, cell=build, rngs=nnx.Rngs(0)))
    cell = stack.layers[0].cell
    batch, time = x.shape[:2]
    carry0 = random_carry(cell, (batch,)) if with_carry else cell.initialize_carry((batch, IN))
    resets = jnp.asarray(np.random.default_rng(time).random((batch, time)) < reset_rate)
    kw = dict(seq_lengths=jnp.asarray(lengths), resets=resets)
    carries, y = run(stack, x, initial_carry=[carry0], **kw)
    want_carry, want_y = run(rnnlab.RNN(cell), x, initial_carry=carry0, **kw)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(want_y))
    assert_tree_close(carries, [jax.tree.map(np.asarray, want_carry)], tol=0)
