"""Penalty terms for the loss: AR, TAR (Merity et al. 2017) and a masked L2 penalty.

All are pure functions returning float32 scalars. Sequence terms respect ``seq_lengths``:
padding steps contribute nothing and the mean runs over valid elements only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from rnnlab.regularizers.config import Regularization

Array = jax.Array
F32 = jnp.float32


def _time_major(h: Array, time_axis: int) -> Array:
    if h.ndim < 2:
        raise ValueError(f"h must be [*batch, time, features], got shape {tuple(h.shape)}")
    return jnp.moveaxis(h.astype(F32), time_axis, 0)


def _step_mask(seq_lengths: Array | None, num_steps: int, batch: tuple[int, ...]) -> Array:
    """``[time, *batch]`` float mask of valid steps."""
    if seq_lengths is None:
        return jnp.ones((num_steps,) + batch, F32)
    if tuple(seq_lengths.shape) != batch:
        raise ValueError(
            f"seq_lengths must have the batch shape {batch}, got {tuple(seq_lengths.shape)}"
        )
    t = jnp.arange(num_steps).reshape((num_steps,) + (1,) * len(batch))
    return (t < seq_lengths.astype(t.dtype)[None]).astype(F32)


def activation_regularization(
    h: Array, seq_lengths: Array | None = None, *, time_axis: int = -2
) -> Array:
    """Mean squared activation over valid steps (AR; Merity et al. 2017).

    .. math:: \\mathrm{AR} = \\frac{1}{N} \\sum_{b} \\sum_{t < L_b} \\lVert h_{b,t} \\rVert_2^2,
       \\qquad N = D \\sum_b L_b

    AWD-LSTM applies it, times ``alpha``, to the *dropped* output of the last layer.

    Args:
      h: ``[*batch, time, features]`` (``time_axis`` names the time axis).
      seq_lengths: int ``[*batch]``; ``None`` means every step is valid.
    """
    h = _time_major(h, time_axis)
    m = _step_mask(seq_lengths, h.shape[0], tuple(h.shape[1:-1]))
    total = jnp.sum(jnp.sum(jnp.square(h), axis=-1) * m)
    return total / jnp.maximum(jnp.sum(m) * h.shape[-1], 1.0)


def temporal_activation_regularization(
    h: Array, seq_lengths: Array | None = None, *, time_axis: int = -2
) -> Array:
    """Mean squared change of the hidden state between valid steps (TAR; Merity et al. 2017).

    .. math:: \\mathrm{TAR} = \\frac{1}{N} \\sum_b \\sum_{1 \\le t < L_b}
       \\lVert h_{b,t} - h_{b,t-1} \\rVert_2^2, \\qquad N = D \\sum_b \\max(L_b - 1, 0)

    AWD-LSTM applies it, times ``beta``, to the *raw* (undropped) output of the last layer.
    """
    h = _time_major(h, time_axis)
    m = _step_mask(seq_lengths, h.shape[0], tuple(h.shape[1:-1]))[1:]
    diff = jnp.sum(jnp.square(h[1:] - h[:-1]), axis=-1)
    return jnp.sum(diff * m) / jnp.maximum(jnp.sum(m) * h.shape[-1], 1.0)


def ar_tar_losses(
    dropped: Array,
    raw: Array,
    reg: Regularization,
    *,
    seq_lengths: Array | None = None,
    time_axis: int = -2,
) -> dict[str, Array]:
    """``{"ar": alpha * AR(dropped), "tar": beta * TAR(raw)}`` for the enabled terms only."""
    out = {}
    if reg.ar > 0:
        out["ar"] = reg.ar * activation_regularization(dropped, seq_lengths, time_axis=time_axis)
    if reg.tar > 0:
        out["tar"] = reg.tar * temporal_activation_regularization(
            raw, seq_lengths, time_axis=time_axis
        )
    return out


def l2_penalty(params: Any, mask: Any | Callable[[Any], Any] | None = None) -> Array:
    """Coupled L2 penalty :math:`\\tfrac12 \\sum_{w \\in M} \\lVert w \\rVert_2^2` to add to a loss.

    Args:
      params: a pytree of arrays (e.g. ``nnx.state(model, nnx.Param)``).
      mask: a pytree of bools with the structure of ``params``, or a callable building one
        from ``params`` (``rnnlab.optim.decay_mask`` spares biases and normalisation
        scales); ``None`` penalises every leaf.

    Multiply by the coefficient yourself; with SGD, ``lambda * l2_penalty`` equals weight
    decay ``lambda``. With adaptive optimisers prefer decoupled decay
    (:func:`rnnlab.optim.decoupled_weight_decay`; Loshchilov & Hutter 2019).
    """
    if callable(mask):
        mask = mask(params)
    leaves = jax.tree.leaves(params)
    flags = [True] * len(leaves) if mask is None else jax.tree.leaves(mask)
    if len(flags) != len(leaves):
        raise ValueError(
            f"mask must have one bool per parameter leaf ({len(leaves)}), got {len(flags)}"
        )
    total = jnp.zeros((), F32)
    for leaf, keep in zip(leaves, flags, strict=True):
        if keep:
            total = total + jnp.sum(jnp.square(leaf.astype(F32)))
    return 0.5 * total
