"""ConvLSTM against a NumPy loop of Shi et al.'s equations, SSIM against its direct
formula, and the encoder-forecaster's plumbing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import rnnlab
from rnnlab.cells.conv_lstm import ConvLSTMCell, conv2d
from rnnlab.models.video import VideoPredictor, from_patches, to_patches
from rnnlab.tasks.scores import gaussian_window, ssim
from rnnlab.tasks.video import video_metrics


def np_conv_same(x, k):
    """Direct 'same' cross-correlation of one image [H, W, C] with k [kh, kw, C, O]."""
    kh, kw = k.shape[:2]
    pad = np.pad(x, ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = np.zeros(x.shape[:2] + (k.shape[3],))
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = np.einsum("abc,abco->o", pad[i : i + kh, j : j + kw], k)
    return out


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def np_conv_lstm(p, xs, length, peephole):
    """One sequence [T, H, W, C] through the textbook ConvLSTM; returns outputs and (c, h)."""
    hid = p["kernel_hh"].shape[2]
    c = np.zeros(xs.shape[1:3] + (hid,))
    h = np.zeros_like(c)
    ys = np.zeros(xs.shape[:3] + (hid,))
    for t in range(length):
        z = np_conv_same(xs[t], p["kernel_ih"]) + np_conv_same(h, p["kernel_hh"]) + p["bias"]
        zi, zf, zg, zo = np.split(z, 4, axis=-1)
        wi, wf, wo = np.split(p["peephole"], 3, axis=-1) if peephole else (0, 0, 0)
        i, f = sigmoid(zi + wi * c), sigmoid(zf + wf * c)
        c = f * c + i * np.tanh(zg)
        o = sigmoid(zo + wo * c)
        h = o * np.tanh(c)
        ys[t] = h
    return ys, (c, h)


@pytest.mark.parametrize("peephole", [False, True])
def test_conv_lstm_layer_matches_a_numpy_loop(peephole):
    cell = ConvLSTMCell(
        2, 3, kernel_size=3, spatial_shape=(5, 4), peephole=peephole, rngs=nnx.Rngs(0)
    )
    if peephole:  # non-zero peepholes, so the test sees them
        cell.peephole[...] = jax.random.normal(jax.random.key(1), cell.peephole.shape)
    layer = rnnlab.RNN(cell, return_carry=True)
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4, 2)).astype(np.float32)
    lengths = np.array([3, 2], np.int32)
    (c, h), y = nnx.jit(lambda m, x, n: m(x, seq_lengths=n))(layer, jnp.asarray(x), lengths)
    p = {k: np.asarray(v, np.float64) for k, v in cell.cell_params().items()}
    for b in range(2):
        ys, (c_ref, h_ref) = np_conv_lstm(p, x[b].astype(np.float64), lengths[b], peephole)
        np.testing.assert_allclose(np.asarray(y[b]), ys, atol=1e-5)
        np.testing.assert_allclose(np.asarray(c[b]), c_ref, atol=1e-5)
        np.testing.assert_allclose(np.asarray(h[b]), h_ref, atol=1e-5)


def test_both_convolution_methods_agree():
    x = jax.random.normal(jax.random.key(0), (2, 3, 6, 5, 4))
    k = jax.random.normal(jax.random.key(1), (3, 5, 4, 7))
    conv = jax.jit(conv2d, static_argnums=(2, 3))
    a = conv(x, k, jnp.float32, "xla")
    b = conv(x, k, jnp.float32, "im2col")
    assert a.shape == (2, 3, 6, 5, 7)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)
    np.testing.assert_allclose(
        np.asarray(a[1, 2]), np_conv_same(np.asarray(x[1, 2]), np.asarray(k)), atol=1e-4
    )


def test_conv_lstm_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        ConvLSTMCell(1, 2, kernel_size=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="spatial_shape"):
        ConvLSTMCell(1, 2, peephole=True, rngs=nnx.Rngs(0))
    cell = ConvLSTMCell(1, 2, spatial_shape=(4, 4), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="spatial shape"):
        rnnlab.RNN(cell)(jnp.zeros((1, 2, 5, 4, 1)))


def np_ssim(x, y, window, sigma, data_range=1.0):
    """SSIM by its definition: Gaussian-weighted statistics at every window position."""
    g = gaussian_window(window, sigma).astype(np.float64)
    w = np.outer(g, g)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for ch in range(x.shape[2]):
        for i in range(x.shape[0] - window + 1):
            for j in range(x.shape[1] - window + 1):
                a = x[i : i + window, j : j + window, ch]
                b = y[i : i + window, j : j + window, ch]
                mx, my = (w * a).sum(), (w * b).sum()
                vx, vy = (w * a * a).sum() - mx**2, (w * b * b).sum() - my**2
                cov = (w * a * b).sum() - mx * my
                vals.append(
                    ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
                )
    return np.mean(vals)


def test_ssim_matches_the_direct_formula():
    r = np.random.default_rng(1)
    x = r.uniform(size=(2, 10, 9, 2))
    y = np.clip(x + r.normal(scale=0.2, size=x.shape), 0, 1)
    got = np.asarray(ssim(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), window_size=5))
    for b in range(2):
        np.testing.assert_allclose(got[b], np_ssim(x[b], y[b], 5, 1.5), atol=1e-5)
    same = ssim(jnp.asarray(x, jnp.float32), jnp.asarray(x, jnp.float32), window_size=5)
    np.testing.assert_allclose(np.asarray(same), 1.0, atol=1e-5)


def test_patches_group_neighbouring_pixels():
    x = np.arange(2 * 4 * 6 * 3).reshape(2, 4, 6, 3).astype(np.float32)
    p = np.asarray(to_patches(jnp.asarray(x), 2))
    assert p.shape == (2, 2, 3, 12)
    np.testing.assert_array_equal(p[1, 1, 2].reshape(2, 2, 3), x[1, 2:4, 4:6])
    np.testing.assert_array_equal(np.asarray(from_patches(jnp.asarray(p), 2)), x)


def test_video_predictor_and_metrics():
    model = VideoPredictor(
        1, (8, 8), 2, hidden_features=4, num_layers=1, kernel_size=3, patch_size=2, rngs=nnx.Rngs(0)
    )
    frames = jax.random.uniform(jax.random.key(0), (2, 3, 8, 8, 1))
    target = jax.random.uniform(jax.random.key(1), (2, 2, 8, 8, 1))
    out, aux = nnx.jit(lambda m, b: m(b))(model, {"inputs": frames})
    assert out.shape == (2, 2, 8, 8, 1)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    batch = {"inputs": frames, "targets": target, "weights": jnp.array([1.0, 0.0])}
    sums = jax.jit(video_metrics)(out, aux, batch)
    means = {k: float(s) / float(w) for k, (s, w) in sums.items()}
    o, t = np.asarray(out[0], np.float64), np.asarray(target[0], np.float64)
    np.testing.assert_allclose(means["mse"], ((o - t) ** 2).mean(), rtol=1e-5)
    z = np.asarray(aux["bce_logits"][0], np.float64)  # BCE with logits: softplus(z) - t z
    np.testing.assert_allclose(means["loss"], (np.logaddexp(0, z) - t * z).mean(), rtol=1e-5)
    np.testing.assert_allclose(1 / (1 + np.exp(-z)), o, rtol=1e-5)
    np.testing.assert_allclose(means["mse_t2"], ((o[1] - t[1]) ** 2).mean(), rtol=1e-5)
    last = np.asarray(frames[0, -1], np.float64)
    np.testing.assert_allclose(means["copy_last_mse"], ((last[None] - t) ** 2).mean(), rtol=1e-5)
    ref = np.mean([np_ssim(o[k], t[k], 7, 1.5) for k in range(2)])
    np.testing.assert_allclose(means["ssim"], ref, atol=1e-5)
    with pytest.raises(ValueError, match="frames"):
        model({"inputs": jnp.zeros((2, 3, 8, 6, 1))})
