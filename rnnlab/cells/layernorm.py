"""Layer-normalised LSTM and GRU (Ba, Kiros & Hinton 2016, "Layer Normalization").

Layer normalisation re-centres and re-scales each pre-activation vector over its features,
per example and per time step, so the scale of the recurrent input cannot drift from step
to step. It needs no batch statistics, which makes it the normaliser of choice for
recurrences: the same computation runs in training and evaluation, at any batch size.

Ba et al.'s LSTM (their appendix, eq. 20-22) normalises the input and the recurrent halves
of the gate pre-activations separately, and the cell state before the output ``tanh``.
The learnable shifts ``beta`` of the two gate normalisations add to the gate bias ``b``, so
they are folded into it: one bias per gate, as in the unnormalised cells.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.nn import initializers

from rnnlab.cells.base import Array, Carry, Params, RecurrentCell, matmul
from rnnlab.cells.initializers import Initializer, lstm_bias, orthogonal_blocks
from rnnlab.cells.params import gate_params
from rnnlab.cells.registry import register_cell

F32 = jnp.float32


def layer_norm(
    z: Array, scale: Array, bias: Array | None = None, *, groups: int = 1, eps: float = 1e-5
) -> Array:
    """Layer normalisation over the last axis, optionally in ``groups`` equal blocks.

    .. math:: \\mathrm{LN}(z; \\alpha, \\beta) = \\alpha \\odot
        \\frac{z - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta

    with ``mu`` and ``sigma^2`` the mean and (biased) variance of ``z``'s features. With
    ``groups > 1`` each block (for example each gate) gets its own statistics.
    """
    z = z.astype(F32)
    shape = z.shape
    zg = z.reshape(shape[:-1] + (groups, shape[-1] // groups))
    mean = jnp.mean(zg, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(zg - mean), axis=-1, keepdims=True)
    out = ((zg - mean) * jax.lax.rsqrt(var + eps)).reshape(shape) * scale.astype(F32)
    return out if bias is None else out + bias.astype(F32)


def _groups(per_gate: bool, num_gates: int) -> int:
    return num_gates if per_gate else 1


def layernorm_project(
    params: Params, x: Array, dtype, groups: int = 1, bias: str = "bias"
) -> Array:
    """Input half of the gates: ``LN(x W_ih; alpha_x) + b`` (float32, ``[..., G*H]``).

    ``bias`` names the added bias: ``"bias"`` for the LSTM, ``"bias_ih"`` for the GRU, whose
    recurrent bias stays separate (:func:`layernorm_gru_step`).
    """
    wx = matmul(x, params["kernel_ih"], dtype)
    return layer_norm(wx, params["ln_ih_scale"], params[bias], groups=groups)


def layernorm_lstm_step(
    params: Params, carry: Carry, xp: Array, dtype, groups: int = 1
) -> tuple[Carry, Array]:
    """One layer-normalised LSTM step from ``xp = LN(x_t W_ih) + b``.

    .. math::
        [i, f, g, o] = \\mathrm{LN}(h_{t-1} W_{hh}; \\alpha_h)
            + \\mathrm{LN}(x_t W_{ih}; \\alpha_x) + b, \\\\
        c_t = \\sigma(f) \\odot c_{t-1} + \\sigma(i) \\odot \\tanh(g), \\qquad
        h_t = \\sigma(o) \\odot \\tanh(\\mathrm{LN}(c_t; \\alpha_c, \\beta_c))
    """
    c, h = carry
    z = xp + layer_norm(matmul(h, params["kernel_hh"], dtype), params["ln_hh_scale"], groups=groups)
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(layer_norm(c, params["ln_c_scale"], params["ln_c_bias"]))
    return (c, h), h.astype(dtype)


def layernorm_gru_step(
    params: Params, h: Array, xp: Array, dtype, groups: int = 1
) -> tuple[Array, Array]:
    """One layer-normalised GRU step ("reset after" form, as cuDNN and PyTorch).

    .. math::
        [x_r, x_z, x_n] = \\mathrm{LN}(x_t W_{ih}; \\alpha_x) + b_{ih}, \\quad
        [h_r, h_z, h_n] = \\mathrm{LN}(h_{t-1} W_{hh}; \\alpha_h) + b_{hh}, \\\\
        r_t = \\sigma(x_r + h_r), \\quad z_t = \\sigma(x_z + h_z), \\quad
        n_t = \\tanh(x_n + r_t \\odot h_n), \\\\
        h_t = (1 - z_t) \\odot n_t + z_t \\odot h_{t-1}
    """
    hh = layer_norm(
        matmul(h, params["kernel_hh"], dtype),
        params["ln_hh_scale"],
        params["bias_hh"],
        groups=groups,
    )
    x_r, x_z, x_n = jnp.split(xp, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(hh, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * h_n)
    h = (1.0 - z) * n + z * h
    return h, h.astype(dtype)


class LayerNormLSTMCell(RecurrentCell):
    """LSTM with layer normalisation of the gates and the cell state (Ba et al. 2016).

    .. math::
        [i, f, g, o] = \\mathrm{LN}(h_{t-1} W_{hh}; \\alpha_h)
            + \\mathrm{LN}(x_t W_{ih}; \\alpha_x) + b, \\\\
        c_t = \\sigma(f) \\odot c_{t-1} + \\sigma(i) \\odot \\tanh(g), \\qquad
        h_t = \\sigma(o) \\odot \\tanh(\\mathrm{LN}(c_t; \\alpha_c, \\beta_c))

    Gains start at 1 and shifts at 0; the gate bias follows :class:`~rnnlab.cells.LSTMCell`
    (forget bias 1). Gate order ``(i, f, g, o)``. The input-side normalisation has no time
    dependence, so it belongs to :meth:`project` and is hoisted with the input matmul.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import LayerNormLSTMCell
        >>> cell = LayerNormLSTMCell(3, 8, rngs=nnx.Rngs(0))
        >>> carry, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
        >>> y.shape
        (2, 8)

    Args:
      in_features: input size.
      hidden_features: cell size ``H``.
      per_gate: normalise each gate's block of ``H`` pre-activations on its own (as
        TensorFlow's ``LayerNormBasicLSTMCell``) instead of the whole ``4H`` vector (Ba et
        al.'s equations, the default).
      forget_bias: initial forget-gate bias.
      kernel_init, recurrent_kernel_init: initialisers (recurrent: orthogonal per gate).
      dtype, param_dtype: compute and parameter dtypes; carries stay float32.
      carry_init: initialiser of the carry (zeros by default).
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    param_names = (
        "kernel_ih",
        "kernel_hh",
        "bias",
        "ln_ih_scale",
        "ln_hh_scale",
        "ln_c_scale",
        "ln_c_bias",
    )

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        per_gate: bool = False,
        forget_bias: float = 1.0,
        kernel_init: Initializer = initializers.lecun_normal(),
        recurrent_kernel_init: Initializer = orthogonal_blocks(4),
        dtype=None,
        param_dtype=F32,
        carry_init: Initializer | None = None,
        rngs: nnx.Rngs,
    ):
        self.set_features(in_features, hidden_features, dtype, param_dtype, carry_init)
        self.per_gate = bool(per_gate)
        h4 = 4 * hidden_features
        self.kernel_ih, self.kernel_hh, self.bias = gate_params(
            rngs,
            input_shape=(in_features,),
            recurrent_shape=(hidden_features,),
            width=h4,
            kernel_init=kernel_init,
            recurrent_kernel_init=recurrent_kernel_init,
            bias_init=lstm_bias(hidden_features, forget_bias),
            param_dtype=param_dtype,
            bias_keys=False,
        )
        self.ln_ih_scale = nnx.Param(jnp.ones((h4,), param_dtype))
        self.ln_hh_scale = nnx.Param(jnp.ones((h4,), param_dtype))
        self.ln_c_scale = nnx.Param(jnp.ones((hidden_features,), param_dtype))
        self.ln_c_bias = nnx.Param(jnp.zeros((hidden_features,), param_dtype))

    def carry_sizes(self) -> tuple[int, ...]:
        return (self.hidden_features, self.hidden_features)

    def project(self, params: Params, x: Array) -> Array:
        groups = _groups(self.per_gate, 4)
        return layernorm_project(params, x, self.compute_dtype, groups)

    def step_with(self, params: Params, carry: Carry, xp: Array) -> tuple[Carry, Array]:
        groups = _groups(self.per_gate, 4)
        return layernorm_lstm_step(params, carry, xp, self.compute_dtype, groups)


class LayerNormGRUCell(RecurrentCell):
    """GRU with layer-normalised input and recurrent pre-activations (after Ba et al. 2016).

    .. math::
        [x_r, x_z, x_n] = \\mathrm{LN}(x_t W_{ih}; \\alpha_x) + b_{ih}, \\quad
        [h_r, h_z, h_n] = \\mathrm{LN}(h_{t-1} W_{hh}; \\alpha_h) + b_{hh}, \\\\
        r_t = \\sigma(x_r + h_r), \\quad z_t = \\sigma(x_z + h_z), \\quad
        n_t = \\tanh(x_n + r_t \\odot h_n), \\quad
        h_t = (1 - z_t) \\odot n_t + z_t \\odot h_{t-1}

    Ba et al. give the normalised recurrence for a generic ``W_hh h + W_xh x``; applied to
    the GRU it normalises each matrix product, here in the "reset after" form of
    :class:`~rnnlab.cells.GRUCell`, so the reset gate scales the normalised ``h_n``. The
    recurrent bias ``b_hh`` stays separate because ``b_hn`` sits inside the reset product.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import LayerNormGRUCell
        >>> cell = LayerNormGRUCell(3, 8, rngs=nnx.Rngs(0))
        >>> h, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
        >>> y.shape
        (2, 8)

    Args are those of :class:`LayerNormLSTMCell` without ``forget_bias``.
    """

    param_names = ("kernel_ih", "kernel_hh", "bias_ih", "bias_hh", "ln_ih_scale", "ln_hh_scale")

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        per_gate: bool = False,
        kernel_init: Initializer = initializers.lecun_normal(),
        recurrent_kernel_init: Initializer = orthogonal_blocks(3),
        dtype=None,
        param_dtype=F32,
        carry_init: Initializer | None = None,
        rngs: nnx.Rngs,
    ):
        self.set_features(in_features, hidden_features, dtype, param_dtype, carry_init)
        self.per_gate = bool(per_gate)
        h3 = 3 * hidden_features
        self.kernel_ih, self.kernel_hh, self.bias_ih, self.bias_hh = gate_params(
            rngs,
            input_shape=(in_features,),
            recurrent_shape=(hidden_features,),
            width=h3,
            kernel_init=kernel_init,
            recurrent_kernel_init=recurrent_kernel_init,
            bias_init=initializers.zeros,
            num_biases=2,
            param_dtype=param_dtype,
            bias_keys=False,
        )
        self.ln_ih_scale = nnx.Param(jnp.ones((h3,), param_dtype))
        self.ln_hh_scale = nnx.Param(jnp.ones((h3,), param_dtype))

    def project(self, params: Params, x: Array) -> Array:
        groups = _groups(self.per_gate, 3)
        return layernorm_project(params, x, self.compute_dtype, groups, "bias_ih")

    def step_with(self, params: Params, carry: Carry, xp: Array) -> tuple[Carry, Array]:
        groups = _groups(self.per_gate, 3)
        return layernorm_gru_step(params, carry, xp, self.compute_dtype, groups)


register_cell("layernorm_lstm", LayerNormLSTMCell)
register_cell("layernorm_gru", LayerNormGRUCell)
