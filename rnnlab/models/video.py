"""Next-frame prediction with a ConvLSTM encoder-forecaster (Shi et al. 2015).

::

    frames [B, T_in, H, W, C] --patches--> [B, T_in, H/p, W/p, p*p*C]
      encoder: stacked ConvLSTM over the observed frames -> final states (c, h) per layer
      forecaster: stacked ConvLSTM started from those states, run for T_out steps without
                  input (the paper's unconditioned forecaster)
      1x1 convolution of the top forecaster states -> sigmoid -> un-patch
    -> predicted frames [B, T_out, H, W, C] in [0, 1]

Patching (space-to-depth by ``patch_size``) is the paper's way of letting a small kernel see
far on a large canvas at a fraction of the cost. Pixels are expected in ``[0, 1]``.

The training loss (``loss``) is the per-pixel binary cross-entropy, as Shi et al. used on
moving digits, or the mean squared error. With MSE a predictor of sparse bright digits on a
dark canvas first settles on an empty frame (a wide, flat basin: the digits' pixels are a
small share of the error); cross-entropy weighs a missed bright pixel far more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells.base import check_positive_int
from rnnlab.cells.conv_lstm import ConvLSTMCell
from rnnlab.layers import StackedRNN
from rnnlab.models import Model, register, resolve_dtype
from rnnlab.options import opt

Array = jax.Array


def to_patches(x: Array, p: int) -> Array:
    """Space-to-depth: ``[..., H, W, C] -> [..., H/p, W/p, p*p*C]``."""
    if p == 1:
        return x
    *lead, h, w, c = x.shape
    x = x.reshape(*lead, h // p, p, w // p, p, c)
    x = jnp.moveaxis(x, -4, -3)  # [..., H/p, W/p, p, p, C]
    return x.reshape(*lead, h // p, w // p, p * p * c)


def from_patches(x: Array, p: int) -> Array:
    """Depth-to-space, the inverse of :func:`to_patches`."""
    if p == 1:
        return x
    *lead, hp, wp, cpp = x.shape
    c = cpp // (p * p)
    x = x.reshape(*lead, hp, wp, p, p, c)
    x = jnp.moveaxis(x, -3, -4)  # [..., H/p, p, W/p, p, C]
    return x.reshape(*lead, hp * p, wp * p, c)


@register("video_predictor")
@dataclasses.dataclass(frozen=True)
class VideoPredictorConfig:
    """The options of :class:`VideoPredictor` a config sets (the rest come from the data)."""

    hidden_features: int = opt(32, "channels of every ConvLSTM layer.")
    num_layers: int = opt(2, "depth of the encoder and of the forecaster.")
    kernel_size: int = opt(5, "ConvLSTM kernel size.")
    patch_size: int = opt(2, "space-to-depth factor ``p``.")
    loss: str = opt("bce", '``"bce"`` (per-pixel binary cross-entropy) or ``"mse"``.')
    dtype: Any = opt(None, "VideoPredictor argument dtype")

    def build(self, info: Mapping[str, Any], rngs: nnx.Rngs) -> VideoPredictor:
        """The model for the dataset ``info`` describes, from every option."""
        return _build(info, rngs=rngs, **vars(self))


class VideoPredictor(Model):
    """ConvLSTM encoder-forecaster; see the module docstring.

    Args:
      channels: image channels ``C``.
      frame_shape: ``(H, W)``, divisible by ``patch_size``.
      horizon: frames to predict ``T_out``.
      hidden_features: channels of every ConvLSTM layer.
      num_layers: depth of the encoder and of the forecaster.
      kernel_size: ConvLSTM kernel size.
      patch_size: space-to-depth factor ``p``.
      loss: ``"bce"`` (per-pixel binary cross-entropy) or ``"mse"``.
    """

    def __init__(
        self,
        channels: int,
        frame_shape: tuple[int, int],
        horizon: int,
        *,
        hidden_features: int = 32,
        num_layers: int = 2,
        kernel_size: int = 5,
        patch_size: int = 2,
        loss: str = "bce",
        dtype: Any = None,
        rngs: nnx.Rngs,
    ):
        check_positive_int("channels", channels)
        self.horizon = check_positive_int("horizon", horizon)
        self.patch_size = check_positive_int("patch_size", patch_size)
        if len(frame_shape) != 2 or any(s % patch_size for s in frame_shape):
            raise ValueError(
                f"frame_shape must be (H, W) divisible by patch_size={patch_size}, "
                f"got {tuple(frame_shape)}"
            )
        if loss not in ("bce", "mse"):
            raise ValueError(f"loss must be 'bce' or 'mse', got {loss!r}")
        dtype = resolve_dtype(dtype)
        self.loss = loss
        self.channels, self.frame_shape = channels, tuple(frame_shape)
        features = channels * patch_size * patch_size
        self.patch_features = features
        stack = dict(
            cell=ConvLSTMCell, cell_kwargs={"kernel_size": kernel_size, "dtype": dtype}, rngs=rngs
        )
        self.encoder = StackedRNN(features, hidden_features, num_layers, **stack)
        self.forecaster = StackedRNN(features, hidden_features, num_layers, **stack)
        self.head = nnx.Conv(hidden_features, features, kernel_size=(1, 1), dtype=dtype, rngs=rngs)

    def forward(
        self, batch: Mapping[str, Array], *, rngs: nnx.Rngs | None, carry: Any
    ) -> tuple[Array, dict[str, Any]]:
        """Predicted frames ``[B, horizon, H, W, C]``; aux: ``encoder_carry``, ``hidden`` and,
        with the cross-entropy loss, ``bce_logits`` (the pixels before the sigmoid)."""
        del rngs, carry
        frames = batch["inputs"]
        expected = self.frame_shape + (self.channels,)
        if frames.ndim != 5 or tuple(frames.shape[2:]) != expected:
            raise ValueError(
                f"batch['inputs'] must be frames [B, T, {', '.join(map(str, expected))}], "
                f"got {tuple(frames.shape)}"
            )
        x = to_patches(frames.astype(jnp.float32), self.patch_size)
        states, _ = self.encoder(x, return_carry=True)
        silent = jnp.zeros((x.shape[0], self.horizon) + x.shape[2:], x.dtype)
        h = self.forecaster(silent, initial_carry=states)
        logits = from_patches(self.head(h).astype(jnp.float32), self.patch_size)
        aux = {"encoder_carry": states, "hidden": h}
        if self.loss == "bce":
            aux["bce_logits"] = logits
        return jax.nn.sigmoid(logits), aux


def _build(info: Mapping[str, Any], *, rngs: nnx.Rngs, **kwargs) -> VideoPredictor:
    """Predictor for video data: ``info["frame_shape"]`` ``(H, W, C)`` and ``info["horizon"]``."""
    shape, horizon = info.get("frame_shape"), kwargs.pop("horizon", info.get("horizon"))
    if not shape or not horizon:
        raise ValueError(
            f"video_predictor needs dataset info with frame_shape (H, W, C) and horizon, got "
            f"keys {sorted(info)}"
        )
    h, w, c = (int(s) for s in shape)
    return VideoPredictor(c, (h, w), int(horizon), rngs=rngs, **kwargs)
