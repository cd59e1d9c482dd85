"""Long short-term memory (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.nn import initializers

from rnnlab.cells.base import Array, Carry, Params, RecurrentCell, check_positive_int, matmul
from rnnlab.cells.initializers import Initializer, lstm_bias, orthogonal_blocks
from rnnlab.cells.params import gate_params, init_param

F32 = jnp.float32


def lstm_project(params: Params, x: Array, dtype) -> Array:
    """Input half of the fused gate pre-activations: ``x W_ih + b`` (float32, ``[..., 4H]``)."""
    return matmul(x, params["kernel_ih"], dtype) + params["bias"].astype(F32)


def lstm_gates(z: Array, c: Array, update_mask: Array | None = None) -> tuple[Array, Array]:
    """Gate nonlinearities and state update from fused pre-activations ``z = [i f g o]``.

    .. math::
        c_t = \\sigma(f) \\odot c_{t-1} + \\sigma(i) \\odot \\tanh(g) \\, [\\odot m], \\qquad
        h_t = \\sigma(o) \\odot \\tanh(c_t)

    ``update_mask`` ``m`` drops the candidate update (Semeniuta et al. 2016).
    """
    i, f, g, o = jnp.split(z, 4, axis=-1)
    g = jnp.tanh(g) if update_mask is None else jnp.tanh(g) * update_mask
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * g
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return c, h


def lstm_step(params: Params, carry: Carry, xp: Array, dtype) -> tuple[Carry, Array]:
    """One LSTM step from projected input ``xp = x_t W_ih + b``.

    .. math::
        [i, f, g, o] = x_t W_{ih} + h_{t-1} W_{hh} + b, \\qquad
        h_t \\leftarrow h_t W_{proj} \\text{ (optional, Sak et al. 2014)}

    Gate order ``(i, f, g, o)`` matches PyTorch and cuDNN, so weights import without
    reordering. The carry is ``(c, h)`` in float32, as in Flax.

    Optional mask entries in ``params`` (absent by default; see :mod:`rnnlab.regularizers`):
    ``"recurrent_mask"`` multiplies ``h_{t-1}`` where it enters ``W_hh`` (Gal & Ghahramani
    2016) and ``"update_mask"`` the candidate ``tanh(g)`` (Semeniuta et al. 2016).
    """
    c, h = carry
    h_in = h * params["recurrent_mask"] if "recurrent_mask" in params else h
    z = xp + matmul(h_in, params["kernel_hh"], dtype)
    c, h = lstm_gates(z, c, params.get("update_mask"))
    if "kernel_proj" in params:
        h = matmul(h, params["kernel_proj"], dtype)
    return (c, h), h.astype(dtype)


class LSTMCell(RecurrentCell):
    """LSTM cell with fused gates, forget-gate bias and an optional output projection.

    Gate equations (``W_ih``: ``[in, 4H]``, ``W_hh``: ``[P, 4H]``, one fused bias ``[4H]``):

    .. math::
        i_t = \\sigma(x_t W_{ii} + h_{t-1} W_{hi} + b_i), \\quad
        f_t = \\sigma(x_t W_{if} + h_{t-1} W_{hf} + b_f), \\\\
        g_t = \\tanh(x_t W_{ig} + h_{t-1} W_{hg} + b_g), \\quad
        o_t = \\sigma(x_t W_{io} + h_{t-1} W_{ho} + b_o), \\\\
        c_t = f_t \\odot c_{t-1} + i_t \\odot g_t, \\quad
        h_t = o_t \\odot \\tanh(c_t) \\; [\\, W_{proj} \\,]

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import LSTMCell
        >>> cell = LSTMCell(3, 8, rngs=nnx.Rngs(0))
        >>> carry = cell.initialize_carry((2, 3))
        >>> carry, y = cell(carry, jnp.ones((2, 3)))
        >>> y.shape
        (2, 8)

    Args:
      in_features: input size.
      hidden_features: cell size ``H``.
      proj_features: if set, ``h_t`` is projected to this size (PyTorch's ``proj_size``).
      forget_bias: initial forget-gate bias (Jozefowicz et al. 2015 recommend 1).
      chrono_max_timescale: chrono initialisation of the gate biases (Tallec & Ollivier 2018)
        instead of ``forget_bias``.
      kernel_init, recurrent_kernel_init, bias_init: initialisers; the recurrent default is
        orthogonal per gate block.
      dtype: compute dtype (e.g. ``jnp.bfloat16``); carries stay float32.
      param_dtype: parameter dtype.
      carry_init: initialiser of the carry (zeros by default).
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    param_names = ("kernel_ih", "kernel_hh", "bias", "kernel_proj")
    mask_hooks = ("recurrent_mask", "update_mask")

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        proj_features: int | None = None,
        forget_bias: float = 1.0,
        chrono_max_timescale: float | None = None,
        kernel_init: Initializer = initializers.lecun_normal(),
        recurrent_kernel_init: Initializer = orthogonal_blocks(4),
        bias_init: Initializer | None = None,
        dtype=None,
        param_dtype=F32,
        carry_init: Initializer | None = None,
        rngs: nnx.Rngs,
    ):
        self.set_features(in_features, hidden_features, dtype, param_dtype, carry_init)
        self.proj_features = (
            None if proj_features is None else check_positive_int("proj_features", proj_features)
        )
        hidden, rec = self.hidden_features, self.proj_features or self.hidden_features
        bias_init = bias_init or lstm_bias(hidden, forget_bias, chrono_max_timescale)
        self.kernel_ih, self.kernel_hh, self.bias = gate_params(
            rngs,
            input_shape=(in_features,),
            recurrent_shape=(rec,),
            width=4 * hidden,
            kernel_init=kernel_init,
            recurrent_kernel_init=recurrent_kernel_init,
            bias_init=bias_init,
            param_dtype=param_dtype,
        )
        self.kernel_proj = (
            init_param(kernel_init, rngs.params(), (hidden, rec), param_dtype)
            if self.proj_features
            else None
        )

    @property
    def output_features(self) -> int:
        return self.proj_features or self.hidden_features

    def carry_sizes(self) -> tuple[int, ...]:
        return (self.hidden_features, self.output_features)

    def project(self, params: Params, x: Array) -> Array:
        return lstm_project(params, x, self.compute_dtype)

    def step_with(self, params: Params, carry: Carry, xp: Array) -> tuple[Carry, Array]:
        return lstm_step(params, carry, xp, self.compute_dtype)
