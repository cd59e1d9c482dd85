"""sLSTM and mLSTM, the two cells of xLSTM (Beck, Pöppel, Spanring, Auer, Prudnikova, Kopp,
Klambauer, Brandstetter & Hochreiter 2024, "xLSTM: extended long short-term memory").

Both have an exponential input gate ``i_t = exp(~i_t)``, which can overflow, so both carry a
stabiliser ``m_t`` and keep their states scaled by ``exp(-m_t)``:

.. math::
    m_t = \\max(\\log f_t + m_{t-1}, \\tilde i_t), \\quad
    i'_t = \\exp(\\tilde i_t - m_t), \\quad f'_t = \\exp(\\log f_t + m_{t-1} - m_t)

The outputs do not depend on ``m`` (it cancels between the state and its normaliser); only
the range of the exponentials does. Forget gates are sigmoid (``log f = log sigmoid(~f)``),
as in the authors' code.

* :class:`SLSTMCell`: scalar memory with a normaliser state and recurrent connections that
  are block-diagonal over heads (memory mixing within a head). Nonlinear in its state
  (the gates read ``h_{t-1}``): the ``scan`` path.
* :class:`MLSTMCell`: a matrix memory ``C_t = f_t C_{t-1} + i_t v_t k_t^T`` per head, read
  with a query. No ``h_{t-1}`` in the gates, so the recurrence is linear in its state: its
  chunkwise-parallel form runs on the ``parallel`` path (:mod:`rnnlab.layers.chunkwise`).

The oracle is the authors' ``xlstm`` package (``tests/test_cells_xlstm.py``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.nn import initializers

from rnnlab.cells.base import Array, Carry, Params, RecurrentCell, check_positive_int, matmul
from rnnlab.cells.params import init_param
from rnnlab.cells.registry import register_cell

F32 = jnp.float32
EPS = 1e-6  # the authors' guard on the mLSTM normaliser


def _heads(name: str, hidden: int, num_heads: int) -> int:
    check_positive_int(name, num_heads)
    if hidden % num_heads:
        raise ValueError(f"hidden_features={hidden} must be divisible by {name}={num_heads}")
    return hidden // num_heads


def forget_bias_init(low: float = 3.0, high: float = 6.0):
    """Forget-gate biases spread linearly over ``[low, high]`` (xLSTM's default), so the
    cells start remembering over ``1 / (1 - sigmoid(b))`` of about 20 to 400 steps."""

    def init(key, shape, dtype=F32):
        del key
        return jnp.linspace(low, high, shape[-1], dtype=F32).astype(dtype)

    return init


def stabilised_gates(i_pre: Array, f_pre: Array, m: Array) -> tuple[Array, Array, Array]:
    """``(i', f', m_t)`` of the stabilised exponential gating (Beck et al. 2024, eq. 15-17)."""
    log_f = jax.nn.log_sigmoid(f_pre)
    m_new = jnp.maximum(log_f + m, i_pre)
    return jnp.exp(i_pre - m_new), jnp.exp(log_f + m - m_new), m_new


class SLSTMCell(RecurrentCell):
    """sLSTM (Beck et al. 2024): exponential gating, a normaliser and block-diagonal heads.

    .. math::
        [\\tilde i, \\tilde f, \\tilde z, \\tilde o] = x_t W + h_{t-1} R + b, \\quad
        R = \\mathrm{blockdiag}(R_1, \\dots, R_K), \\\\
        c_t = f'_t c_{t-1} + i'_t \\tanh(\\tilde z), \\quad n_t = f'_t n_{t-1} + i'_t, \\quad
        h_t = \\sigma(\\tilde o) \\odot c_t / n_t

    with the stabilised gates ``i'``, ``f'`` of :func:`stabilised_gates`. Gate order and the
    head layout of ``R`` (``[K, d, 4d]``, gate-major within a head) follow the authors' code.
    The carry is ``(c, n, m, h)``, all float32.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import SLSTMCell
        >>> cell = SLSTMCell(3, 8, num_heads=2, rngs=nnx.Rngs(0))
        >>> carry, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
        >>> y.shape
        (2, 8)
    """

    param_names = ("kernel_ih", "kernel_hh", "bias")

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        num_heads: int = 1,
        dtype=None,
        param_dtype=F32,
        rngs: nnx.Rngs,
    ):
        self.set_features(in_features, hidden_features, dtype, param_dtype)
        self.num_heads = num_heads
        d = _heads("num_heads", hidden_features, num_heads)
        h = hidden_features
        # The input kernel spans every head: [in, 4H], gate-major ([i | f | z | o]); the
        # recurrent one is one [d, 4d] block per head.
        lecun = initializers.lecun_normal()
        self.kernel_ih = init_param(lecun, rngs.params(), (in_features, 4 * h), param_dtype)
        block = (num_heads, d, 4 * d)
        self.kernel_hh = init_param(lecun, rngs.params(), block, param_dtype)
        zeros = jnp.zeros((h,), F32)
        forget = forget_bias_init()(None, (h,))
        self.bias = nnx.Param(jnp.concatenate([zeros, forget, zeros, zeros]).astype(param_dtype))

    def carry_sizes(self) -> tuple[int, ...]:
        return (self.hidden_features,) * 4

    def project(self, params: Params, x: Array) -> Array:
        return matmul(x, params["kernel_ih"], self.compute_dtype) + params["bias"].astype(F32)

    def recurrent(self, params: Params, h: Array) -> Array:
        """``h R`` with ``R`` block-diagonal over heads, laid out gate-major ``[..., 4H]``."""
        k = self.num_heads
        hh = h.reshape(h.shape[:-1] + (k, -1)).astype(self.compute_dtype)
        r = params["kernel_hh"].astype(self.compute_dtype)
        out = jnp.einsum("...ki,kij->...kj", hh, r, preferred_element_type=F32)
        out = out.reshape(out.shape[:-1] + (4, -1))  # [..., K, 4, d]
        return jnp.swapaxes(out, -3, -2).reshape(h.shape[:-1] + (-1,))

    def step_with(self, params: Params, carry: Carry, xp: Array) -> tuple[Carry, Array]:
        c, n, m, h = carry
        z = xp + self.recurrent(params, h)
        i_pre, f_pre, z_pre, o_pre = jnp.split(z, 4, axis=-1)
        i, f, m = stabilised_gates(i_pre, f_pre, m)
        c = f * c + i * jnp.tanh(z_pre)
        n = f * n + i
        h = jax.nn.sigmoid(o_pre) * c / n
        return (c, n, m, h), h.astype(self.compute_dtype)


class MLSTMCell(RecurrentCell):
    """mLSTM (Beck et al. 2024): a matrix memory per head, read by a query.

    .. math::
        q_t = x_t W_q, \\quad k_t = x_t W_k / \\sqrt{d}, \\quad v_t = x_t W_v, \\quad
        [\\tilde i_t, \\tilde f_t] = x_t W_{if} + b_{if} \\text{ (one each per head)}, \\\\
        C_t = f'_t C_{t-1} + i'_t \\, k_t v_t^T, \\quad n_t = f'_t n_{t-1} + i'_t k_t, \\\\
        h_t = \\sigma(x_t W_o + b_o) \\odot
        \\frac{C_t^T q_t}{\\max(|n_t^T q_t|, \\exp(-m_t)) + \\epsilon}

    (``C`` stored ``[key, value]`` as in the authors' code; unstabilised, the denominator is
    ``max(|n^T q|, 1)``.) The carry is ``(C [*batch, K, d, d], n [*batch, K, d],
    m [*batch, K])``. The gates read the input only, so the memory is linear in its state
    and :func:`rnnlab.layers.chunkwise.mlstm_chunkwise` computes a whole sequence in chunks:
    quadratic attention-like products within a chunk and the recurrence between chunks.
    This cell is the memory itself, without the xLSTM block's up-projection, convolution
    and head norm.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import MLSTMCell
        >>> cell = MLSTMCell(3, 8, num_heads=2, rngs=nnx.Rngs(0))
        >>> carry, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
        >>> y.shape, carry[0].shape
        ((2, 8), (2, 2, 4, 4))
    """

    param_names = ("kernel_qkv", "kernel_if", "bias_if", "kernel_o", "bias_o")
    chunkwise = True  # the layers run it with rnnlab.layers.chunkwise on the parallel path

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        num_heads: int = 1,
        chunk_size: int = 64,
        dtype=None,
        param_dtype=F32,
        rngs: nnx.Rngs,
    ):
        self.set_features(in_features, hidden_features, dtype, param_dtype)
        self.num_heads = num_heads
        self.head_size = _heads("num_heads", hidden_features, num_heads)
        self.chunk_size = check_positive_int("chunk_size", chunk_size)
        lecun, h, k = initializers.lecun_normal(), hidden_features, num_heads
        self.kernel_qkv = init_param(lecun, rngs.params(), (in_features, 3 * h), param_dtype)
        self.kernel_if = init_param(
            initializers.normal(0.02), rngs.params(), (in_features, 2 * k), param_dtype
        )
        bias = jnp.concatenate([jnp.zeros((k,), F32), forget_bias_init()(None, (k,))])
        self.bias_if = nnx.Param(bias.astype(param_dtype))
        self.kernel_o = init_param(lecun, rngs.params(), (in_features, h), param_dtype)
        self.bias_o = nnx.Param(jnp.zeros((h,), param_dtype))

    def carry_sizes(self) -> tuple[int, ...]:
        self.no_vector_carry("(C [K, d, d], n [K, d], m [K])")

    def initialize_carry(self, input_shape, rngs=None, carry_init=None) -> Carry:
        """Zero ``(C [*batch, K, d, d], n [*batch, K, d], m [*batch, K])`` in float32."""
        if carry_init is not None:
            raise ValueError("carry_init is not supported by MLSTMCell; pass initial_carry")
        batch, k, d = tuple(input_shape[:-1]), self.num_heads, self.head_size
        return (
            jnp.zeros(batch + (k, d, d), F32),
            jnp.zeros(batch + (k, d), F32),
            jnp.zeros(batch + (k,), F32),
        )

    def project(self, params: Params, x: Array) -> Array:
        """``[q, k, v, ~i, ~f, ~o]`` (float32, ``[..., 4H + 2K]``)."""
        dtype = self.compute_dtype
        qkv = matmul(x, params["kernel_qkv"], dtype)
        gates = matmul(x, params["kernel_if"], dtype) + params["bias_if"].astype(F32)
        o = matmul(x, params["kernel_o"], dtype) + params["bias_o"].astype(F32)
        return jnp.concatenate([qkv, gates, o], axis=-1)

    def split(self, xp: Array):
        """``(q, k, v, ~i, ~f, ~o)`` with ``q, k, v`` as ``[..., K, d]``, ``k`` scaled."""
        h, k, d = self.hidden_features, self.num_heads, self.head_size
        q, key, v, i_pre, f_pre, o = jnp.split(xp, [h, 2 * h, 3 * h, 3 * h + k, 3 * h + 2 * k], -1)
        heads = lambda z: z.reshape(z.shape[:-1] + (k, d))  # noqa: E731
        return heads(q), heads(key) / math.sqrt(d), heads(v), i_pre, f_pre, o

    def readout(self, o_pre: Array, numerator: Array, qn: Array, m: Array) -> Array:
        """``sigmoid(~o) * num / (max(|n^T q|, exp(-m)) + eps)``, heads merged."""
        h = numerator / (jnp.maximum(jnp.abs(qn), jnp.exp(-m)) + EPS)[..., None]
        h = h.reshape(h.shape[:-2] + (-1,))
        return (jax.nn.sigmoid(o_pre) * h).astype(self.compute_dtype)

    def step_with(self, params: Params, carry: Carry, xp: Array) -> tuple[Carry, Array]:
        c, n, m = carry
        q, k, v, i_pre, f_pre, o_pre = self.split(xp)
        i, f, m = stabilised_gates(i_pre, f_pre, m)
        c = f[..., None, None] * c + i[..., None, None] * (k[..., :, None] * v[..., None, :])
        n = f[..., None] * n + i[..., None] * k
        numerator = jnp.einsum("...kd,...kde->...ke", q, c)
        qn = jnp.einsum("...kd,...kd->...k", q, n)
        return (c, n, m), self.readout(o_pre, numerator, qn, m)


register_cell("slstm", SLSTMCell)
register_cell("mlstm", MLSTMCell)
