"""Linear recurrences: LRU, minGRU, minLSTM against NumPy loops of their papers' equations;
the associative scan against the sequential one; the time-parallel layer against rnnlab.RNN.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from rnn_reference import randomize

import rnnlab
from rnnlab.cells import LRUCell, MinGRUCell, MinLSTMCell, SimpleCell
from rnnlab.layers import LinearRecurrence, LRULayer, MinGRULayer, MinLSTMLayer

B, IN, H, T = 3, 4, 6, 7


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def p64(cell):
    return {n: np.asarray(v, np.float64) for n, v in cell.cell_params().items()}


def inputs(seed=0, shape=(B, T, IN)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def lru_ref(p, xs):
    """Orvieto et al. (2023): x_t = lambda x_{t-1} + gamma (B u_t), y_t = Re(C x_t) + D u_t."""
    lam = np.exp(-np.exp(p["nu_log"])) * np.exp(1j * np.exp(p["theta_log"]))
    gamma = np.exp(p["gamma_log"])
    b_mat, c_mat = p["B_re"] + 1j * p["B_im"], p["C_re"] + 1j * p["C_im"]
    x, ys = np.zeros((xs.shape[0], len(lam)), np.complex128), []
    for t in range(xs.shape[1]):
        u = xs[:, t].astype(np.float64)
        x = lam * x + gamma * (u @ b_mat)
        feed = u * p["D"] if p["D"].ndim == 1 else u @ p["D"]
        y = np.real(x @ c_mat) + feed
        if "glu_kernel" in p:  # the block's gated linear unit (their Fig. 1)
            g = y @ p["glu_kernel"] + p["glu_bias"]
            y = g[:, : y.shape[1]] * sigmoid(g[:, y.shape[1] :])
        ys.append(y)
    return np.stack(ys, 1), x


def min_ref(kind, p, xs, candidate="identity"):
    """Feng et al. (2024): minGRU and minLSTM, one step at a time."""
    g = (lambda v: np.where(v >= 0, v + 0.5, sigmoid(v))) if candidate == "g" else (lambda v: v)
    h, ys = np.zeros((xs.shape[0], H)), []
    for t in range(xs.shape[1]):
        pre = xs[:, t].astype(np.float64) @ p["kernel"] + p["bias"]
        if kind == "mingru":
            z, cand = sigmoid(pre[:, :H]), g(pre[:, H:])
            h = (1 - z) * h + z * cand
        else:
            f, i, cand = sigmoid(pre[:, :H]), sigmoid(pre[:, H : 2 * H]), g(pre[:, 2 * H :])
            h = f / (f + i) * h + i / (f + i) * cand
        ys.append(h)
    return np.stack(ys, 1), h


CELLS = {
    "lru": lambda: LRUCell(IN, H, out_features=IN, rngs=nnx.Rngs(0)),
    "lru_glu": lambda: LRUCell(IN, H, out_features=5, glu=True, rngs=nnx.Rngs(0)),
    "mingru": lambda: MinGRUCell(IN, H, rngs=nnx.Rngs(0)),
    "mingru_g": lambda: MinGRUCell(IN, H, candidate="g", rngs=nnx.Rngs(0)),
    "minlstm": lambda: MinLSTMCell(IN, H, rngs=nnx.Rngs(0)),
}


def reference(kind, cell, xs):
    p = p64(cell)
    if kind.startswith("lru"):
        return lru_ref(p, xs)
    return min_ref(kind.removesuffix("_g"), p, xs, "g" if kind.endswith("_g") else "identity")


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_linear_layer_matches_paper_equations(kind):
    method = "associative" if kind.startswith("min") else "sequential"
    cell = randomize(CELLS[kind](), 1, scale=0.4)
    xs = inputs(2)
    want_y, want_h = reference(kind, cell, xs)
    carry, ys = LinearRecurrence(cell, method=method)(jnp.asarray(xs), return_carry=True)
    np.testing.assert_allclose(ys, want_y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(carry, want_h, rtol=1e-4, atol=1e-5)


def _batch_options():
    lengths = jnp.array([T, 4, 2])
    resets = jnp.zeros((B, T), bool).at[0, 3].set(True).at[1, 2].set(True).at[2, 5].set(True)
    return lengths, resets


@pytest.mark.parametrize("kind, reverse", [("lru", True), ("mingru", False), ("minlstm", True)])
def test_associative_scan_matches_sequential_in_values_and_gradients(kind, reverse):
    cell = randomize(CELLS[kind](), 5, scale=0.4)
    layer = LinearRecurrence(cell)
    lengths, resets = _batch_options()
    xs = jnp.asarray(inputs(6))
    w = jnp.asarray(inputs(7, (B, T, cell.output_features)))
    graphdef, params = nnx.split(layer, nnx.Param)

    def loss(params, x, method, reverse):
        model = nnx.merge(graphdef, params)
        carry, ys = model(
            x,
            seq_lengths=lengths,
            resets=resets,
            reverse=reverse,
            method=method,
            return_carry=True,
        )
        return jnp.sum(ys * w) + jnp.sum(jnp.abs(carry) ** 2)

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=(2, 3))
    seq = grad(params, xs, "sequential", reverse)
    par = grad(params, xs, "associative", reverse)
    for a, b in zip(jax.tree.leaves(seq), jax.tree.leaves(par), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
    assert float(jnp.abs(seq[1][1]).max()) > 0


@pytest.mark.parametrize(
    "kind, reverse, keep_order", [("lru", False, False), ("mingru", True, True)]
)
def test_time_parallel_layer_has_rnn_semantics(kind, reverse, keep_order):
    # Padding, resets, reversal and an initial carry: the same outputs and final carry as the
    # masked sequential scan of rnnlab.RNN over the same cell.
    cell = randomize(CELLS[kind](), 8, scale=0.4)
    lengths, resets = _batch_options()
    xs = jnp.asarray(inputs(9))
    h0 = cell.initialize_carry((B, IN)) + jnp.asarray(0.3, cell.state_dtype)
    kw = dict(seq_lengths=lengths, resets=resets, initial_carry=h0, return_carry=True)
    kw |= dict(reverse=reverse, keep_order=keep_order)
    want_c, want_y = rnnlab.RNN(cell)(xs, **kw)
    got_c, got_y = LinearRecurrence(cell, method="associative")(xs, **kw)
    np.testing.assert_allclose(got_y, want_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_c, want_c, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(got_y)[2, 2:] == 0)  # padding is exactly zero


def test_lru_eigenvalues_stay_inside_the_unit_disc_and_start_on_the_ring():
    cell = LRUCell(IN, 256, r_min=0.5, r_max=0.9, max_phase=np.pi / 4, rngs=nnx.Rngs(0))
    p = p64(cell)
    mag, phase = np.exp(-np.exp(p["nu_log"])), np.exp(p["theta_log"])
    assert mag.min() >= 0.5 - 1e-6 and mag.max() <= 0.9 + 1e-6
    assert phase.min() >= 0 and phase.max() <= np.pi / 4 + 1e-6
    # |lambda| = exp(-exp(nu)) < 1 for any nu: the parametrisation cannot leave the disc
    # (float32 rounds |lambda| to 1 only for nu below about -17).
    for nu, bound in ((-30.0, 1.0 + 1e-6), (-5.0, 0.9933), (0.0, 0.368), (5.0, 1e-60)):
        cell.nu_log[...] = jnp.full((256,), nu)
        lam = rnnlab.cells.linear.lru_eigenvalues(cell.cell_params())
        assert float(jnp.abs(lam).max()) <= bound


def test_lru_gamma_normalises_the_impulse_response_energy():
    # For an impulse through B = 1 at t = 0 the state is x_t = gamma lambda^t, whose energy
    # over all t is gamma^2 / (1 - |lambda|^2) = 1 with gamma = sqrt(1 - |lambda|^2).
    n = 8
    cell = LRUCell(1, n, out_features=2 * n, r_min=0.3, r_max=0.9, rngs=nnx.Rngs(1))
    cell.B_re[...], cell.B_im[...] = jnp.ones((1, n)), jnp.zeros((1, n))
    eye, zero = jnp.eye(n), jnp.zeros((n, n))
    # y = [Re x, Im x]: Re(x C) with C = [I, -iI].
    cell.C_re[...] = jnp.concatenate([eye, zero], axis=1)
    cell.C_im[...] = jnp.concatenate([zero, -eye], axis=1)
    cell.D[...] = jnp.zeros((1, 2 * n))
    xs = jnp.zeros((1, 200, 1)).at[0, 0, 0].set(1.0)
    ys = np.asarray(LinearRecurrence(cell, method="sequential")(xs), np.float64)[0]
    energy = (ys[:, :n] ** 2 + ys[:, n:] ** 2).sum(0)
    np.testing.assert_allclose(energy, np.ones(n), rtol=1e-4)


def test_linear_layers_build_and_check_arguments():
    x = jnp.asarray(inputs(10))
    for layer in (
        LRULayer(IN, H, rngs=nnx.Rngs(0)),
        MinGRULayer(IN, H, method="associative", rngs=nnx.Rngs(0)),
        MinLSTMLayer(IN, H, candidate="g", rngs=nnx.Rngs(0)),
    ):
        assert layer(x).shape == (B, T, H) == (B, T, layer.output_features)
    with pytest.raises(ValueError, match="method"):
        MinGRULayer(IN, H, method="parallel", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="LinearRecurrentCell"):
        LinearRecurrence(SimpleCell(IN, H, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="initial_carry"):
        MinGRULayer(IN, H, rngs=nnx.Rngs(0))(x, initial_carry=jnp.zeros((B, H + 1)))
    with pytest.raises(ValueError, match="candidate"):
        MinGRUCell(IN, H, candidate="relu", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="r_min"):
        LRUCell(IN, H, r_min=0.9, r_max=0.5, rngs=nnx.Rngs(0))


def test_stacked_rnn_runs_linear_cells_by_name():
    model = rnnlab.StackedRNN(IN, H, 2, cell="lru", rngs=nnx.Rngs(0))
    assert model(jnp.asarray(inputs(11))).shape == (B, T, H)
