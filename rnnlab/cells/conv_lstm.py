"""Convolutional LSTM (Shi, Chen, Wang, Yeung, Wong & Woo 2015).

The LSTM's matrix products become 2-D convolutions, so inputs, cell states and hidden states
are feature maps ``[H, W, C]`` (``num_feature_axes == 3``) and the state keeps the spatial
layout of the frames it summarises.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.nn import initializers

from rnnlab import target
from rnnlab.cells.base import CARRY_DTYPE, Array, Carry, Params, RecurrentCell, check_positive_int
from rnnlab.cells.initializers import Initializer, lstm_bias
from rnnlab.cells.params import gate_params
from rnnlab.cells.registry import register_cell

F32 = jnp.float32


def default_conv_method() -> str:
    """``"im2col"`` on CPU, ``"xla"`` elsewhere.

    Inside the backward pass of a time loop, XLA's CPU convolution measured about 8x slower
    than the same correlation written as one matmul over unfolded patches (ConvLSTM, 16
    frames of 12x12x4, 16 channels, kernel 3: 336 ms against 42 ms per gradient of a
    10-step layer; see docs/models.md). GPUs and TPUs have fast convolutions.
    """
    return "im2col" if target.platform() == "cpu" else "xla"


def conv2d(x: Array, kernel: Array, dtype, method: str | None = None) -> Array:
    """'SAME' 2-D correlation of ``x`` ``[..., H, W, C_in]`` with ``kernel`` ``[kh, kw, C_in,
    C_out]``, any number of leading axes, computed in ``dtype`` with a float32 result.

    ``method``: ``"xla"`` (``lax.conv_general_dilated``), ``"im2col"`` (unfold the
    ``kh x kw`` neighbourhoods, then one matmul) or ``None`` (:func:`default_conv_method`).
    """
    method = method or default_conv_method()
    kh, kw = kernel.shape[:2]
    if method == "im2col":
        h, w = x.shape[-3], x.shape[-2]
        pads = [(0, 0)] * (x.ndim - 3) + [(kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)]
        padded = jnp.pad(x.astype(dtype), pads)
        cols = [padded[..., i : i + h, j : j + w, :] for i in range(kh) for j in range(kw)]
        flat_kernel = kernel.reshape(-1, kernel.shape[-1]).astype(dtype)
        return jnp.matmul(jnp.concatenate(cols, axis=-1), flat_kernel, preferred_element_type=F32)
    if method != "xla":
        raise ValueError(f"method must be 'xla', 'im2col' or None, got {method!r}")
    lead = x.shape[:-3]
    flat = x.reshape((-1,) + x.shape[-3:]).astype(dtype)
    y = jax.lax.conv_general_dilated(
        flat,
        kernel.astype(dtype),
        window_strides=(1, 1),
        padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        preferred_element_type=F32,
    )
    return y.reshape(lead + y.shape[1:])


def conv_lstm_project(params: Params, x: Array, dtype) -> Array:
    """Input half of the gate pre-activations: ``W_x * X + b`` (``[..., H, W, 4C]``)."""
    return conv2d(x, params["kernel_ih"], dtype) + params["bias"].astype(F32)


def conv_lstm_step(params: Params, carry: Carry, xp: Array, dtype) -> tuple[Carry, Array]:
    """One ConvLSTM step from ``xp = W_x * X_t + b`` (``*``: convolution, ``∘``: Hadamard).

    .. math::
        i_t = \\sigma(W_{xi} * X_t + W_{hi} * H_{t-1} + W_{ci} \\circ C_{t-1} + b_i) \\\\
        f_t = \\sigma(W_{xf} * X_t + W_{hf} * H_{t-1} + W_{cf} \\circ C_{t-1} + b_f) \\\\
        C_t = f_t \\circ C_{t-1} + i_t \\circ \\tanh(W_{xc} * X_t + W_{hc} * H_{t-1} + b_c) \\\\
        o_t = \\sigma(W_{xo} * X_t + W_{ho} * H_{t-1} + W_{co} \\circ C_t + b_o) \\\\
        H_t = o_t \\circ \\tanh(C_t)

    The peephole terms ``W_c.`` are present only when ``params`` holds ``peephole``
    (``[H, W, 3C]``, ordered i, f, o). Gate order in the fused kernels is (i, f, g, o) as in
    :class:`rnnlab.cells.LSTMCell`.
    """
    c, h = carry
    z = xp + conv2d(h, params["kernel_hh"], dtype)
    i, f, g, o = jnp.split(z, 4, axis=-1)
    if "peephole" in params:
        w_i, w_f, w_o = jnp.split(params["peephole"].astype(F32), 3, axis=-1)
        i, f = i + w_i * c, f + w_f * c
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    if "peephole" in params:
        o = o + w_o * c
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h.astype(dtype)


class ConvLSTMCell(RecurrentCell):
    """ConvLSTM cell over frames ``[*batch, H, W, in_features]``.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import rnnlab
        >>> from rnnlab.cells import ConvLSTMCell
        >>> layer = rnnlab.RNN(ConvLSTMCell(1, 8, kernel_size=3, rngs=nnx.Rngs(0)))
        >>> layer(jnp.ones((2, 5, 16, 16, 1))).shape   # [batch, time, H, W, C]
        (2, 5, 16, 16, 8)

    Args:
      in_features: input channels.
      hidden_features: hidden (and cell) channels.
      kernel_size: odd spatial size of the input and recurrent kernels (int or pair).
      spatial_shape: ``(H, W)``; required with ``peephole`` (its weights are per position,
        as in the paper).
      peephole: add the Hadamard peephole terms of Shi et al. (off by default, as in most
        implementations, so the cell works on frames of any size).
      forget_bias: initial forget-gate bias.
      dtype, param_dtype, rngs: as for :class:`rnnlab.cells.LSTMCell`.
    """

    param_names = ("kernel_ih", "kernel_hh", "bias", "peephole")

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        kernel_size: int | tuple[int, int] = 3,
        spatial_shape: tuple[int, int] | None = None,
        peephole: bool = False,
        forget_bias: float = 1.0,
        kernel_init: Initializer = initializers.lecun_normal(),
        recurrent_kernel_init: Initializer = initializers.lecun_normal(),
        dtype=None,
        param_dtype=F32,
        rngs: nnx.Rngs,
    ):
        self.in_features = check_positive_int("in_features", in_features)
        self.hidden_features = check_positive_int("hidden_features", hidden_features)
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(ks) != 2 or any(isinstance(k, bool) or k < 1 or k % 2 == 0 for k in ks):
            raise ValueError(
                f"kernel_size must be an odd positive int or pair, got {kernel_size!r}"
            )
        if peephole and spatial_shape is None:
            raise ValueError("spatial_shape (H, W) must be given when peephole=True, got None")
        self.kernel_size, self.spatial_shape = ks, spatial_shape
        self.dtype, self.param_dtype = dtype, param_dtype
        hid = hidden_features
        self.kernel_ih, self.kernel_hh, self.bias = gate_params(
            rngs,
            input_shape=ks + (in_features,),
            recurrent_shape=ks + (hid,),
            width=4 * hid,
            kernel_init=kernel_init,
            recurrent_kernel_init=recurrent_kernel_init,
            bias_init=lstm_bias(hid, forget_bias, None),
            param_dtype=param_dtype,
        )
        self.peephole = (
            nnx.Param(jnp.zeros(tuple(spatial_shape) + (3 * hid,), param_dtype))
            if peephole
            else None
        )

    @property
    def num_feature_axes(self) -> int:
        return 3

    def project(self, params: Params, x: Array) -> Array:
        return conv_lstm_project(params, x, self.compute_dtype)

    def step_with(self, params: Params, carry: Carry, xp: Array) -> tuple[Carry, Array]:
        return conv_lstm_step(params, carry, xp, self.compute_dtype)

    def initialize_carry(
        self, input_shape: tuple[int, ...], rngs: nnx.Rngs | None = None, carry_init=None
    ) -> Carry:
        """Zero float32 ``(c, h)``, each ``[*batch, H, W, hidden_features]``, for inputs of shape
        ``[*batch, H, W, in_features]``."""
        del rngs, carry_init
        if len(input_shape) < 3:
            raise ValueError(f"input_shape must be [*batch, H, W, C], got {tuple(input_shape)}")
        shape = tuple(input_shape[:-1]) + (self.hidden_features,)
        return jnp.zeros(shape, CARRY_DTYPE), jnp.zeros(shape, CARRY_DTYPE)

    def check_inputs(self, x: Array) -> None:
        super().check_inputs(x)
        if self.spatial_shape is not None and tuple(x.shape[-3:-1]) != tuple(self.spatial_shape):
            raise ValueError(
                f"inputs spatial shape must equal spatial_shape={tuple(self.spatial_shape)}, "
                f"got {tuple(x.shape[-3:-1])}"
            )


register_cell("conv_lstm", ConvLSTMCell)
