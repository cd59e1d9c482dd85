"""The time loops against NumPy loops: masked_scan (lengths, resets, reversal, remat, unroll)
and linear_scan (sequential and associative, values and gradients)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rnn_reference import run_sequence

from rnnlab.scan import linear_scan, masked_scan, valid_mask

TIME, BATCH = 7, 3
LENGTHS = np.array([7, 4, 0])


def leaky_step(carry, x):
    """A step with a two-leaf carry of different widths, and an output of another width."""
    a, b = carry
    a = 0.5 * a + x[..., :2]
    b = 0.9 * b + x[..., 2:].sum(-1, keepdims=True) * a[..., :1]
    return (a, b), (a * b).sum(-1, keepdims=True) + x


def numpy_leaky_step(carry, x):
    a, b = carry
    a = 0.5 * a + x[:2]
    b = 0.9 * b + x[2:].sum() * a[:1]
    return (a, b), (a * b).sum() + x


def data(seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(TIME, BATCH, 4)).astype(np.float32)
    init = (
        rng.normal(size=(BATCH, 2)).astype(np.float32),
        rng.normal(size=(BATCH, 1)).astype(np.float32),
    )
    return xs, init


def numpy_scan(xs, init, lengths, reverse, resets, reset_carry):
    carries, ys = [], []
    for b in range(BATCH):
        row = lambda tree, b=b: tuple(np.asarray(t, np.float64)[b] for t in tree)
        carry, y = run_sequence(
            numpy_leaky_step,
            row(init),
            np.asarray(xs[:, b], np.float64),
            None if lengths is None else lengths[b],
            reverse,
            None if resets is None else resets[:, b],
            None if reset_carry is None else row(reset_carry),
        )
        carries.append(carry)
        ys.append(y)
    carry = tuple(np.stack([c[k] for c in carries]) for k in range(2))
    return carry, np.stack(ys, axis=1)  # time-major like the scan


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths, with_resets", [(True, False), (False, True), (True, True)])
def test_masked_scan_matches_loop(reverse, with_lengths, with_resets):
    xs, init = data()
    lengths = LENGTHS if with_lengths else None
    resets = np.zeros((TIME, BATCH), bool)
    resets[[2, 5], 0] = True
    resets[[1, 3, 6], 1] = True
    resets = resets if with_resets else None
    # Restarting from a carry other than the initial one shows which one is used.
    reset_carry = jax.tree.map(lambda c: -2.0 * c, init) if with_resets else None
    carry, ys = jax.jit(functools.partial(masked_scan, leaky_step, reverse=reverse))(
        init,
        jnp.asarray(xs),
        seq_lengths=None if lengths is None else jnp.asarray(lengths),
        resets=None if resets is None else jnp.asarray(resets),
        reset_carry=reset_carry,
    )
    want_carry, want_ys = numpy_scan(xs, init, lengths, reverse, resets, reset_carry)
    np.testing.assert_allclose(ys, want_ys, rtol=1e-5, atol=1e-5)
    for got, want in zip(carry, want_carry, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("remat", ["full", "dots_saveable", "nothing_saveable"])
def test_remat_and_unroll_change_neither_values_nor_gradients(remat):
    xs, init = data(1)

    def loss(init, xs, remat, unroll):
        carry, ys = masked_scan(
            leaky_step, init, xs, seq_lengths=jnp.asarray(LENGTHS), remat=remat, unroll=unroll
        )
        return jnp.sum(jnp.sin(ys)) + jnp.sum(carry[1] ** 2)

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=(2, 3))
    want_value, want_grads = grad(init, jnp.asarray(xs), None, 1)
    value, grads = grad(init, jnp.asarray(xs), remat, 3)
    np.testing.assert_allclose(value, want_value, rtol=1e-6)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_unknown_remat_policy_raises():
    xs, init = data()
    with pytest.raises(ValueError, match="remat"):
        masked_scan(leaky_step, init, jnp.asarray(xs), remat="everything")


def test_valid_mask():
    got = valid_mask(jnp.asarray(LENGTHS), TIME)
    np.testing.assert_array_equal(got, np.arange(TIME)[:, None] < LENGTHS[None, :])


# -- linear_scan ----------------------------------------------------------------------------


def numpy_linear(a, b, h0):
    h = np.zeros(b.shape[1:], b.dtype) if h0 is None else np.asarray(h0, b.dtype)
    out = []
    for a_t, b_t in zip(a, b, strict=True):
        h = a_t * h + b_t
        out.append(h)
    return np.stack(out)


def python_loop_linear(a, b, h0):
    """The recurrence as an unrolled jnp loop: an autodiff reference independent of scans."""
    h = jnp.zeros_like(b[0]) if h0 is None else h0
    out = []
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        out.append(h)
    return jnp.stack(out)


def linear_data(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    draw = lambda *shape: rng.normal(size=shape)
    a, b, h0 = rng.uniform(0.5, 1.0, (TIME, BATCH, 5)), draw(TIME, BATCH, 5), draw(BATCH, 5)
    if np.issubdtype(dtype, np.complexfloating):
        a = a * np.exp(1j * draw(TIME, BATCH, 5))
        b, h0 = b + 1j * draw(TIME, BATCH, 5), h0 + 1j * draw(BATCH, 5)
    return (jnp.asarray(v, dtype) for v in (a, b, h0))


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
@pytest.mark.parametrize("with_h0", [False, True])
def test_linear_scan_values_match_loop(with_h0, dtype):
    a, b, h0 = linear_data(dtype=dtype)
    h0 = h0 if with_h0 else None
    want = numpy_linear(np.asarray(a, np.complex128), np.asarray(b, np.complex128), h0)
    for method in ("sequential", "associative", "auto"):
        got = jax.jit(functools.partial(linear_scan, method=method))(a, b, h0)
        assert got.dtype == dtype and got.shape == b.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["sequential", "associative"])
def test_linear_scan_gradients_match_python_loop(method):
    a, b, h0 = linear_data(1)
    weights = jnp.asarray(np.random.default_rng(2).normal(size=b.shape), jnp.float32)

    def loss(fn, a, b, h0):
        return jnp.sum(weights * jnp.tanh(fn(a, b, h0)))

    scan_fn = functools.partial(linear_scan, method=method)
    got = jax.jit(jax.grad(functools.partial(loss, scan_fn), argnums=(0, 1, 2)))(a, b, h0)
    want = jax.grad(functools.partial(loss, python_loop_linear), argnums=(0, 1, 2))(a, b, h0)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_linear_scan_broadcasts_decay_against_input():
    a, b, h0 = linear_data(3)
    shared = a[:, :1, :1]  # one decay per step, shared by the batch and the features
    got = linear_scan(shared, b, h0, method="associative")
    want = numpy_linear(np.broadcast_to(np.asarray(shared), b.shape), np.asarray(b), h0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_linear_scan_rejects_unknown_method():
    a, b, _ = linear_data()
    with pytest.raises(ValueError, match="method"):
        linear_scan(a, b, method="parallel")
