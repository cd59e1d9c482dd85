"""The RNN layer and its argument checks against a float64 NumPy loop of the textbook equations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
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
from rnn_reference import processing_order, random_module

import rnnlab

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
