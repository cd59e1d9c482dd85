"""Gradient flow and Jacobian spectra against finite differences and closed forms.

The reference for ``dL/dh_t`` is a float64 NumPy loop of the textbook cell (tests/rnn_reference)
in which a small perturbation is added to the state after step ``t`` (and so to the output
read from it); central differences of the loss give the gradient, coordinate by coordinate.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from rnn_reference import randomize, step_fn

import rnnlab
from rnnlab import diagnostics
from rnnlab.cells import GRUCell, LRUCell, LSTMCell, OrthogonalCell, SimpleCell
from rnnlab.layers import LinearRecurrence

B, IN, H, T = 2, 3, 4, 5


def data(seed, out=H, shape=(B, T, IN)):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype(np.float32), rng.normal(size=shape[:2] + (out,))


def leaves(carry):
    return list(carry) if isinstance(carry, tuple) else [carry]


def rebuild(like, parts):
    return tuple(parts) if isinstance(like, tuple) else parts[0]


def run_stack(steps, carries0, xs, perturb=None):
    """Stacked reference run of one sequence; ``perturb = (layer, t, leaf, i, delta)``.

    Returns the per-layer outputs ``[T, H]`` of the last layer.
    """
    seq = [np.asarray(x, np.float64) for x in xs]
    for layer, (step, carry) in enumerate(zip(steps, carries0, strict=True)):
        out = []
        for t, x in enumerate(seq):
            carry, y = step(carry, x)
            if perturb is not None and perturb[:2] == (layer, t):
                parts = [np.array(p, np.float64) for p in leaves(carry)]
                parts[perturb[2]][perturb[3]] += perturb[4]
                carry = rebuild(carry, parts)
                y = parts[1] if isinstance(carry, tuple) else parts[0]
            out.append(y)
        seq = out
    return np.stack(seq)


def fd_state_gradient_norms(steps, carries0, xs, w, eps=1e-5):
    """``||dL/dh_t||`` per layer ``[B, T]`` for ``L = sum(w * y_last)`` by central differences."""
    shapes = [[np.shape(p) for p in leaves(c)] for c in carries0]
    norms = np.zeros((len(steps), xs.shape[0], xs.shape[1]))
    for b in range(xs.shape[0]):
        loss = lambda pert, b=b: np.sum(w[b] * run_stack(steps, carries0, xs[b], pert))
        for layer, layer_shapes in enumerate(shapes):
            for t in range(xs.shape[1]):
                sq = 0.0
                for leaf, shape in enumerate(layer_shapes):
                    for i in range(shape[0]):
                        up = loss((layer, t, leaf, i, eps))
                        down = loss((layer, t, leaf, i, -eps))
                        sq += ((up - down) / (2 * eps)) ** 2
                norms[layer, b, t] = np.sqrt(sq)
    return norms


def zero(cell):
    if isinstance(cell, LSTMCell):
        return (np.zeros(H), np.zeros(H))
    return np.zeros(H)


@pytest.mark.parametrize("cell_cls, implementation", [(SimpleCell, "auto"), (LSTMCell, "fused")])
def test_state_gradients_match_finite_differences(cell_cls, implementation):
    # A layer set to the fused whole-sequence kernel is probed through the scan path.
    cell = randomize(cell_cls(IN, H, rngs=nnx.Rngs(0)), 1)
    rnn = rnnlab.RNN(cell, implementation=implementation)
    xs, w = data(2)
    flow = diagnostics.hidden_state_gradients(
        rnn, lambda m: jnp.sum(m(jnp.asarray(xs)) * jnp.asarray(w, jnp.float32))
    )
    want = fd_state_gradient_norms([step_fn(rnn.cell)], [zero(rnn.cell)], xs, w)
    np.testing.assert_allclose(flow.per_example["rnn"], want[0], rtol=2e-3, atol=1e-6)
    # The batch norm is the norm over both sequences.
    np.testing.assert_allclose(flow.norms["rnn"], np.linalg.norm(want[0], axis=0), rtol=2e-3)


def test_stacked_state_gradients_match_finite_differences():
    model = randomize(rnnlab.StackedRNN(IN, H, 2, cell="gru", rngs=nnx.Rngs(0)), 3)
    xs, w = data(4)
    flow = diagnostics.hidden_state_gradients(
        model, lambda m: jnp.sum(m(jnp.asarray(xs)) * jnp.asarray(w, jnp.float32))
    )
    cells = [layer.cell for layer in model.layers]
    want = fd_state_gradient_norms([step_fn(c) for c in cells], [zero(c) for c in cells], xs, w)
    assert sorted(flow.per_example) == ["layers/0", "layers/1"]
    for k in range(2):
        np.testing.assert_allclose(flow.per_example[f"layers/{k}"], want[k], rtol=2e-3, atol=1e-6)


def test_lru_state_gradients_match_finite_differences_over_real_and_imaginary_parts():
    cell = randomize(LRUCell(IN, H, out_features=IN, rngs=nnx.Rngs(0)), 5, scale=0.4)
    p = {k: np.asarray(v, np.float64) for k, v in cell.cell_params().items()}
    lam = np.exp(-np.exp(p["nu_log"])) * np.exp(1j * np.exp(p["theta_log"]))
    gamma, b_mat = np.exp(p["gamma_log"]), p["B_re"] + 1j * p["B_im"]
    c_mat = p["C_re"] + 1j * p["C_im"]
    xs, w = data(6, out=IN)

    def loss(b, pert=None):
        x, total = np.zeros(H, np.complex128), 0.0
        for t in range(T):
            u = xs[b, t].astype(np.float64)
            x = lam * x + gamma * (u @ b_mat)
            if pert is not None and pert[0] == t:
                x = x + pert[1]
            total += np.sum(w[b, t] * (np.real(x @ c_mat) + p["D"] * u))
        return total

    want = np.zeros((B, T))
    for b in range(B):
        for t in range(T):
            sq = 0.0
            for i in range(H):
                for unit in (1.0, 1j):
                    d = np.zeros(H, np.complex128)
                    d[i] = 1e-5 * unit
                    sq += ((loss(b, (t, d)) - loss(b, (t, -d))) / 2e-5) ** 2
            want[b, t] = np.sqrt(sq)
    loss_fn = lambda m: jnp.sum(m(jnp.asarray(xs)) * jnp.asarray(w, jnp.float32))
    for layer in (LinearRecurrence(cell, method="associative"), rnnlab.RNN(cell)):
        flow = diagnostics.hidden_state_gradients(layer, loss_fn)
        np.testing.assert_allclose(flow.per_example["rnn"], want, rtol=2e-3, atol=1e-6)


def test_padding_and_reversed_layers_are_indexed_by_input_position():
    cells = [randomize(GRUCell(IN, H, rngs=nnx.Rngs(k)), 7 + k) for k in range(2)]
    model = rnnlab.Bidirectional(rnnlab.RNN(cells[0]), rnnlab.RNN(cells[1]))
    xs, _ = data(9)
    lengths = jnp.array([T, 3])
    # Only the output at position 0 counts: the forward state after step 0 reaches it
    # directly, the backward state at every valid position reaches it through later steps.
    flow = diagnostics.hidden_state_gradients(
        model, lambda m: jnp.sum(m(jnp.asarray(xs), seq_lengths=lengths)[:, 0])
    )
    fwd, bwd = flow.per_example["forward_rnn"], flow.per_example["backward_rnn"]
    assert np.all(fwd[:, 0] > 0) and np.all(fwd[:, 1:] == 0)
    assert np.all(bwd[0] > 0)
    assert np.all(bwd[1, :3] > 0) and np.all(bwd[1, 3:] == 0)


def test_gradient_flow_shows_vanishing_in_elman_and_not_in_orthogonal_rnn():
    x = jnp.asarray(np.random.default_rng(10).normal(size=(4, 60, IN)), jnp.float32)
    loss = lambda m: jnp.sum(m(x)[:, -1])
    elman = rnnlab.RNN(SimpleCell(IN, 16, rngs=nnx.Rngs(0)))
    ortho = rnnlab.RNN(OrthogonalCell(IN, 16, activation="identity", rngs=nnx.Rngs(0)))
    e = diagnostics.hidden_state_gradients(elman, loss).norms["rnn"]
    o = diagnostics.hidden_state_gradients(ortho, loss).norms["rnn"]
    assert e[0] < 1e-3 * e[-1]
    # An orthogonal linear recurrence preserves the gradient norm exactly.
    np.testing.assert_allclose(o, np.full(60, o[-1]), rtol=1e-4)


def test_elman_jacobian_spectrum_matches_closed_form():
    cell = randomize(SimpleCell(IN, H, rngs=nnx.Rngs(0)), 11)
    xs, _ = data(12)
    sv = diagnostics.cell_jacobian_spectrum(cell, jnp.asarray(xs))
    assert sv.shape == (B, T, H)
    p = {k: np.asarray(v, np.float64) for k, v in cell.cell_params().items()}
    for b in range(B):
        h = np.zeros(H)
        for t in range(T):
            h = np.tanh(xs[b, t] @ p["kernel_ih"] + h @ p["kernel_hh"] + p["bias"])
            jac = np.diag(1 - h**2) @ p["kernel_hh"].T  # dh_t / dh_{t-1}
            np.testing.assert_allclose(sv[b, t], np.linalg.svd(jac, compute_uv=False), rtol=1e-4)


def test_jacobian_spectra_of_a_stack_use_each_layers_inputs():
    model = randomize(rnnlab.StackedRNN(IN, H, 2, cell="lstm", rngs=nnx.Rngs(0)), 13)
    xs = jnp.asarray(data(14)[0])
    spectra = diagnostics.jacobian_spectra(model, lambda m: m(xs), top_k=3)
    first = model.layers[0](xs)
    want = diagnostics.cell_jacobian_spectrum(model.layers[1].cell, first, top_k=3)
    assert spectra["layers/1"].shape == (B, T, 3)
    np.testing.assert_allclose(spectra["layers/1"], want, rtol=1e-5)
    # An orthogonal cell with the identity activation has dh_t/dh_{t-1} = W^T.
    ortho = OrthogonalCell(IN, H, activation="identity", rngs=nnx.Rngs(0))
    sv = diagnostics.cell_jacobian_spectrum(ortho, xs)
    np.testing.assert_allclose(sv, np.ones((B, T, H)), atol=1e-5)


def test_plots_write_png_files(tmp_path):
    curves = {"elman": np.geomspace(1e-8, 1, 20), "lstm": np.geomspace(1e-2, 1, 20)}
    spectra = {"elman": np.tile(np.geomspace(2, 0.1, 4), (20, 1))}
    paths = [
        diagnostics.plot_gradient_flow(curves, str(tmp_path / "flow.png")),
        diagnostics.plot_gradient_heatmap(
            [0, 10, 20], np.stack([curves["elman"]] * 3), str(tmp_path / "heat.png")
        ),
        diagnostics.plot_jacobian_spectra(spectra, str(tmp_path / "spec.png")),
    ]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="norms must be"):
        diagnostics.plot_gradient_heatmap([0, 1], np.ones((3, 20)), str(tmp_path / "x.png"))


def test_models_without_a_recurrence_or_with_a_layer_run_twice_are_rejected():
    with pytest.raises(ValueError, match="rnnlab.RNN"):
        diagnostics.hidden_state_gradients(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), lambda m: 0.0)
    rnn = rnnlab.RNN(SimpleCell(IN, H, rngs=nnx.Rngs(0)))
    x = jnp.ones((B, T, IN))
    with pytest.raises(ValueError, match="ran 2 times"):
        diagnostics.hidden_state_gradients(rnn, lambda m: jnp.sum(m(x)) + jnp.sum(m(x)))
