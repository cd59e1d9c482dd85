"""The fused whole-sequence LSTM/GRU against the plain scan path, a float64 NumPy loop and
PyTorch: values and gradients, with padding, reversal, initial carries and recomputation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rnn_reference as ref
from flax import nnx

import rnnlab
import rnnlab.fused
import rnnlab.layers.fused_path
from rnnlab.fused import FusedOptions

B, T, F, H = 3, 7, 5, 4
LENGTHS = np.array([7, 4, 0], np.int32)


def make_cell(kind: str, **kwargs):
    build = rnnlab.LSTMCell if kind == "lstm" else rnnlab.GRUCell
    return ref.random_module(lambda: build(F, H, rngs=nnx.Rngs(0), **kwargs), seed=1)


def inputs(batch=(B,), seed=2):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=batch + (T, F)), jnp.float32)


def random_carry(cell, batch=(B,), seed=3):
    rng = np.random.default_rng(seed)
    carry = cell.initialize_carry(batch + (F,))
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), jnp.float32), carry)


def run(cell, implementation, x, carry, **kwargs):
    """``(final carry, outputs)`` and the gradients of a scalar loss w.r.t. params, x, carry."""
    layer = rnnlab.RNN(cell, implementation=implementation, return_carry=True)
    graphdef, params = nnx.split(layer)

    def loss(params, x, carry):
        c, y = nnx.merge(graphdef, params)(x, initial_carry=carry, **kwargs)
        weights = jnp.cos(jnp.arange(y.size, dtype=jnp.float32)).reshape(y.shape)
        tail = sum(jnp.sum(jnp.sin(leaf) * (k + 1)) for k, leaf in enumerate(jax.tree.leaves(c)))
        return jnp.sum(y * weights) + tail, (c, y)

    (_, out), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, x, carry)
    return out, grads


def assert_trees_close(a, b, tol=2e-5):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb, strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "padded"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_fused_matches_scan_values_and_gradients(kind, lengths, reverse):
    cell = make_cell(kind)
    x, carry = inputs(), random_carry(cell)
    kw = dict(seq_lengths=None if lengths is None else jnp.asarray(lengths), reverse=reverse)
    fused_out, fused_grads = run(cell, "fused", x, carry, **kw)
    scan_out, scan_grads = run(cell, "scan", x, carry, **kw)
    assert_trees_close(fused_out, scan_out)
    assert_trees_close(fused_grads, scan_grads)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_fused_outputs_match_numpy_float64_loop(kind, reverse):
    cell = make_cell(kind)
    x, carry = inputs(), random_carry(cell)
    layer = rnnlab.RNN(cell, implementation="fused", return_carry=True, keep_order=True)
    got_carry, got = layer(x, initial_carry=carry, seq_lengths=LENGTHS, reverse=reverse)
    carries0 = ref.split_carry(jax.tree.map(np.asarray, carry), B)
    want_carry, want = ref.run_batch(
        ref.step_fn(cell), carries0, np.asarray(x, np.float64), LENGTHS, reverse=reverse
    )
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    assert_trees_close(got_carry, want_carry, tol=1e-5)


@pytest.mark.parametrize("chunk", [None, 3])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recompute_matches_saved_gates(kind, chunk):
    """Recomputing the gates span by span (rematerialisation) changes no value or gradient."""
    cell = make_cell(kind)
    params = cell.cell_params()
    xs = jnp.moveaxis(inputs(), 1, 0)
    carry = random_carry(cell)
    mask = jnp.asarray(np.arange(T)[:, None] < LENGTHS[None])
    options = FusedOptions
    seq = rnnlab.fused.lstm_sequence if kind == "lstm" else rnnlab.fused.gru_sequence

    def value_and_grads(opts):
        def f(params, xs, carry):
            c, ys = seq(params, xs, carry, mask, options=opts)
            return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(c))

        return jax.value_and_grad(f, argnums=(0, 1, 2))(params, xs, carry)

    assert_trees_close(
        value_and_grads(options(recompute=True, chunk=chunk)), value_and_grads(options())
    )


@pytest.mark.parametrize(
    "options",
    [dict(hoist=True), dict(hoist=True, prefetch=False, one_tanh=False)],
    ids=["hoist", "all-off"],
)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_every_option_matches_scan(kind, options):
    cell = make_cell(kind)
    params = cell.cell_params()
    xs = jnp.moveaxis(inputs(), 1, 0)
    carry = random_carry(cell)
    mask = jnp.asarray(np.arange(T)[:, None] < LENGTHS[None])
    opts = FusedOptions(**options)
    seq = rnnlab.fused.lstm_sequence if kind == "lstm" else rnnlab.fused.gru_sequence

    def fused(params, xs, carry):
        c, ys = seq(params, xs, carry, mask, options=opts)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(c))

    def scan(params, xs, carry):
        step = lambda c, x: cell.step_with(params, c, cell.project(params, x))
        c, ys = rnnlab.scan.masked_scan(step, carry, xs, seq_lengths=jnp.asarray(LENGTHS))
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(c))

    grad = lambda f: jax.value_and_grad(f, argnums=(0, 1, 2))(params, xs, carry)
    assert_trees_close(grad(fused), grad(scan))


def test_several_batch_axes_and_time_major():
    cell = make_cell("lstm")
    x = inputs(batch=(2, 3))
    lengths = jnp.asarray([[7, 1, 3], [0, 7, 5]], jnp.int32)
    for time_major in (False, True):
        xin = jnp.moveaxis(x, 2, 0) if time_major else x
        outs = [
            rnnlab.RNN(cell, implementation=impl, time_major=time_major, return_carry=True)(
                xin, seq_lengths=lengths
            )
            for impl in ("fused", "scan")
        ]
        assert_trees_close(outs[0], outs[1])


def test_remat_layer_recomputes_and_matches_scan():
    cell = make_cell("lstm")
    x, carry = inputs(), random_carry(cell)
    layer = rnnlab.RNN(cell, implementation="fused", remat="full")
    graphdef, params = nnx.split(layer)
    scan_layer = rnnlab.RNN(cell, implementation="scan")
    sgraph, sparams = nnx.split(scan_layer)
    f = lambda g: lambda p: jnp.sum(jnp.sin(nnx.merge(g, p)(x, initial_carry=carry)))
    assert_trees_close(jax.grad(f(graphdef))(params), jax.grad(f(sgraph))(sparams))
    opts = rnnlab.layers.fused_path.default_options(cell, "full")
    assert opts.recompute and opts.chunk == rnnlab.layers.fused_path.REMAT_CHUNK


def test_bfloat16_compute_keeps_float32_carries_and_tracks_scan():
    cell = make_cell("lstm", dtype=jnp.bfloat16)
    x = inputs()
    (c, h), y = rnnlab.RNN(cell, implementation="fused", return_carry=True)(x)
    assert y.dtype == jnp.bfloat16 and c.dtype == jnp.float32 and h.dtype == jnp.float32
    y_scan = rnnlab.RNN(cell, implementation="scan")(x)
    np.testing.assert_allclose(
        np.asarray(y, np.float32), np.asarray(y_scan, np.float32), rtol=0.05, atol=0.02
    )


def test_lstm_gradients_match_pytorch():
    torch = pytest.importorskip("torch")
    cell = make_cell("lstm")
    p = {k: np.asarray(v) for k, v in cell.cell_params().items()}
    x = inputs()
    t_lstm = torch.nn.LSTM(F, H, batch_first=True)
    with torch.no_grad():
        t_lstm.weight_ih_l0.copy_(torch.tensor(p["kernel_ih"].T))
        t_lstm.weight_hh_l0.copy_(torch.tensor(p["kernel_hh"].T))
        t_lstm.bias_ih_l0.copy_(torch.tensor(p["bias"]))
        t_lstm.bias_hh_l0.zero_()
    tx = torch.tensor(np.asarray(x), requires_grad=True)
    ty, _ = t_lstm(tx)
    (ty.sin().sum()).backward()

    layer = rnnlab.RNN(cell, implementation="fused")
    graphdef, params = nnx.split(layer)
    loss = lambda params, x: jnp.sum(jnp.sin(nnx.merge(graphdef, params)(x)))
    g_params, g_x = jax.grad(loss, argnums=(0, 1))(params, x)
    np.testing.assert_allclose(np.asarray(ty.detach()), np.asarray(layer(x)), atol=1e-5)
    np.testing.assert_allclose(np.asarray(g_x), tx.grad.numpy(), atol=1e-5)
    g = g_params["cell"]
    np.testing.assert_allclose(
        np.asarray(g["kernel_hh"][...]), t_lstm.weight_hh_l0.grad.numpy().T, atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(g["kernel_ih"][...]), t_lstm.weight_ih_l0.grad.numpy().T, atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(g["bias"][...]), t_lstm.bias_ih_l0.grad.numpy(), atol=1e-5
    )


@pytest.mark.parametrize(
    "build, call, reason",
    [
        (lambda: make_cell("gru", reset_after=False), {}, "reset_after=False"),
        (lambda: make_cell("lstm"), {"step_transform": lambda step: step}, "step_transform"),
        (lambda: make_cell("lstm"), {"params": "scale"}, "scale"),
        (lambda: rnnlab.SimpleCell(F, H, rngs=nnx.Rngs(0)), {}, "SimpleCell"),
    ],
    ids=["gru-reset-before", "zoneout-hook", "unknown-param", "elman"],
)
def test_unsupported_configurations_fall_back_or_refuse(build, call, reason):
    cell = build()
    x = inputs()
    kwargs = {k: v for k, v in call.items() if k != "params"}
    if "params" in call:
        kwargs["params"] = {**cell.cell_params(), "scale": jnp.ones(())}
        # The cell ignores unknown entries, so scan runs it; fused cannot know that.
    auto = rnnlab.RNN(cell)(x, **kwargs)
    scan = rnnlab.RNN(cell, implementation="scan")(x, **kwargs)
    np.testing.assert_array_equal(np.asarray(auto), np.asarray(scan))
    with pytest.raises(ValueError, match=reason):
        rnnlab.RNN(cell, implementation="fused")(x, **kwargs)


@pytest.mark.parametrize(
    "build, call",
    [
        (lambda: make_cell("lstm", proj_features=3), {}),
        (lambda: make_cell("lstm"), {"resets": True}),
        (lambda: make_cell("gru"), {"resets": True, "recurrent_mask": True}),
    ],
    ids=["lstm-proj", "lstm-resets", "gru-resets-recurrent-mask"],
)
def test_training_features_take_the_fused_path_and_match_scan(build, call):
    """Resets, masks and the projection run fused under ``auto`` and agree with the scan."""
    cell = build()
    x, carry = inputs(), random_carry(cell)
    kwargs = dict(seq_lengths=jnp.asarray(LENGTHS))
    if "resets" in call:
        kwargs["resets"] = jnp.zeros((B, T), bool).at[:, 3].set(True).at[0, 0].set(True)
    if "recurrent_mask" in call:
        mask = jnp.asarray(np.random.default_rng(0).random((B, H)) > 0.5, jnp.float32)
        kwargs["params"] = {**cell.cell_params(), "recurrent_mask": mask}
    layer = rnnlab.RNN(cell)
    traced = jax.make_jaxpr(lambda x: layer(x, initial_carry=carry, **kwargs))(x)
    assert "custom_vjp_call" in str(traced)
    fused_out, fused_grads = run(cell, "auto", x, carry, **kwargs)
    scan_out, scan_grads = run(cell, "scan", x, carry, **kwargs)
    assert_trees_close(fused_out, scan_out)
    assert_trees_close(fused_grads, scan_grads)


def test_bad_implementation_name_is_refused():
    with pytest.raises(ValueError, match="implementation must be one of"):
        rnnlab.RNN(make_cell("gru"), implementation="cudnn")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_auto_takes_the_fused_path_and_scan_does_not(kind):
    cell = make_cell(kind)
    x = inputs()

    def traced(implementation):
        layer = rnnlab.RNN(cell, implementation=implementation)
        return str(jax.make_jaxpr(lambda x: layer(x, seq_lengths=LENGTHS))(x))

    assert "custom_vjp_call" in traced("auto")
    assert "custom_vjp_call" not in traced("scan")


@pytest.mark.parametrize(
    "kind, reg",
    [
        ("lstm", dict(weight_drop=0.5, ar=2.0, tar=1.0)),
        ("gru", dict(input_dropout=0.3, hidden_dropout=0.2, output_dropout=0.3, variational=True)),
        ("lstm", dict(recurrent_dropout=0.25, zoneout_c=0.5, zoneout_h=0.05)),
    ],
    ids=["lstm-weight-drop-ar-tar", "gru-variational-dropout", "lstm-in-loop-falls-back"],
)
def test_regularised_stack_matches_scan(kind, reg):
    """Regularisers acting outside the loop run on the fused path, in-loop ones fall back:
    either way values and gradients match the scan path under the same random masks."""
    from rnnlab.layers import StackedRNN
    from rnnlab.regularizers import Regularization

    x = inputs()

    def value_and_grads(implementation):
        stack = StackedRNN(
            F,
            H,
            2,
            cell=kind,
            regularization=Regularization(**reg),
            rnn_kwargs=dict(implementation=implementation),
            rngs=nnx.Rngs(0),
        )
        # The stack keeps a dropout stream of its own (integer RNG state): not a parameter.
        graphdef, params, rest = nnx.split(stack, nnx.Param, ...)

        def loss(params, x):
            y, aux = nnx.merge(graphdef, params, rest)(
                x, seq_lengths=LENGTHS, rngs=jax.random.key(3), return_aux=True
            )
            extra = sum(v for k, v in aux.items() if k in ("ar", "tar"))
            return jnp.sum(jnp.sin(y)) + extra

        return jax.value_and_grad(loss, argnums=(0, 1))(params, x)

    assert_trees_close(value_and_grads("auto"), value_and_grads("scan"))
