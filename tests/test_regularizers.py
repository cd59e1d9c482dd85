"""Semantics of the regularisation toolkit, each against an independent reference.

References: naive float64 numpy loops of the textbook cell equations with the same masks,
closed-form expectations of Bernoulli masks, the AR/TAR formulas of Merity et al. (2017)
written directly in numpy, and a hand-run of the NT-ASGD rule on Python lists.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import rnnlab
from rnnlab import regularizers as R
from rnnlab.layers import StackedRNN, regularized_rnn

B, T, F, H = 3, 6, 4, 5


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_params(cell):
    return {k: np.asarray(v, np.float64) for k, v in cell.cell_params().items()}


def np_run(kind, p, x, carry, *, rec=None, upd=None, zone=None, rates=None, lengths=None):
    """Textbook recurrence over batch-major ``x`` with optional masks, float64.

    ``rec``/``upd``: per-sequence masks; ``zone``: per-leaf bool ``[B, T, n]`` (True keeps
    the old value); ``rates``: evaluation zoneout (expectation); ``lengths``: padding.
    """
    x = np.asarray(x, np.float64)
    leaves = [np.asarray(c, np.float64) for c in (carry if kind == "lstm" else (carry,))]
    ys = []
    for t in range(x.shape[1]):
        h = leaves[-1]
        h_in = h * rec if rec is not None else h
        if kind == "lstm":
            z = x[:, t] @ p["kernel_ih"] + h_in @ p["kernel_hh"] + p["bias"]
            i, f, g, o = np.split(z, 4, axis=-1)
            g = np.tanh(g) * (1.0 if upd is None else upd)
            c = sig(f) * leaves[0] + sig(i) * g
            new = [c, sig(o) * np.tanh(c)]
        elif kind in ("gru", "gru_orig"):
            xr, xz, xn = np.split(x[:, t] @ p["kernel_ih"] + p["bias_ih"], 3, axis=-1)
            wr, wz, wn = np.split(p["kernel_hh"], 3, axis=-1)
            br, bz, bn = np.split(p["bias_hh"], 3)
            r = sig(xr + h_in @ wr + br)
            zz = sig(xz + h_in @ wz + bz)
            if kind == "gru":
                n = np.tanh(xn + r * (h_in @ wn + bn))
            else:
                n = np.tanh(xn + (r * h_in) @ wn + bn)
            n = n * (1.0 if upd is None else upd)
            new = [(1 - zz) * n + zz * h]
        else:
            new = [np.tanh(x[:, t] @ p["kernel_ih"] + h_in @ p["kernel_hh"] + p["bias"])]
        if zone is not None:
            new = [
                n if d is None else np.where(d[:, t], o, n)
                for o, n, d in zip(leaves, new, zone, strict=True)
            ]
        if rates is not None:
            new = [r * o + (1 - r) * n for o, n, r in zip(leaves, new, rates, strict=True)]
        valid = np.ones((x.shape[0], 1), bool) if lengths is None else (t < lengths)[:, None]
        leaves = [np.where(valid, n, o) for o, n in zip(leaves, new, strict=True)]
        ys.append(np.where(valid, new[-1], 0.0))
    return np.stack(ys, axis=1), leaves


def make_rnn(kind, seed=0, **rnn_kw):
    rngs = nnx.Rngs(seed)
    cell = {
        "lstm": lambda: rnnlab.LSTMCell(F, H, rngs=rngs),
        "gru": lambda: rnnlab.GRUCell(F, H, rngs=rngs),
        "gru_orig": lambda: rnnlab.GRUCell(F, H, reset_after=False, rngs=rngs),
        "simple": lambda: rnnlab.SimpleCell(F, H, rngs=rngs),
    }[kind]()
    return rnnlab.RNN(cell, **rnn_kw)


def inputs(seed=1, shape=(B, T, F)):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def zero_carry(kind, batch=B):
    z = np.zeros((batch, H))
    return (z, z) if kind == "lstm" else z


def close(a, b, tol=2e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=tol, atol=tol)


# -- dropout on sequences -----------------------------------------------------------------
def test_variational_mask_is_constant_over_time_and_differs_across_sequences():
    x = jnp.ones((16, 20, 32))
    y = np.asarray(R.locked_dropout(x, 0.5, jax.random.key(0)))
    np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1], y.shape))
    assert set(np.unique(y)) == {0.0, 2.0}
    masks = y[:, 0]
    assert all(not np.array_equal(masks[0], masks[b]) for b in range(1, 16))
    # Standard dropout, by contrast, redraws at every step.
    z = np.asarray(R.dropout(x, 0.5, jax.random.key(0)))
    assert not np.array_equal(z[:, 0], z[:, 1])


@pytest.mark.parametrize("rate", [0.2, 0.6])
def test_masks_preserve_expectation(rate):
    """Inverted scaling: the mean of mask * x equals x within 5 standard errors."""
    x = jnp.ones((64, 16, 64))
    n_locked, n_full = 64 * 64, x.size
    sd = lambda n: 5 * np.sqrt(rate / ((1 - rate) * n))
    assert abs(float(R.locked_dropout(x, rate, jax.random.key(1)).mean()) - 1) < sd(n_locked)
    assert abs(float(R.dropout(x, rate, jax.random.key(2)).mean()) - 1) < sd(n_full)
    emb = R.embedding_dropout(jnp.ones((4096, 3)), rate, jax.random.key(3))
    assert abs(float(emb.mean()) - 1) < sd(4096)
    m = R.keep_mask(jax.random.key(4), rate, (256, 256))
    assert abs(float(m.mean()) - 1) < sd(256 * 256)
    assert set(np.unique(np.asarray(m)).round(6)) == {0.0, round(1 / (1 - rate), 6)}


def test_embedding_dropout_drops_whole_words():
    emb = jax.random.normal(jax.random.key(0), (50, 8))
    out = np.asarray(R.embedding_dropout(emb, 0.5, jax.random.key(1)))
    rows_zero = np.all(out == 0, axis=1)
    np.testing.assert_allclose(out[~rows_zero], 2 * np.asarray(emb)[~rows_zero], rtol=1e-6)
    assert 0 < rows_zero.sum() < 50
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 6, (32, 40)))
    looked = np.asarray(R.embed_with_dropout(jnp.ones((6, 2)), tokens, 0.5, jax.random.key(2)))
    tok = np.asarray(tokens)
    for b in range(32):  # within a sequence a word type is dropped everywhere or nowhere
        for v in np.unique(tok[b]):
            assert len(np.unique(looked[b][tok[b] == v])) == 1
    dropped_v0 = [looked[b][tok[b] == 0][0, 0] == 0 for b in range(32) if (tok[b] == 0).any()]
    assert 0 < sum(dropped_v0) < len(dropped_v0)  # sequences draw independently


# -- recurrent dropout ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind,variant,hoist",
    [
        ("lstm", "gal", False),
        ("lstm", "semeniuta", True),
        ("gru", "gal", True),
        ("gru", "semeniuta", False),
        ("gru_orig", "gal", False),
        ("simple", "gal", False),
    ],
)
def test_recurrent_dropout_matches_naive_loop(kind, variant, hoist):
    rnn = make_rnn(kind, hoist_input_projection=hoist)
    reg = R.Regularization(recurrent_dropout=0.4, recurrent_dropout_kind=variant)
    x, key = inputs(), jax.random.key(7)
    masks = R.sample_layer_masks(key, rnn, reg, (B,), T)
    y = regularized_rnn(rnn, x, reg, rngs=key, deterministic=False)
    mask = np.asarray(masks.recurrent if variant == "gal" else masks.update)
    assert mask.shape == (B, H) and (mask == 0).any()
    kw = {"rec": mask} if variant == "gal" else {"upd": mask}
    ref, _ = np_run(kind, np_params(rnn.cell), x, zero_carry(kind), **kw)
    close(y, ref)


def test_semeniuta_on_a_cell_without_a_candidate_raises():
    reg = R.Regularization(recurrent_dropout=0.3, recurrent_dropout_kind="semeniuta")
    with pytest.raises(ValueError, match="update_mask"):
        regularized_rnn(
            make_rnn("simple"), inputs(), reg, rngs=jax.random.key(0), deterministic=False
        )


# -- zoneout --------------------------------------------------------------------------------
def test_zoneout_matches_naive_loop_with_padding():
    rnn = make_rnn("lstm")
    reg = R.Regularization(zoneout_c=0.5, zoneout_h=0.3)
    x, key, lengths = inputs(), jax.random.key(3), jnp.array([6, 2, 4])
    masks = R.sample_layer_masks(key, rnn, reg, (B,), T)
    carry, y = regularized_rnn(
        rnn, x, reg, rngs=key, deterministic=False, seq_lengths=lengths, return_carry=True
    )
    zone = [np.asarray(m) for m in masks.zoneout]
    assert zone[0].shape == (B, T, H) and zone[0].any() and not zone[0].all()
    p = np_params(rnn.cell)
    ref, leaves = np_run("lstm", p, x, zero_carry("lstm"), zone=zone, lengths=np.asarray(lengths))
    close(y, ref)
    close(carry[0], leaves[0])
    close(carry[1], leaves[1])
    # Evaluation uses the expectation z * old + (1 - z) * new (Krueger et al. 2016).
    y_eval = regularized_rnn(rnn, x, reg, deterministic=True, seq_lengths=lengths)
    ref_eval, _ = np_run(
        "lstm", p, x, zero_carry("lstm"), rates=(0.5, 0.3), lengths=np.asarray(lengths)
    )
    close(y_eval, ref_eval)


def test_zoneout_rate_one_keeps_the_state():
    rnn = make_rnn("gru")
    reg = R.Regularization(zoneout_h=1.0)
    h0 = jax.random.normal(jax.random.key(5), (B, H))
    for det in (False, True):
        carry, y = regularized_rnn(
            rnn, inputs(), reg, rngs=jax.random.key(0), deterministic=det,
            initial_carry=h0, return_carry=True,
        )  # fmt: skip
        np.testing.assert_array_equal(np.asarray(carry), np.asarray(h0))
        np.testing.assert_array_equal(
            np.asarray(y), np.broadcast_to(np.asarray(h0)[:, None], y.shape)
        )


def test_zoneout_with_no_unit_zoned_is_the_plain_cell():
    """Rate 0 (every mask False) leaves each step exactly the cell's own step."""
    rnn = make_rnn("lstm")
    masks = R.LayerMasks(zoneout=tuple(jnp.zeros((B, T, H), bool) for _ in range(2)))
    reg = R.Regularization(zoneout_h=0.5)
    y = regularized_rnn(rnn, inputs(), reg, deterministic=False, masks=masks)
    # A different XLA program (the select is fused in) may round differently in the last bit.
    np.testing.assert_allclose(np.asarray(y), np.asarray(rnn(inputs())), rtol=1e-6, atol=1e-6)
    off = R.Regularization(zoneout_c=0.0, zoneout_h=0.0)
    y0 = regularized_rnn(rnn, inputs(), off, rngs=jax.random.key(0), deterministic=False)
    np.testing.assert_array_equal(np.asarray(y0), np.asarray(rnn(inputs())))


def test_zoneout_preserves_expectation_of_one_step():
    """Mean over many sequences of the training step equals the evaluation step."""
    rnn = make_rnn("lstm")
    reg = R.Regularization(zoneout_c=0.4, zoneout_h=0.4)
    n = 4000
    x = jnp.broadcast_to(inputs(shape=(1, 1, F)), (n, 1, F))
    h0 = jnp.broadcast_to(jax.random.normal(jax.random.key(9), (1, H)), (n, H))
    c0 = jnp.broadcast_to(jax.random.normal(jax.random.key(8), (1, H)), (n, H))
    kw = dict(initial_carry=(c0, h0), return_carry=True)
    (c_tr, h_tr), _ = regularized_rnn(
        rnn, x, reg, rngs=jax.random.key(1), deterministic=False, **kw
    )
    (c_ev, h_ev), _ = regularized_rnn(rnn, x, reg, deterministic=True, **kw)
    for tr, ev, old in ((c_tr, c_ev, c0), (h_tr, h_ev, h0)):
        spread = np.abs(np.asarray(ev[0] - old[0])) / 0.4  # |new - old|
        se = spread * np.sqrt(0.4 * 0.6 / n)
        assert np.all(np.abs(np.asarray(tr.mean(0) - ev[0])) <= 5 * se + 1e-6)


def test_zoneout_time_major_layer_sees_the_same_masks():
    reg = R.Regularization(zoneout_h=0.5)
    bm, tm = make_rnn("simple"), make_rnn("simple", time_major=True)
    key, x = jax.random.key(2), inputs()
    masks = R.sample_layer_masks(key, bm, reg, (B,), T)
    tm_masks = R.LayerMasks(zoneout=(jnp.swapaxes(masks.zoneout[0], 0, 1),))
    y_bm = regularized_rnn(bm, x, reg, deterministic=False, masks=masks)
    y_tm = regularized_rnn(tm, jnp.swapaxes(x, 0, 1), reg, deterministic=False, masks=tm_masks)
    ref, _ = np_run(
        "simple", np_params(bm.cell), x, zero_carry("simple"), zone=[np.asarray(masks.zoneout[0])]
    )
    close(y_bm, ref)
    close(jnp.swapaxes(y_tm, 0, 1), ref)


# -- weight drop ------------------------------------------------------------------------------
def test_weight_drop_zeroes_whole_recurrent_weights_for_the_batch():
    rnn = make_rnn("lstm")
    reg = R.Regularization(weight_drop=0.5)
    x, key = inputs(), jax.random.key(11)
    kernel = np.asarray(R.sample_layer_masks(key, rnn, reg, (B,), T).kernel)
    assert kernel.shape == (H, 4 * H)  # one mask for every sequence of the batch
    assert set(np.unique(kernel)) == {0.0, 2.0}
    p = np_params(rnn.cell)
    y = regularized_rnn(rnn, x, reg, rngs=key, deterministic=False)
    ref, _ = np_run("lstm", {**p, "kernel_hh": p["kernel_hh"] * kernel}, x, zero_carry("lstm"))
    close(y, ref)

    def loss(w):
        params = {**rnn.cell.cell_params(), "kernel_hh": w * kernel}
        return jnp.sum(rnn(x, params=params) ** 2)

    grad = np.asarray(jax.grad(loss)(rnn.cell.kernel_hh[...]))
    assert np.all(grad[kernel == 0] == 0) and np.all(grad[kernel != 0] != 0)


def test_prepare_layer_drives_a_custom_scan_with_all_masks_combined():
    """A model with its own scan gets the same maths: numpy loop with all three masks."""
    rnn = make_rnn("simple")
    reg = R.Regularization(zoneout_h=0.3, recurrent_dropout=0.3, weight_drop=0.4)
    x, key = inputs(), jax.random.key(21)
    plan = R.prepare_layer(rnn, reg, batch_shape=(B,), num_steps=T, rngs=key, deterministic=False)
    cell = rnn.cell
    step = plan.step_transform(
        lambda c, xt: cell.step_with(plan.params, c, cell.project(plan.params, xt))
    )
    xs = (jnp.swapaxes(x, 0, 1), jax.tree.map(lambda m: jnp.swapaxes(m, 0, 1), plan.step_inputs))
    _, ys = rnnlab.scan.masked_scan(step, jnp.zeros((B, H)), xs)
    m = R.sample_layer_masks(key, rnn, reg, (B,), T)
    p = np_params(cell)
    p["kernel_hh"] = p["kernel_hh"] * np.asarray(m.kernel)
    ref, _ = np_run(
        "simple",
        p,
        x,
        zero_carry("simple"),
        rec=np.asarray(m.recurrent),
        zone=[np.asarray(m.zoneout[0])],
    )
    close(jnp.swapaxes(ys, 0, 1), ref)


# -- whole stacks -------------------------------------------------------------------------------
def test_regularization_off_is_bit_identical_to_the_plain_stack():
    # Bidirectional and residual with input width 2H, so the residual acts over padding.
    kw = dict(num_layers=1, cell="lstm", bidirectional=True, residual=True)
    x, lengths = inputs(shape=(B, T, 2 * H)), jnp.array([6, 3, 1])
    plain = rnnlab.StackedRNN(2 * H, H, rngs=nnx.Rngs(0), **kw)
    reg_stack = StackedRNN(2 * H, H, rngs=nnx.Rngs(0), regularization=None, **kw)
    want = np.asarray(plain(x, seq_lengths=lengths))
    got = reg_stack(x, seq_lengths=lengths, rngs=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(got), want)


def test_dropout_only_regularization_is_the_plain_stack_at_evaluation():
    x = inputs()
    reg = R.Regularization.awd_lstm(recurrent_dropout=0.3)
    plain = rnnlab.StackedRNN(F, H, 1, rngs=nnx.Rngs(0))
    stack = StackedRNN(F, H, 1, rngs=nnx.Rngs(0), regularization=reg)
    stack.eval()
    a = stack(x, rngs=jax.random.key(0))
    b = stack(x, rngs=jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(plain(x)))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    stack.train()
    graphdef, state = nnx.split(stack)
    train = jax.jit(lambda s, k: nnx.merge(graphdef, s)(x, rngs=k))
    t1, t2, t3 = (np.asarray(train(state, jax.random.key(k))) for k in (0, 0, 1))
    np.testing.assert_array_equal(t1, t2)  # same key, same masks
    assert not np.array_equal(t1, t3)


def test_two_layer_stack_draws_hidden_dropout_between_layers():
    """Locked hidden dropout equals running the two layers by hand with that mask, drawn as
    nnx.Dropout draws it: the first key of the stream the call's key seeds."""
    x, key = inputs(), jax.random.key(3)
    reg = R.Regularization(hidden_dropout=0.5, variational=True)
    stack = StackedRNN(F, H, 2, regularization=reg, rngs=nnx.Rngs(0))
    y = stack(x, rngs=key)
    mid = R.locked_dropout(stack.layers[0](x), 0.5, jax.random.fold_in(key, 0))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(stack.layers[1](mid)))


def test_stack_applies_locked_input_dropout_before_the_first_layer():
    """Input dropout of the stack equals running the plain stack on locked-dropped input."""
    x = inputs()
    reg = R.Regularization(input_dropout=0.5, variational=True, ar=1.0, tar=0.5)
    stack = StackedRNN(F, H, 1, regularization=reg, rngs=nnx.Rngs(0))
    plain = rnnlab.StackedRNN(F, H, 1, rngs=nnx.Rngs(0))
    key = jax.random.key(4)
    y, aux = stack(x, rngs=key, return_aux=True)
    k_in = nnx.Rngs(dropout=key).dropout()  # the first key of the stream
    dropped = np.asarray(R.locked_dropout(x, 0.5, k_in))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(plain(jnp.asarray(dropped))))
    yn = np.asarray(y, np.float64)
    close(aux["ar"], 1.0 * np.mean(yn**2))
    close(aux["tar"], 0.5 * np.mean((yn[:, 1:] - yn[:, :-1]) ** 2))


# -- loss terms ----------------------------------------------------------------------------------
def test_ar_tar_match_numpy_with_lengths():
    h = np.random.default_rng(0).normal(size=(4, 7, 3))
    lengths = np.array([7, 1, 0, 4])
    ar_num = sum((h[b, : lengths[b]] ** 2).sum() for b in range(4))
    ar_ref = ar_num / (lengths.sum() * 3)
    tar_num = sum(
        ((h[b, 1 : lengths[b]] - h[b, : max(lengths[b] - 1, 0)]) ** 2).sum() for b in range(4)
    )
    tar_ref = tar_num / (np.maximum(lengths - 1, 0).sum() * 3)
    hj, lj = jnp.asarray(h, jnp.float32), jnp.asarray(lengths)
    close(R.activation_regularization(hj, lj), ar_ref, 1e-5)
    close(R.temporal_activation_regularization(hj, lj), tar_ref, 1e-5)
    close(R.activation_regularization(hj), np.mean(h**2), 1e-5)
    close(R.temporal_activation_regularization(hj), np.mean((h[:, 1:] - h[:, :-1]) ** 2), 1e-5)
    tm = jnp.swapaxes(hj, 0, 1)
    close(R.temporal_activation_regularization(tm, lj, time_axis=0), tar_ref, 1e-5)


def test_l2_penalty_respects_the_mask():
    params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
    close(R.l2_penalty(params), 0.5 * (np.arange(6.0) ** 2).sum() + 1.5)
    mask = lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)
    close(R.l2_penalty(params, mask), 0.5 * (np.arange(6.0) ** 2).sum())


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key,value",
    [
        ("input_dropout", 1.0),
        ("weight_drop", -0.1),
        ("recurrent_dropout", "0.1"),
        ("zoneout_c", 1.5),
        ("ar", -1.0),
        ("recurrent_dropout_kind", "moon"),
    ],
)
def test_bad_config_values_name_their_key(key, value):
    with pytest.raises(ValueError, match=key):
        R.Regularization(**{key: value})


def test_config_round_trip_and_unknown_keys():
    reg = R.Regularization.awd_lstm()
    assert R.Regularization.from_config(reg.to_dict()) == reg
    assert R.Regularization.from_config(None) == R.Regularization()
    with pytest.raises(ValueError, match="zonout_h"):
        R.Regularization.from_config({"zonout_h": 0.1})
    # Training without call-time rngs draws from the stream forked at construction.
    stack = StackedRNN(F, H, regularization=reg, rngs=nnx.Rngs(0))
    trained = stack(inputs())
    stack.eval()
    assert not np.allclose(trained, stack(inputs()))
