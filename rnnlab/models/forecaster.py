"""Multi-step time-series forecaster: direct or autoregressive, point or probabilistic.

An RNN reads the history window ``x_{1..L}`` (``[B, L, F]``) and forecasts the next ``H``
values of the ``F_out`` target series, the first ``F_out`` of the ``F`` inputs (the others
are past covariates, read over the window only):

- ``direct`` (multi-input multi-output; Taieb et al. 2012): one linear map from the final
  state ``h_L`` to all ``H`` future steps at once;
- ``autoregressive``: the network predicts one step ahead and its prediction becomes the
  next input. Training feeds the true values (teacher forcing) unless
  ``teacher_forcing=False``, which trains on the free-running forecast as it is used.

Heads (``head``):

- ``point``: the forecast itself; trained with mean squared error;
- ``gaussian``: mean and scale ``sigma = softplus(.) + eps``; trained with the Gaussian
  negative log-likelihood (DeepAR, Salinas et al. 2020);
- ``quantile``: one forecast per quantile level, trained with the pinball loss (Wen et
  al. 2017); the point forecast is the median level (or the level nearest to it).

``outputs`` is always the point forecast ``[B, H, F_out]`` (so MAE/RMSE/MASE read it the
same way for every head); ``aux["scale"]`` or ``aux["quantiles"]`` holds the rest.

With ``residual=True`` (default when input and output series match) forecasts are offsets
from the last observed value: a trending series such as co2 then leaves the training range
without the network having to extrapolate levels. ``window_norm=True`` goes further and
standardises every window by its own mean and standard deviation per series, forecasting in
those units and mapping back (reversible instance normalisation, Kim et al. 2022): the
network then sees cycles of any amplitude at one scale, as sunspots' growing cycles need.
``ar_order=p`` (direct mode) adds a linear autoregressive component, a map from the last
``p`` values of each series to its ``H`` forecasts, in parallel with the network (the
"highway" of LSTNet, Lai et al. 2018): the linear structure a small series supports is then
there from the start, and the network learns what is left.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rnnlab.cells.base import check_positive_int
from rnnlab.layers import StackedRNN
from rnnlab.layers.feedback import feedback_loop
from rnnlab.models import Model, register, resolve_dtype
from rnnlab.options import opt

Array = jax.Array

MODES = ("direct", "autoregressive")
HEADS = ("point", "gaussian", "quantile")
SCALE_EPS = 1e-3
WINDOW_EPS = 1e-4  # variance floor of window normalisation (flat windows)


def seasonal_naive(history: Array, horizon: int, period: int) -> Array:
    """Seasonal-naive forecast: ``y_{L+h} = y_{L+h-m k}``, ``k = ceil(h / m)``, repeating the
    last observed season. ``history`` is ``[..., L, F]`` with ``L >= period``; returns
    ``[..., horizon, F]``."""
    length = history.shape[-2]
    if period > length:
        raise ValueError(f"period must be <= the history length {length}, got {period}")
    h = np.arange(1, horizon + 1)
    idx = length + h - period * np.ceil(h / period).astype(int) - 1
    return jnp.take(history, jnp.asarray(idx), axis=-2)


def gaussian_nll(y: Array, mean: Array, scale: Array) -> Array:
    """Elementwise ``-log N(y; mean, scale^2) = log sigma + (y - mu)^2 / (2 sigma^2) +
    log(2 pi) / 2``."""
    z = (y - mean) / scale
    return jnp.log(scale) + 0.5 * z * z + 0.5 * jnp.log(2 * jnp.pi)


def pinball_loss(y: Array, predictions: Array, quantiles: Sequence[float]) -> Array:
    """Elementwise quantile (pinball) loss, summed over the quantile axis (last of
    ``predictions``): ``rho_q(u) = max(q u, (q - 1) u)`` with ``u = y - y_hat_q``
    (Koenker & Bassett 1978)."""
    q = jnp.asarray(quantiles, jnp.float32)
    u = y[..., None] - predictions
    return jnp.sum(jnp.maximum(q * u, (q - 1.0) * u), axis=-1)


def forecast_loss(outputs: Array, aux: Mapping[str, Any], targets: Array, head: str) -> Array:
    """Per-window loss ``[B]``, averaged over horizon and series, for the given head."""
    if head == "point":
        per = jnp.square(outputs - targets)
    elif head == "gaussian":
        per = gaussian_nll(targets, outputs, aux["scale"])
    elif head == "quantile":
        per = pinball_loss(targets, aux["quantiles"], aux["quantile_levels"])
    else:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    return jnp.mean(per, axis=tuple(range(1, per.ndim)))


@register("forecaster")
@dataclasses.dataclass(frozen=True)
class ForecasterConfig:
    """The options of :class:`Forecaster` a config sets (the rest come from the data)."""

    output_features: int | None = opt(
        None, "target series ``F_out``, the first ``F_out`` inputs (defaults to ``F``)."
    )
    mode: str = opt("direct", '``"direct"`` or ``"autoregressive"`` (needs ``F_out == F``).')
    head: str = opt("point", '``"point"``, ``"gaussian"`` or ``"quantile"``.')
    quantiles: Sequence[float] = opt((0.1, 0.5, 0.9), "levels of the quantile head.")
    hidden_features: int = opt(64, "the recurrent stack.")
    num_layers: int = opt(1, "the recurrent stack.")
    cell: str = opt("lstm", "the recurrent stack.")
    dropout: float = opt(0.0, "the recurrent stack.")
    residual: bool | None = opt(
        None, "forecast offsets from the last observed value of each target (the targets"
    )
    teacher_forcing: bool = opt(
        True, "autoregressive training on true inputs (else on its own forecasts)."
    )
    window_norm: bool = opt(
        False, "standardise each window by its own statistics (see the module docstring)."
    )
    ar_order: int = opt(
        0, "lags of the linear autoregressive component (0: none; direct mode only)."
    )
    seasonal_period: int | None = opt(
        None, "when set (and the window holds a full season), ``aux`` also carries"
    )
    dtype: Any = opt(None, "Forecaster argument dtype")

    def build(self, info: Mapping[str, Any], rngs: nnx.Rngs) -> Forecaster:
        """The model for the dataset ``info`` describes, from every option."""
        return _build(info, rngs=rngs, **vars(self))


class Forecaster(Model):
    """Recurrent multi-step forecaster; see the module docstring.

    Args:
      input_features: series per input step ``F``.
      output_features: target series ``F_out``, the first ``F_out`` inputs (defaults to ``F``).
      horizon: steps to forecast ``H``.
      mode: ``"direct"`` or ``"autoregressive"`` (needs ``F_out == F``).
      head: ``"point"``, ``"gaussian"`` or ``"quantile"``.
      quantiles: levels of the quantile head.
      hidden_features, num_layers, cell, dropout: the recurrent stack.
      residual: forecast offsets from the last observed value of each target (the targets
        are the first ``F_out`` input series, the others covariates); ``None`` turns it on
        exactly when the sizes match.
      teacher_forcing: autoregressive training on true inputs (else on its own forecasts).
      window_norm: standardise each window by its own statistics (see the module docstring).
      ar_order: lags of the linear autoregressive component (0: none; direct mode only).
      seasonal_period: when set (and the window holds a full season), ``aux`` also carries
        the seasonal-naive forecast of each window, ``aux["seasonal_naive"]``, the baseline
        of MASE (:func:`seasonal_naive`).
    """

    def __init__(
        self,
        input_features: int,
        horizon: int,
        *,
        output_features: int | None = None,
        mode: str = "direct",
        head: str = "point",
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        hidden_features: int = 64,
        num_layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.0,
        residual: bool | None = None,
        teacher_forcing: bool = True,
        window_norm: bool = False,
        ar_order: int = 0,
        seasonal_period: int | None = None,
        dtype: Any = None,
        rngs: nnx.Rngs,
    ):
        check_positive_int("input_features", input_features)
        self.horizon = check_positive_int("horizon", horizon)
        out = input_features if output_features is None else output_features
        self.output_features = check_positive_int("output_features", out)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        quantiles = tuple(float(q) for q in quantiles)
        if head == "quantile" and (not quantiles or not all(0 < q < 1 for q in quantiles)):
            raise ValueError(f"quantiles must be levels in (0, 1), got {quantiles!r}")
        same = out == input_features
        if mode == "autoregressive" and not same:
            raise ValueError(
                "mode='autoregressive' feeds forecasts back as inputs, so output_features must "
                f"equal input_features={input_features}, got {out}"
            )
        if isinstance(ar_order, bool) or not isinstance(ar_order, int) or ar_order < 0:
            raise ValueError(f"ar_order must be an int >= 0, got {ar_order!r}")
        if ar_order and mode != "direct":
            raise ValueError(f"ar_order > 0 needs mode='direct', got mode={mode!r}")
        if out > input_features:
            raise ValueError(
                f"the forecaster needs output_features <= input_features (the targets are the "
                f"first input series), got {out} and {input_features}"
            )
        residual = same if residual is None else residual
        dtype = resolve_dtype(dtype)
        self.mode, self.head_type, self.residual = mode, head, residual
        self.teacher_forcing, self.window_norm = teacher_forcing, window_norm
        self.deterministic = False  # NNX mode; .eval() sets it
        self.seasonal_period = (
            None
            if seasonal_period is None
            else check_positive_int("seasonal_period", seasonal_period)
        )
        self.quantiles = quantiles
        self.median = min(range(len(quantiles)), key=lambda i: abs(quantiles[i] - 0.5))
        self.params_per_value = {"point": 1, "gaussian": 2, "quantile": len(quantiles)}[head]
        self.rnn = StackedRNN(
            input_features,
            hidden_features,
            num_layers,
            cell=cell,
            cell_kwargs={"dtype": dtype},
            dropout=dropout,
            rngs=rngs,
        )
        steps = horizon if mode == "direct" else 1
        self.head = nnx.Linear(
            self.rnn.output_features,
            steps * self.output_features * self.params_per_value,
            dtype=dtype,
            rngs=rngs,
        )
        self.ar_order = ar_order
        # Zero-initialised: training starts from the network alone.
        self.ar = (
            nnx.Linear(ar_order, horizon, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)
            if ar_order
            else None
        )

    def _read(self, h: Array, last: Array, extra: Array | None = None) -> dict[str, Array]:
        """Head outputs for states ``h`` ``[B, S, hidden]`` -> per-step parameters; ``extra``
        ``[B, S, F]`` is added to every location parameter."""
        raw = self.head(h).astype(jnp.float32)
        raw = raw.reshape(raw.shape[:1] + (-1, self.output_features, self.params_per_value))
        base = last[:, None, :] if self.residual else jnp.zeros_like(last[:, None, :])
        if extra is not None:
            base = base + extra
        if self.head_type == "point":
            return {"point": raw[..., 0] + base}
        if self.head_type == "gaussian":
            mean = raw[..., 0] + base
            return {"point": mean, "scale": jax.nn.softplus(raw[..., 1]) + SCALE_EPS}
        levels = raw + base[..., None]
        # Sorting makes the levels monotone, so quantile forecasts never cross.
        levels = jnp.sort(levels, axis=-1)
        return {"point": levels[..., self.median], "quantiles": levels}

    def forward(
        self, batch: Mapping[str, Array], *, rngs: nnx.Rngs | None, carry: Any
    ) -> tuple[Array, dict[str, Any]]:
        """Point forecast ``[B, H, F_out]``; ``aux["scale"]`` / ``aux["quantiles"]``,
        ``aux["hidden"]``."""
        del carry
        train = not self.deterministic
        x = batch["inputs"]
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3 or x.shape[-1] != self.rnn.in_features:
            raise ValueError(
                f"batch['inputs'] must be [B, L, {self.rnn.in_features}], got {tuple(x.shape)}"
            )
        x = raw = x.astype(jnp.float32)
        y_true = batch.get("targets")
        if self.window_norm:
            mu = jnp.mean(x, axis=1, keepdims=True)
            sigma = jnp.sqrt(jnp.var(x, axis=1, keepdims=True) + WINDOW_EPS)
            x = (x - mu) / sigma
            mu, sigma = mu[..., : self.output_features], sigma[..., : self.output_features]
            if y_true is not None:
                y_true = (
                    jnp.asarray(y_true, jnp.float32).reshape(x.shape[0], self.horizon, -1) - mu
                ) / sigma
        last = x[:, -1, : self.output_features]
        kw = dict(rngs=rngs)
        if self.mode == "direct":
            h = self.rnn(x, **kw)
            out = self._read(h[:, -1:], last, self._autoregression(x))
        elif train and self.teacher_forcing and y_true is not None:
            # One pass over history and the true future but its last value: state t forecasts
            # step t + 1, so the last H states forecast the horizon.
            y = jnp.asarray(y_true, jnp.float32).reshape(x.shape[0], self.horizon, -1)
            full = jnp.concatenate([x, y[:, :-1]], axis=1)
            h = self.rnn(full, **kw)
            prev = jnp.concatenate([x[:, -1:], y[:, :-1]], axis=1)  # the value before each step
            out = self._read_steps(h[:, -self.horizon :], prev)
        else:
            out, h = self._free_run(x, last, kw)
        if self.window_norm:  # back to the data's units
            out = dict(out, point=mu + sigma * out["point"])
            if "scale" in out:
                out["scale"] = sigma * out["scale"]
            if "quantiles" in out:
                out["quantiles"] = mu[..., None] + sigma[..., None] * out["quantiles"]
        aux = {"hidden": h}
        if self.seasonal_period is not None and x.shape[1] >= self.seasonal_period:
            history = raw[..., : self.output_features]
            aux["seasonal_naive"] = seasonal_naive(history, self.horizon, self.seasonal_period)
        if "scale" in out:
            aux["scale"] = out["scale"]
        if "quantiles" in out:
            aux["quantiles"] = out["quantiles"]
            aux["quantile_levels"] = jnp.asarray(self.quantiles, jnp.float32)
        return out["point"], aux

    def _autoregression(self, x: Array) -> Array | None:
        """The linear component ``[B, H, F]`` from the last ``ar_order`` values per series."""
        if self.ar is None:
            return None
        if x.shape[1] < self.ar_order:
            raise ValueError(
                f"inputs must hold at least ar_order={self.ar_order} steps, got {x.shape[1]}"
            )
        lags = jnp.swapaxes(x[:, -self.ar_order :, : self.output_features], 1, 2)  # [B, F, p]
        return jnp.swapaxes(self.ar(lags).astype(jnp.float32), 1, 2)

    def _read_steps(self, h: Array, prev: Array) -> dict[str, Array]:
        """One-step head applied at every state, each relative to its own previous value."""
        b, s = h.shape[:2]
        flat = self._read(h.reshape(b * s, 1, -1), prev.reshape(b * s, -1))
        return {k: v.reshape((b, s) + v.shape[2:]) for k, v in flat.items()}

    def _free_run(self, x: Array, last: Array, kw) -> tuple[dict[str, Array], Array]:
        """Autoregressive forecast: each step's point forecast is the next input."""
        carries, h = self.rnn(x, return_carry=True, **kw)
        first = self._read(h[:, -1:], last)
        # The free run steps the stack in evaluation form whatever the mode: no dropout
        # masks per step, and batch statistics left alone (the history pass moved them).
        frozen = nnx.with_attributes(
            self.rnn, deterministic=True, use_running_average=True, raise_if_not_found=False
        )

        def body(state, _):
            carries, value = state
            carries, y = frozen.step(carries, value)
            step = self._read(y.astype(jnp.float32)[:, None], value)
            return (carries, step["point"][:, 0]), (step, y)

        if self.horizon == 1:
            return first, h[:, -1:]
        init = (carries, first["point"][:, 0])
        _, (rest, hs) = feedback_loop(body, init, length=self.horizon - 1)
        rest = {k: jnp.moveaxis(v[:, :, 0], 0, 1) for k, v in rest.items()}
        out = {k: jnp.concatenate([first[k], rest[k]], axis=1) for k in first}
        return out, jnp.concatenate([h[:, -1:], jnp.moveaxis(hs, 0, 1)], axis=1)


def _build(info: Mapping[str, Any], *, rngs: nnx.Rngs, **kwargs) -> Forecaster:
    """Forecaster for windowed series: ``info["input_features"]`` and ``info["horizon"]``."""
    features = info.get("input_features")
    horizon = kwargs.pop("horizon", info.get("horizon"))
    if not features or not horizon:
        raise ValueError(
            f"forecaster needs dataset info with input_features and horizon, got keys "
            f"{sorted(info)}"
        )
    # None: the dataset's (the options say so, and config.json records them as set).
    if kwargs.get("output_features") is None:
        kwargs["output_features"] = info.get("output_features") or None
    if kwargs.get("seasonal_period") is None and info.get("seasonal_period"):
        kwargs["seasonal_period"] = int(info["seasonal_period"])
    return Forecaster(int(features), int(horizon), rngs=rngs, **kwargs)
