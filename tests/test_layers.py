"""RNN, Bidirectional and StackedRNN against a float64 NumPy loop of the textbook equations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from rnn_reference import (
    processing_order,
    random_module,
    run_batch,
    split_carry,
    step_fn,
    zero_carry,
)

import rnnlab
from rnnlab.cells import GRUCell, LSTMCell, SimpleCell
from rnnlab.scan import reverse_valid

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


# -- RNN ------------------------------------------------------------------------------------


# Every cell forward with the default implementation ("auto": the fused whole-sequence
# kernel for LSTM without projection and reset-after GRU, the scan otherwise); reversed, and
# through the scan for the fused-capable cells too. The reversal logic does not depend on
# the cell, so a few cells suffice.
@pytest.mark.parametrize(
    "kind, reverse, hoist, implementation",
    [(kind, False, False, "auto") for kind in sorted(CELLS)]
    + [(kind, True, True, "auto") for kind in ("elman_tanh", "lstm_proj", "gru_original")]
    + [("lstm", True, False, "auto"), ("gru_reset_after", True, False, "auto")]
    + [("lstm", True, True, "scan"), ("gru_reset_after", False, False, "scan")],
)
def test_rnn_with_lengths_and_initial_carry_matches_loop(kind, reverse, hoist, implementation):
    cell = make_cell(kind)
    x, carry0 = inputs(), random_carry(cell, (BATCH,))
    layer = rnnlab.RNN(
        cell, hoist_input_projection=hoist, keep_order=True, implementation=implementation
    )
    carry, y = run(layer, x, seq_lengths=LENGTHS, initial_carry=carry0, reverse=reverse)
    want_carry, want_y = reference(cell, x, LENGTHS, reverse, carry0=carry0)
    assert_tree_close(y, want_y)
    assert_tree_close(carry, want_carry)
    # Outputs past the length are exactly zero; an empty sequence keeps its initial carry.
    assert not np.any(np.asarray(y)[1, 4:]) and not np.any(np.asarray(y)[2])
    assert_tree_close(jax.tree.map(lambda c: c[2], carry), jax.tree.map(lambda c: c[2], carry0))


def test_reverse_without_keep_order_returns_processing_order():
    cell = make_cell("lstm")
    x = inputs()
    _, y = run(rnnlab.RNN(cell, reverse=True), x, seq_lengths=LENGTHS)
    _, want = reference(cell, x, LENGTHS, reverse=True)
    assert_tree_close(y, processing_order(want, LENGTHS))


@pytest.mark.parametrize("reverse", [False, True])
def test_resets_restart_the_state_at_flagged_steps(reverse):
    cell = make_cell("gru_reset_after")
    x, carry0 = inputs(), random_carry(cell, (BATCH,))
    resets = np.zeros((BATCH, TIME), bool)
    resets[0, [2, 5]] = True  # three packed segments
    resets[1, [1, 3, 6]] = True  # one flag in the padding (length 4): ignored
    carry, y = run(
        rnnlab.RNN(cell, keep_order=True),
        x,
        seq_lengths=LENGTHS,
        resets=jnp.asarray(resets),
        initial_carry=carry0,
        reverse=reverse,
    )
    want_carry, want_y = reference(cell, x, LENGTHS, reverse, resets, carry0)
    assert_tree_close(y, want_y)
    assert_tree_close(carry, want_carry)
    # The segments really are independent: the last one equals a fresh run over it alone.
    _, alone = reference(
        cell, x[:1, 5:], None, reverse, None, jax.tree.map(lambda c: c[:1], carry0)
    )
    assert_tree_close(y[:1, 5:], alone)


def test_time_major_layout():
    cell = make_cell("lstm_proj")
    x = inputs()
    resets = np.zeros((BATCH, TIME), bool)
    resets[0, 3] = True
    carry, y = run(
        rnnlab.RNN(cell, time_major=True),
        jnp.swapaxes(x, 0, 1),
        seq_lengths=LENGTHS,
        resets=jnp.asarray(resets.T),
    )
    want_carry, want_y = reference(cell, x, LENGTHS, resets=resets)
    assert_tree_close(jnp.swapaxes(y, 0, 1), want_y)
    assert_tree_close(carry, want_carry)


def test_multiple_batch_dimensions():
    cell = make_cell("elman_tanh")
    x = inputs((2, 3, TIME, IN))
    lengths = np.array([[7, 1, 3], [0, 6, 2]])
    resets = np.zeros((2, 3, TIME), bool)
    resets[1, 1, 2] = True
    carry, y = run(
        rnnlab.RNN(cell), x, seq_lengths=lengths, resets=jnp.asarray(resets), reverse=True
    )
    flat = lambda a: np.asarray(a).reshape((6,) + np.shape(a)[2:])
    want_carry, want_y = reference(cell, flat(x), flat(lengths), True, flat(resets))
    assert y.shape == (2, 3, TIME, HIDDEN) and carry.shape == (2, 3, HIDDEN)
    want_y = processing_order(want_y, flat(lengths))  # keep_order=False is the default
    assert_tree_close(flat(y), want_y)
    assert_tree_close(flat(carry), want_carry)


def test_constructor_flags_set_the_defaults():
    cell = make_cell("gru_original")
    x = inputs()
    layer = rnnlab.RNN(cell, reverse=True, keep_order=True, return_carry=True, unroll=3)
    carry, y = nnx.jit(lambda layer, x: layer(x))(layer, x)
    want_carry, want_y = reference(cell, x, reverse=True)
    assert_tree_close(y, want_y)
    assert_tree_close(carry, want_carry)


def with_garbage(x, lengths, seed=9):
    """``x`` with large random values at and past each length."""
    x = np.array(x)
    noise = 50.0 * np.random.default_rng(seed).normal(size=x.shape)
    pad = np.arange(x.shape[-2])[None, :] >= np.asarray(lengths)[:, None]
    return jnp.asarray(np.where(pad[..., None], noise, x), jnp.float32)


# With the per-step projection (the CPU default) the property test below covers both ways.
@pytest.mark.parametrize(
    "reverse, hoist, implementation",
    [(False, True, "scan"), (True, True, "scan"), (False, None, "fused"), (True, None, "fused")],
)
def test_padding_garbage_changes_neither_outputs_nor_carry(reverse, hoist, implementation):
    layer = rnnlab.RNN(
        make_cell("lstm"),
        hoist_input_projection=hoist,
        reverse=reverse,
        implementation=implementation,
    )
    x = inputs()
    carry, y = run(layer, x, seq_lengths=LENGTHS)
    carry_g, y_g = run(layer, with_garbage(x, LENGTHS), seq_lengths=LENGTHS)
    assert_tree_close(y_g, np.asarray(y), tol=0)
    assert_tree_close(carry_g, jax.tree.map(np.asarray, carry), tol=0)


def test_hoisted_and_per_step_projection_agree_in_values_and_gradients():
    cell = make_cell("lstm_proj")
    x = inputs()

    def loss(cell, x, hoist):
        layer = rnnlab.RNN(cell, hoist_input_projection=hoist, implementation="scan")
        carry, y = layer(x, seq_lengths=LENGTHS, return_carry=True)
        return jnp.sum(y * jnp.cos(y)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry))

    grad = nnx.jit(nnx.grad(loss, argnums=(0, 1)), static_argnums=2)
    (g_cell_a, g_x_a), (g_cell_b, g_x_b) = grad(cell, x, True), grad(cell, x, False)
    np.testing.assert_allclose(g_x_a, g_x_b, rtol=1e-5, atol=1e-6)
    assert_tree_close(nnx.state(g_cell_a), jax.tree.map(np.asarray, nnx.state(g_cell_b)))
    # The padding gets no gradient.
    assert not np.any(np.asarray(g_x_a)[1, 4:])


def test_jitted_layer_traces_once_for_new_batch_contents():
    layer = rnnlab.RNN(make_cell("gru_reset_after"))
    traces = []

    @nnx.jit
    def apply(layer, x, lengths, resets, carry0):
        traces.append(1)  # runs only while tracing
        return layer(x, seq_lengths=lengths, resets=resets, initial_carry=carry0)

    rng = np.random.default_rng(0)
    for seed in range(3):
        lengths = jnp.asarray(rng.integers(0, TIME + 1, BATCH), jnp.int32)
        resets = jnp.asarray(rng.random((BATCH, TIME)) < 0.3)
        y = apply(layer, inputs(seed=seed), lengths, resets, random_carry(layer.cell, (BATCH,)))
        _, want = reference(
            layer.cell,
            inputs(seed=seed),
            np.asarray(lengths),
            False,
            np.asarray(resets),
            random_carry(layer.cell, (BATCH,)),
        )
        assert_tree_close(y, want)
    assert len(traces) == 1


@pytest.mark.parametrize("kind", ["lstm_proj", "gru_reset_after"])
def test_bfloat16_compute_keeps_float32_carries(kind):
    full = make_cell(kind)
    half = make_cell(kind)
    half.dtype = jnp.bfloat16
    x = inputs()
    carry, y = run(rnnlab.RNN(half), x, seq_lengths=LENGTHS)
    want_carry, want_y = run(rnnlab.RNN(full), x, seq_lengths=LENGTHS)
    assert y.dtype == jnp.bfloat16
    assert all(c.dtype == jnp.float32 for c in jax.tree.leaves(carry))
    assert all(p.dtype == jnp.float32 for p in half.cell_params().values())
    np.testing.assert_allclose(np.asarray(y, np.float32), want_y, atol=3e-2)
    assert_tree_close(carry, jax.tree.map(np.asarray, want_carry), tol=3e-2)
    # bfloat16 compute really happens: the result is not the float32 one.
    assert not np.allclose(np.asarray(y, np.float32), want_y, atol=1e-5)


# -- argument errors ------------------------------------------------------------------------

BAD_CALLS = {
    "inputs without time axis": (dict(inputs=jnp.ones((IN,))), r"inputs must be \[\*batch, time"),
    "wrong feature size": (dict(inputs=jnp.ones((BATCH, TIME, 6))), r"inputs.*in_features=4.*6"),
    # Integer inputs are promoted as Flax promotes them (tests/test_cell_contract.py).
    "complex inputs": (
        dict(inputs=jnp.ones((BATCH, TIME, IN), jnp.complex64)),
        "complex inputs.*no bounded complex form",
    ),
    "seq_lengths shape": (dict(seq_lengths=jnp.array([1, 2])), r"seq_lengths.*\(3,\).*\(2,\)"),
    "seq_lengths dtype": (dict(seq_lengths=jnp.array([1.0, 2, 3])), "seq_lengths.*integers"),
    "negative length": (dict(seq_lengths=np.array([1, -1, 3])), r"seq_lengths.*\[0, 7\].*-1"),
    "length past time": (dict(seq_lengths=np.array([8, 1, 3])), r"seq_lengths.*\[0, 7\].*8"),
    "resets shape": (dict(resets=jnp.zeros((TIME, BATCH), bool)), r"resets.*\(3, 7\)"),
    "resets dtype": (dict(resets=jnp.zeros((BATCH, TIME))), "resets.*bool"),
    "lengths as a list of floats": (dict(seq_lengths=[1.0, 2.0, 3.0]), "seq_lengths.*float"),
    "resets as a list of floats": (dict(resets=[[0.0] * TIME] * BATCH), "resets.*float"),
    "carry structure": (dict(initial_carry=jnp.zeros((BATCH, HIDDEN))), "initial_carry"),
    "carry shape": (
        dict(initial_carry=(jnp.zeros((BATCH, HIDDEN)), jnp.zeros((BATCH, 6)))),
        r"initial_carry.*\(3, 5\).*\(3, 6\)",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_bad_arguments_raise_value_error_before_tracing(name, monkeypatch):
    kwargs, match = BAD_CALLS[name]
    kwargs = dict(kwargs)
    x = kwargs.pop("inputs", jnp.ones((BATCH, TIME, IN)))

    def no_scan(*args, **kw):
        raise AssertionError("the time loop was reached before the arguments were checked")

    monkeypatch.setattr(rnnlab.layers.rnn, "masked_scan", no_scan)
    with pytest.raises(ValueError, match=match):
        rnnlab.RNN(make_cell("lstm"))(x, **kwargs)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda c: rnnlab.RNN(c, unroll=0), "unroll"),
        (lambda c: rnnlab.RNN(nnx.Linear(IN, HIDDEN, rngs=nnx.Rngs(0))), "cell"),
        (lambda c: rnnlab.Bidirectional(rnnlab.RNN(c), rnnlab.RNN(c), merge="max"), "merge"),
        (lambda c: rnnlab.StackedRNN(IN, HIDDEN, 0, rngs=nnx.Rngs(0)), "num_layers"),
        (lambda c: rnnlab.StackedRNN(IN, HIDDEN, 2, dropout=1.0, rngs=nnx.Rngs(0)), "dropout"),
        (
            lambda c: random_module(lambda: rnnlab.StackedRNN(IN, HIDDEN, 2, rngs=nnx.Rngs(0)))(
                jnp.ones((BATCH, TIME, IN)), initial_carry=[None]
            ),
            r"initial_carry.*\(2\).*1",
        ),
    ],
)
def test_bad_layer_configuration_raises_value_error(build, match):
    with pytest.raises(ValueError, match=match):
        build(make_cell("lstm"))


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
