"""The modern cells (RG-LRU, Hawk block, S6, sLSTM, mLSTM) on every path they run, against
naive per-step loops written from the papers (tests/modern_reference.py): outputs, final
carries and gradients, with padding, resets and reversal, in RNN, Bidirectional and
StackedRNN, and the path `auto` chooses."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import rnnlab
from rnnlab import cells
from rnnlab.layers import dispatch
from tests import modern_reference as ref

B, T, F, H = 3, 9, 4, 8


def build(name):
    rngs = nnx.Rngs(0)
    if name == "rglru":
        cell = cells.RGLRUCell(F, H, num_heads=2, rngs=rngs)
        return cell, ref.rglru_step
    if name == "hawk":
        cell = cells.HawkCell(F, H, num_heads=2, out_features=6, rngs=rngs)
        # Non-trivial convolution taps, so the window's order matters.
        cell.conv_kernel[...] = jax.random.normal(jax.random.key(9), cell.conv_kernel.shape)
        return cell, ref.hawk_step
    if name == "s6":
        cell = cells.S6Cell(F, H, state_size=3, dt_rank=2, rngs=rngs)
        return cell, functools.partial(ref.s6_step, state_size=3)
    if name == "slstm":
        cell = cells.SLSTMCell(F, H, num_heads=2, rngs=rngs)
        return cell, functools.partial(ref.slstm_step, num_heads=2)
    cell = cells.MLSTMCell(F, H, num_heads=2, chunk_size=4, rngs=rngs)
    return cell, functools.partial(ref.mlstm_step, num_heads=2)


PATHS = {
    "rglru": ("parallel", "scan"),
    "s6": ("parallel", "scan"),
    "mlstm": ("parallel", "scan"),
    "hawk": ("parallel", "scan"),
    "slstm": ("scan",),
}
CASES = [(name, impl) for name in sorted(PATHS) for impl in PATHS[name]]
AUTO = {
    "rglru": "parallel",
    "s6": "parallel",
    "mlstm": "parallel",
    "hawk": "parallel",
    "slstm": "scan",
}


def inputs():
    xs = jax.random.normal(jax.random.key(1), (B, T, F))
    lengths = jnp.array([T, 6, 1])
    resets = np.zeros((B, T), bool)
    resets[0, 4] = resets[1, 2] = True
    return xs, lengths, jnp.asarray(resets)


def with_resets(name, impl, resets):
    """The mLSTM's chunkwise form takes no resets (they take the scan path)."""
    return None if (name, impl) == ("mlstm", "parallel") else resets


def reference(name, params, xs, **kw):
    cell, step = build(name)
    return ref.run(lambda c, x: step(params, c, x), cell.initialize_carry((B, F)), xs, **kw)


@pytest.mark.parametrize("name,impl", CASES)
@pytest.mark.parametrize("reverse", [False, True])
def test_outputs_and_carries_equal_the_naive_loop(name, impl, reverse):
    cell, _ = build(name)
    xs, lengths, resets = inputs()
    kw = dict(seq_lengths=lengths, resets=with_resets(name, impl, resets), reverse=reverse)
    carry, ys = rnnlab.RNN(cell, implementation=impl, return_carry=True, keep_order=True)(xs, **kw)
    want_carry, want = reference(name, cell.cell_params(), xs, **kw)
    np.testing.assert_allclose(ys, want, rtol=2e-4, atol=2e-5)
    for got, exp in zip(jax.tree.leaves(carry), jax.tree.leaves(want_carry), strict=True):
        np.testing.assert_allclose(got, exp, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("name,impl", CASES)
def test_gradients_equal_the_naive_loop(name, impl):
    cell, step = build(name)
    xs, lengths, resets = inputs()
    resets = with_resets(name, impl, resets)
    weights = jax.random.normal(jax.random.key(2), (B, T, cell.output_features))
    layer = rnnlab.RNN(cell, implementation=impl)

    def ours(params, x):
        return jnp.sum(layer(x, params=params, seq_lengths=lengths, resets=resets) * weights)

    def naive(params, x):
        run = lambda c, xt: step(params, c, xt)  # noqa: E731
        ys = ref.run(run, cell.initialize_carry((B, F)), x, seq_lengths=lengths, resets=resets)
        return jnp.sum(ys[1] * weights)

    params = cell.cell_params()
    # The layer's gradient as one compiled program: op by op, the backward pass of the
    # parallel path compiles each primitive at each of the scan's level sizes. (The naive
    # loop branches in Python on the resets, so it runs op by op.)
    got = jax.jit(jax.grad(ours, argnums=(0, 1)))(params, xs)
    want = jax.grad(naive, argnums=(0, 1))(params, xs)
    for path, g in jax.tree_util.tree_leaves_with_path(got):
        w = functools.reduce(lambda t, k: t[k.key if hasattr(k, "key") else k.idx], path, want)
        scale = float(jnp.max(jnp.abs(w))) + 1e-6
        np.testing.assert_allclose(g / scale, w / scale, atol=2e-4, err_msg=str(path))


@pytest.mark.parametrize("name", sorted(PATHS))
def test_auto_chooses_the_path_and_the_header_names_it(name):
    cell, _ = build(name)
    xs, lengths, _ = inputs()
    with dispatch.recording() as record:
        rnnlab.RNN(cell)(xs, seq_lengths=lengths)
    assert record[0][:2] == (type(cell).__name__, AUTO[name])
    if AUTO[name] == "scan":
        with pytest.raises(ValueError, match="parallel"):
            rnnlab.RNN(cell, implementation="parallel")(xs)


def test_mlstm_with_resets_takes_the_scan_path_and_says_why():
    cell, _ = build("mlstm")
    xs, lengths, resets = inputs()
    with dispatch.recording() as record:
        rnnlab.RNN(cell)(xs, resets=resets)
    assert record == [("MLSTMCell", "scan", "resets")]
    with pytest.raises(ValueError, match="does not support resets"):
        rnnlab.RNN(cell, implementation="parallel")(xs, resets=resets)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_stacked_and_bidirectional(name):
    xs, lengths, _ = inputs()
    stack = rnnlab.StackedRNN(
        F, H, 2, cell=name, bidirectional=True, cell_kwargs=_kwargs(name), rngs=nnx.Rngs(0)
    )
    ys = stack(xs, seq_lengths=lengths)
    fwd = stack.layers[0].forward_rnn
    _, want = reference_layer(fwd.cell, name, xs, lengths)
    np.testing.assert_allclose(ys.shape, (B, T, 2 * stack.layers[1].forward_rnn.output_features))
    y_first = stack.layers[0](xs, seq_lengths=lengths)
    np.testing.assert_allclose(y_first[..., : fwd.output_features], want, rtol=2e-4, atol=2e-5)
    assert np.all(np.asarray(ys)[2, 1:] == 0)


def _kwargs(name):
    return {"rglru": {"num_heads": 2}, "hawk": {"num_heads": 2}, "s6": {"state_size": 3},
            "slstm": {"num_heads": 2}, "mlstm": {"num_heads": 2}}[name]  # fmt: skip


def reference_layer(cell, name, xs, lengths):
    steps = {
        "rglru": ref.rglru_step,
        "hawk": ref.hawk_step,
        "s6": functools.partial(ref.s6_step, state_size=3),
        "slstm": functools.partial(ref.slstm_step, num_heads=2),
        "mlstm": functools.partial(ref.mlstm_step, num_heads=2),
    }
    params = cell.cell_params()
    run = lambda c, x: steps[name](params, c, x)  # noqa: E731
    return ref.run(run, cell.initialize_carry((B, F)), xs, seq_lengths=lengths)


def test_in_layer_regularisers_where_the_cell_has_what_they_need():
    xs, lengths, _ = inputs()
    for name, reg in (
        ("slstm", {"zoneout_h": 0.2, "weight_drop": 0.3}),
        ("rglru", {"zoneout_h": 0.2}),
    ):
        stack = rnnlab.StackedRNN(F, H, 1, cell=name, regularization=reg, rngs=nnx.Rngs(0))
        stack.train()
        with dispatch.recording() as record:
            ys = stack(xs, seq_lengths=lengths)
        assert np.isfinite(np.asarray(ys)).all() and record[0][1] == "scan"
    for name in ("hawk", "mlstm"):
        stack = rnnlab.StackedRNN(
            F, H, 1, cell=name, regularization={"zoneout_h": 0.2}, rngs=nnx.Rngs(0)
        )
        stack.train()
        with pytest.raises(ValueError, match="not one vector per leaf"):
            stack(xs)


@pytest.mark.parametrize("name", ["hawk", "rglru", "s6"])
@pytest.mark.parametrize("reverse", [False, True])
def test_given_initial_and_reset_carries_equal_the_naive_loop(name, reverse):
    """A stateful stream: the carry comes in from the previous batch, resets restart from
    another (the Hawk block's parallel form reads both windows)."""
    cell, step = build(name)
    xs, lengths, resets = inputs()
    zeros = cell.initialize_carry((B, F))
    keys = iter(jax.random.split(jax.random.key(7), 8))
    carry0 = jax.tree.map(lambda z: jax.random.normal(next(keys), z.shape), zeros)
    restart = jax.tree.map(lambda z: jax.random.normal(next(keys), z.shape), zeros)
    kw = dict(seq_lengths=lengths, resets=resets, reverse=reverse)
    params = cell.cell_params()
    want_carry, want = ref.run(
        lambda c, x: step(params, c, x), carry0, xs, reset_carry=restart, **kw
    )
    for impl in ("parallel", "scan"):
        carry, ys = rnnlab.RNN(cell, implementation=impl, return_carry=True, keep_order=True)(
            xs, initial_carry=carry0, reset_carry=restart, **kw
        )
        np.testing.assert_allclose(ys, want, rtol=2e-4, atol=2e-5, err_msg=impl)
        for got, exp in zip(jax.tree.leaves(carry), jax.tree.leaves(want_carry), strict=True):
            np.testing.assert_allclose(got, exp, rtol=2e-4, atol=2e-5, err_msg=impl)
