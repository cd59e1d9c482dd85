"""Forecasting metrics and losses against NumPy/SciPy formulas; the forecaster's modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from rnnlab.models.forecaster import Forecaster, gaussian_nll, pinball_loss
from rnnlab.tasks.forecast import forecast_derive, forecast_metrics
from rnnlab.tasks.scores import mae, mase, rmse, seasonal_naive, seasonal_scale

rng = np.random.default_rng(0)


def test_point_metrics_match_numpy():
    y, p = rng.normal(size=(4, 6, 2)), rng.normal(size=(4, 6, 2))
    np.testing.assert_allclose(float(mae(jnp.asarray(y), jnp.asarray(p))), np.abs(y - p).mean())
    np.testing.assert_allclose(
        float(rmse(jnp.asarray(y), jnp.asarray(p))), np.sqrt(((y - p) ** 2).mean()), rtol=1e-6
    )


def test_seasonal_naive_repeats_the_last_season():
    history = rng.normal(size=(3, 10, 2)).astype(np.float32)
    m, H = 4, 7
    out = np.asarray(seasonal_naive(jnp.asarray(history), H, m))
    for h in range(1, H + 1):
        k = (h - 1) // m + 1  # ceil(h / m)
        np.testing.assert_array_equal(out[:, h - 1], history[:, 10 + h - m * k - 1])


def test_mase_is_mae_over_the_in_sample_seasonal_naive_mae():
    history = rng.normal(size=(3, 12, 1))
    y, p = rng.normal(size=(3, 5, 1)), rng.normal(size=(3, 5, 1))
    m = 3
    got = np.asarray(mase(jnp.asarray(y), jnp.asarray(p), period=m, history=jnp.asarray(history)))
    for b in range(3):
        scale = np.mean([abs(history[b, t, 0] - history[b, t - m, 0]) for t in range(m, 12)])
        np.testing.assert_allclose(got[b], np.abs(y[b] - p[b]).mean() / scale, rtol=1e-5)
        np.testing.assert_allclose(
            float(seasonal_scale(jnp.asarray(history), m)[b]), scale, rtol=1e-5
        )
    fixed = mase(jnp.asarray(y), jnp.asarray(p), scale=2.0)
    np.testing.assert_allclose(np.asarray(fixed), np.abs(y - p).mean(axis=(1, 2)) / 2.0, rtol=1e-6)


def test_probabilistic_losses_match_scipy_and_the_pinball_definition():
    y, mu = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    sigma = rng.uniform(0.2, 2.0, size=(5, 3))
    np.testing.assert_allclose(
        np.asarray(gaussian_nll(jnp.asarray(y), jnp.asarray(mu), jnp.asarray(sigma))),
        -stats.norm.logpdf(y, mu, sigma),
        rtol=1e-5,
    )
    qs = (0.1, 0.5, 0.9)
    preds = rng.normal(size=(5, 3, 3))
    ref = np.zeros((5, 3))
    for i, q in enumerate(qs):
        u = y - preds[..., i]
        ref += np.where(u >= 0, q * u, (q - 1) * u)
    got = pinball_loss(jnp.asarray(y, jnp.float32), jnp.asarray(preds, jnp.float32), qs)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5)


forward = nnx.jit(lambda model, batch, train: model(batch, train=train), static_argnums=2)


@pytest.mark.parametrize("head", ["point", "quantile"])
def test_autoregressive_teacher_forcing_on_its_own_forecast_is_the_free_run(head):
    model = Forecaster(2, 4, mode="autoregressive", head=head, hidden_features=8, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (3, 10, 2))
    free, aux = forward(model, {"inputs": x}, False)
    forced, aux2 = forward(model, {"inputs": x, "targets": free}, True)
    np.testing.assert_allclose(np.asarray(forced), np.asarray(free), atol=1e-5)
    if head == "quantile":
        q = np.asarray(aux["quantiles"])
        assert q.shape == (3, 4, 2, 3) and np.all(np.diff(q, axis=-1) >= 0)
        np.testing.assert_allclose(q[..., 1], np.asarray(free), atol=1e-6)


def test_direct_forecaster_heads_and_seasonal_naive_aux():
    x = jax.random.normal(jax.random.key(1), (2, 8, 1))
    model = Forecaster(
        1, 3, head="gaussian", hidden_features=8, seasonal_period=4, rngs=nnx.Rngs(0)
    )
    out, aux = forward(model, {"inputs": x}, False)
    assert out.shape == (2, 3, 1) and np.all(np.asarray(aux["scale"]) > 0)
    np.testing.assert_array_equal(np.asarray(aux["seasonal_naive"]), np.asarray(x)[:, [4, 5, 6]])
    with pytest.raises(ValueError, match="output_features"):
        Forecaster(2, 3, output_features=1, mode="autoregressive", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="head"):
        Forecaster(1, 3, head="laplace", rngs=nnx.Rngs(0))


def test_forecast_task_metrics_give_mase_in_original_units():
    mean, std, scale, m = 10.0, 3.0, 1.7, 4
    z_hist = rng.normal(size=(4, 8, 1)).astype(np.float32)
    z_y = rng.normal(size=(4, 3, 1)).astype(np.float32)
    z_p = rng.normal(size=(4, 3, 1)).astype(np.float32)
    w = np.array([1, 1, 1, 0], np.float32)  # the last row is padding
    naive = np.asarray(seasonal_naive(jnp.asarray(z_hist), 3, m))
    sums = forecast_metrics(
        jnp.asarray(z_p),
        {"seasonal_naive": jnp.asarray(naive)},
        {"targets": jnp.asarray(z_y), "weights": jnp.asarray(w)},
    )
    means = {k: float(s) / float(c) for k, (s, c) in sums.items()}
    out = forecast_derive(means, {"std": [std], "mean": [mean], "mase_scale": [scale]})
    y, p, nv = (mean + std * a[:3] for a in (z_y, z_p, naive))  # back to original units
    np.testing.assert_allclose(out["mae_orig"], np.abs(y - p).mean(), rtol=1e-5)
    np.testing.assert_allclose(out["rmse_orig"], np.sqrt(((y - p) ** 2).mean()), rtol=1e-5)
    np.testing.assert_allclose(out["mase"], np.abs(y - p).mean() / scale, rtol=1e-5)
    np.testing.assert_allclose(out["naive_mase"], np.abs(y - nv).mean() / scale, rtol=1e-5)
    np.testing.assert_allclose(means["loss"], ((z_y - z_p)[:3] ** 2).mean(), rtol=1e-5)


def test_window_normalisation_makes_forecasts_affine_equivariant():
    model = Forecaster(
        1, 4, head="quantile", window_norm=True, ar_order=3, hidden_features=8, rngs=nnx.Rngs(0)
    )
    model.ar.kernel[...] = jax.random.normal(jax.random.key(3), model.ar.kernel.shape)
    x = jax.random.normal(jax.random.key(2), (2, 9, 1))
    out, aux = forward(model, {"inputs": x}, False)
    out2, aux2 = forward(model, {"inputs": 3.0 * x + 5.0}, False)
    np.testing.assert_allclose(np.asarray(out2), 3.0 * np.asarray(out) + 5.0, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        np.asarray(aux2["quantiles"]), 3.0 * np.asarray(aux["quantiles"]) + 5.0, atol=1e-4
    )


def test_linear_autoregressive_component_is_a_map_of_the_last_lags():
    model = Forecaster(2, 3, ar_order=4, residual=False, hidden_features=8, rngs=nnx.Rngs(0))
    model.head.kernel[...] = jnp.zeros_like(model.head.kernel[...])
    model.head.bias[...] = jnp.zeros_like(model.head.bias[...])
    W = np.asarray(jax.random.normal(jax.random.key(4), (4, 3)))
    model.ar.kernel[...] = jnp.asarray(W)
    x = np.asarray(jax.random.normal(jax.random.key(5), (2, 6, 2)))
    out, _ = forward(model, {"inputs": jnp.asarray(x)}, False)
    ref = np.einsum("bpf,ph->bhf", x[:, -4:], W) + np.asarray(model.ar.bias[...])[None, :, None]
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="ar_order"):
        Forecaster(1, 3, ar_order=2, mode="autoregressive", rngs=nnx.Rngs(0))


def test_covariates_are_read_and_only_the_leading_targets_forecast():
    """``F_out < F``: the residual base is each target's last value (the first ``F_out``
    inputs), the AR highway reads the targets' lags only, and the covariates reach the
    forecast through the network alone."""
    model = Forecaster(
        3, 4, output_features=1, residual=True, ar_order=2, hidden_features=8, rngs=nnx.Rngs(0)
    )
    model.head.kernel[...] = jnp.zeros_like(model.head.kernel[...])
    model.head.bias[...] = jnp.zeros_like(model.head.bias[...])
    x = np.asarray(jax.random.normal(jax.random.key(6), (2, 5, 3)))
    out, _ = forward(model, {"inputs": jnp.asarray(x)}, False)
    assert out.shape == (2, 4, 1)
    # Zero head and zero-initialised AR map: every step repeats the last target value.
    np.testing.assert_allclose(np.asarray(out), np.repeat(x[:, -1:, :1], 4, axis=1), atol=1e-6)
    model.head.kernel[...] = jax.random.normal(jax.random.key(7), model.head.kernel.shape)
    moved = x.copy()
    moved[..., 1:] += 1.0  # covariates only
    a, _ = forward(model, {"inputs": jnp.asarray(x)}, False)
    b, _ = forward(model, {"inputs": jnp.asarray(moved)}, False)
    assert not np.allclose(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="output_features <= input_features"):
        Forecaster(1, 3, output_features=2, residual=True, rngs=nnx.Rngs(0))


def test_forecast_derive_scores_the_target_series_of_a_series_with_covariates():
    """``std`` and ``mase_scale`` cover every input series; the errors are the target's."""
    info = {"std": [2.0, 5.0, 7.0], "mase_scale": [0.5, 3.0, 9.0], "output_features": 1}
    out = forecast_derive({"mae": 0.25, "mse": 0.09}, info)
    np.testing.assert_allclose(out["mae_orig"], 0.5)
    np.testing.assert_allclose(out["rmse_orig"], 0.6)
    np.testing.assert_allclose(out["mase"], 1.0)
