"""The fused kernels' training features against naive per-step references.

Resets with a reset carry (stateful truncated BPTT), padding, reversal, the regulariser masks
(Gal recurrent dropout, Semeniuta update dropout, weight drop) and the projection LSTM, alone
and together, on ``rnnlab.layers.fused_path.run_fused``. Values are checked against the
float64 NumPy loop of ``rnn_reference``; gradients (weights, inputs, initial carry, reset
carry) against ``jax.grad`` of a plain per-row, per-step ``jnp`` loop written here, which
shares no code with the library.
"""

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

B, T, F, H, P = 3, 7, 5, 4, 3
LENGTHS = np.array([7, 4, 0], np.int32)
# Row 0 restarts at step 0 (a new document at the batch boundary) and at 3; row 1 at 2 and
# on a padded step (5), which must have no effect; row 2 is all padding.
RESETS = np.zeros((B, T), bool)
RESETS[0, [0, 3]] = True
RESETS[1, [2, 5]] = True
RESETS[2, 1] = True


def make_cell(kind, proj=None):
    if kind == "gru":
        build = lambda: rnnlab.GRUCell(F, H, rngs=nnx.Rngs(0))
    else:
        build = lambda: rnnlab.LSTMCell(F, H, proj_features=proj, rngs=nnx.Rngs(0))
    return ref.random_module(build, seed=1)


def random_tree(tree, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), jnp.float32), tree)


def features(cell, rec=False, upd=False, weight_drop=False, seed=5):
    """Regulariser entries to add to the cell's parameters (inverted-dropout masks)."""
    rng = np.random.default_rng(seed)
    out = {}
    if rec:
        keep = rng.random((B, cell.output_features)) > 0.4
        out["recurrent_mask"] = jnp.asarray(keep / 0.6, jnp.float32)
    if upd:
        keep = rng.random((B, H)) > 0.4
        out["update_mask"] = jnp.asarray(keep / 0.6, jnp.float32)
    if weight_drop:
        w = cell.kernel_hh[...]
        out["kernel_hh"] = w * jnp.asarray(rng.random(w.shape) > 0.5, jnp.float32) * 2.0
    return out


# -- the jnp reference: one row and one step at a time -----------------------------------------
def sig(x):
    return 1.0 / (1.0 + jnp.exp(-x))


def lstm_ref(p, carry, x, rm, um):
    c, h = carry
    z = x @ p["kernel_ih"] + (h if rm is None else h * rm) @ p["kernel_hh"] + p["bias"]
    i, f, g, o = (z[..., k * H : (k + 1) * H] for k in range(4))
    g = jnp.tanh(g) if um is None else jnp.tanh(g) * um
    c = sig(f) * c + sig(i) * g
    h = sig(o) * jnp.tanh(c)
    if "kernel_proj" in p:
        h = h @ p["kernel_proj"]
    return (c, h), h


def gru_ref(p, h, x, rm, um):
    a = x @ p["kernel_ih"] + p["bias_ih"]
    u = (h if rm is None else h * rm) @ p["kernel_hh"] + p["bias_hh"]
    r = sig(a[..., :H] + u[..., :H])
    z = sig(a[..., H : 2 * H] + u[..., H : 2 * H])
    n = jnp.tanh(a[..., 2 * H :] + r * u[..., 2 * H :])
    if um is not None:
        n = n * um
    h = (1.0 - z) * n + z * h
    return h, h


def schedule(lengths, resets, reverse, batch, num_steps):
    """Per row, in processing order ``k``: the time step ``t`` it reads, whether it is valid,
    and whether the state restarts before it (a new segment begins; going forwards a flag on
    step 0 counts, going backwards the first step processed is a segment's end)."""
    index = np.tile(np.arange(num_steps), (batch, 1))
    valid = np.zeros((batch, num_steps), bool)
    restart = np.zeros((batch, num_steps), bool)
    for b in range(batch):
        length = num_steps if lengths is None else int(lengths[b])
        order = list(range(length - 1, -1, -1) if reverse else range(length))
        seg = np.cumsum(resets[b]) if resets is not None else np.zeros(num_steps)
        for k, t in enumerate(order):
            index[b, k], valid[b, k] = t, True
            if resets is not None:
                restart[b, k] = seg[t] != seg[order[k - 1]] if k else not reverse and seg[t] > 0
    return index, valid, restart


def reference(kind, params, xs, carry0, reset_carry, lengths, resets, reverse):
    """Batch-major ``(final carry, ys)`` by a Python loop over processing steps: each row
    reads its own time step, restarts from its reset carry where a new segment begins and
    keeps its state on padding."""
    step = gru_ref if kind == "gru" else lstm_ref
    batch, num_steps = xs.shape[:2]
    index, valid, restart = schedule(lengths, resets, reverse, batch, num_steps)
    rows = np.arange(batch)
    rm, um = params.get("recurrent_mask"), params.get("update_mask")
    where = lambda m, a, b: jax.tree.map(lambda u, v: jnp.where(m[:, None], u, v), a, b)
    carry, outs = carry0, []
    for k in range(num_steps):
        seen = where(restart[:, k], reset_carry, carry)
        new, y = step(params, seen, xs[rows, index[:, k]], rm, um)
        carry = where(valid[:, k], new, carry)
        outs.append(jnp.where(valid[:, k, None], y, 0.0))
    # Back from processing order to time order (padding stays in place).
    inverse = np.argsort(index, axis=1)
    ys = jnp.stack(outs, axis=1)
    return carry, ys[rows[:, None], inverse]


def fused(cell, params, xs, carry0, reset_carry, lengths, resets, reverse, options=None):
    carry, ys = rnnlab.layers.fused_path.run_fused(
        cell,
        params,
        jnp.swapaxes(xs, 0, 1),
        carry0,
        seq_lengths=None if lengths is None else jnp.asarray(lengths),
        resets=None if resets is None else jnp.asarray(resets.T),
        reset_carry=reset_carry,
        reverse=reverse,
        options=options,
    )
    return carry, jnp.swapaxes(ys, 0, 1)


def loss_and_grads(run, weights, consts, xs, carry0, reset_carry):
    """A scalar loss touching every output and carry leaf, and its gradients w.r.t. the
    differentiable parameters, the inputs and both carries."""

    def loss(weights, xs, carry0, reset_carry):
        carry, ys = run({**weights, **consts}, xs, carry0, reset_carry)
        w = jnp.cos(jnp.arange(ys.size, dtype=jnp.float32)).reshape(ys.shape)
        tail = sum(jnp.sum(jnp.sin(c) * (k + 1)) for k, c in enumerate(jax.tree.leaves(carry)))
        return jnp.sum(ys * w) + tail, (carry, ys)

    # One compiled program per side: op-by-op execution would compile every primitive.
    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))
    (_, out), grads = grad(weights, xs, carry0, reset_carry)
    return out, grads


def assert_close(a, b, tol=2e-5):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb, strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


def check(kind, *, proj=None, lengths=LENGTHS, resets=RESETS, reverse=False, rec=False,
          upd=False, weight_drop=False, options=None, num_steps=T):  # fmt: skip
    cell = make_cell(kind, proj)
    lengths = None if lengths is None else np.minimum(lengths, num_steps)
    resets = None if resets is None else resets[:, :num_steps]
    rng = np.random.default_rng(2)
    xs = jnp.asarray(rng.normal(size=(B, num_steps, F)), jnp.float32)
    carry0 = random_tree(cell.initialize_carry((B, F)), 3)
    reset_carry = random_tree(carry0, 4)
    masks = features(cell, rec, upd, weight_drop)
    weights = {**cell.cell_params(), **{k: v for k, v in masks.items() if k == "kernel_hh"}}
    consts = {k: v for k, v in masks.items() if k != "kernel_hh"}

    args = (lengths, resets, reverse)
    got = loss_and_grads(
        lambda p, x, c, r: fused(cell, p, x, c, r, *args, options=options),
        weights, consts, xs, carry0, reset_carry,
    )  # fmt: skip
    want = loss_and_grads(
        lambda p, x, c, r: reference(kind, p, x, c, r, *args),
        weights, consts, xs, carry0, reset_carry,
    )  # fmt: skip
    assert_close(got, want)

    # Values against the float64 NumPy loop (independent of the jnp one above).
    p64 = {k: np.asarray(v, np.float64) for k, v in {**weights, **consts}.items()}
    rows = [
        (
            lambda c, x, b=b: (ref.gru_step if kind == "gru" else ref.lstm_step)(
                p64,
                c,
                x,
                rec_mask=p64["recurrent_mask"][b] if rec else None,
                upd_mask=p64["update_mask"][b] if upd else None,
            )
        )
        for b in range(B)
    ]
    want_carry, want_ys = ref.run_batch(
        rows, ref.split_carry(carry0, B), np.asarray(xs), lengths, reverse, resets,
        ref.split_carry(reset_carry, B),
    )  # fmt: skip
    got_carry, got_ys = got[0]
    np.testing.assert_allclose(np.asarray(got_ys), want_ys, rtol=1e-5, atol=1e-5)
    assert_close(got_carry, want_carry, tol=1e-5)
    return got


KINDS = ["lstm", "gru"]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("kind", KINDS)
def test_resets_with_padding(kind, reverse):
    check(kind, reverse=reverse)


@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_and_update_masks(kind):
    check(kind, resets=None, rec=True, upd=True)


def test_weight_drop_with_recurrent_mask_and_resets_lstm():
    check("lstm", lengths=None, weight_drop=True, rec=True)


def test_weight_drop_with_update_mask_and_resets_gru():
    check("gru", lengths=None, weight_drop=True, upd=True)


def test_projection_lstm():
    check("lstm", proj=P, resets=None)


def test_projection_with_resets_masks_weight_drop_and_reverse():
    check("lstm", proj=P, reverse=True, rec=True, upd=True, weight_drop=True)


@pytest.mark.parametrize("kind", KINDS)
def test_recompute_in_spans_with_every_feature(kind):
    """The rematerialising backward (spans of 3 over 7 steps) with resets, masks, reverse."""
    options = FusedOptions(recompute=True, chunk=3)
    check(kind, proj=P if kind == "lstm" else None, reverse=True, rec=True, upd=True,
          options=options)  # fmt: skip


def test_hoisted_unprefetched_loops_with_features():
    options = FusedOptions(hoist=True, prefetch=False, one_tanh=False)
    check("lstm", proj=P, rec=True, upd=True, options=options)


@pytest.mark.parametrize("num_steps", [1, 4, 7])
@pytest.mark.parametrize("kind", KINDS)
def test_sequence_length_sweep(kind, num_steps):
    """Every feature at once; the LSTM (with projection) forwards, the GRU reversed."""
    lstm = kind == "lstm"
    check(kind, proj=P if lstm else None, reverse=not lstm, rec=True, upd=True,
          weight_drop=lstm, num_steps=num_steps)  # fmt: skip


def test_reset_carry_defaults_to_initial_carry():
    """Without ``reset_carry`` the state restarts from the initial carry, as masked_scan."""
    cell = make_cell("lstm")
    xs = jnp.asarray(np.random.default_rng(2).normal(size=(T, B, F)), jnp.float32)
    carry0 = random_tree(cell.initialize_carry((B, F)), 3)
    resets = jnp.asarray(RESETS.T)
    a = rnnlab.layers.fused_path.run_fused(cell, cell.cell_params(), xs, carry0, resets=resets)
    b = rnnlab.layers.fused_path.run_fused(
        cell, cell.cell_params(), xs, carry0, resets=resets, reset_carry=carry0
    )
    assert_close(a, b, tol=0)


def test_several_batch_axes_and_broadcast_reset_carry():
    """``[T, 2, 3]`` batches with masks ``[2, 3, P]`` and an unbatched zero reset carry."""
    cell = make_cell("lstm", proj=P)
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(T, 2, 3, F)), jnp.float32)
    carry0 = random_tree(cell.initialize_carry((2, 3, F)), 3)
    resets = jnp.asarray(rng.random((T, 2, 3)) < 0.3)
    params = {**cell.cell_params(), "recurrent_mask": jnp.asarray(rng.random((2, 3, P)) > 0.5)}
    zeros = (jnp.zeros(H), jnp.zeros(P))
    run = rnnlab.layers.fused_path.run_fused
    carry, ys = run(cell, params, xs, carry0, resets=resets, reset_carry=zeros)
    flat = lambda a: a.reshape((6,) + a.shape[2:])
    want_carry, want_ys = rnnlab.layers.fused_path.run_fused(
        cell,
        {**params, "recurrent_mask": flat(params["recurrent_mask"])},
        xs.reshape(T, 6, F),
        jax.tree.map(flat, carry0),
        resets=resets.reshape(T, 6),
        reset_carry=(jnp.zeros((6, H)), jnp.zeros((6, P))),
    )
    assert ys.shape == (T, 2, 3, P)
    assert_close((jax.tree.map(flat, carry), ys.reshape(T, 6, P)), (want_carry, want_ys), tol=0)


@pytest.mark.parametrize(
    "build, kwargs, reason",
    [
        (lambda: rnnlab.GRUCell(F, H, reset_after=False, rngs=nnx.Rngs(0)), {}, "reset_after"),
        (lambda: rnnlab.SimpleCell(F, H, rngs=nnx.Rngs(0)), {}, "SimpleCell"),
        (lambda: make_cell("lstm"), {"step_transform": lambda s: s}, "zoneout"),
        (lambda: make_cell("lstm"), {"step_inputs": jnp.zeros(3)}, "zoneout"),
        (lambda: make_cell("gru"), {"params": {"scale": 1.0}}, "scale"),
    ],
    ids=["gru-reset-before", "elman", "step-transform", "step-inputs", "unknown-param"],
)
def test_unsupported_reason_names_what_is_missing(build, kwargs, reason):
    cell = build()
    params = {**cell.cell_params(), **kwargs.pop("params", {})}
    assert reason in rnnlab.layers.fused_path.unsupported_reason(cell, params, **kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_unsupported_reason_accepts_training_features(kind):
    cell = make_cell(kind, proj=P if kind == "lstm" else None)
    params = {**cell.cell_params(), **features(cell, rec=True, upd=True, weight_drop=True)}
    resets = jnp.asarray(RESETS.T)
    assert rnnlab.layers.fused_path.unsupported_reason(cell, params, resets=resets) is None
