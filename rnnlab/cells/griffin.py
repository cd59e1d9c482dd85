"""The RG-LRU and the Hawk/Griffin recurrent block (De et al. 2024, "Griffin: mixing gated
linear recurrences with local attention for efficient language models").

The real-gated linear recurrent unit is a diagonal linear recurrence whose decay and input
gates read the input only:

.. math::
    r_t = \\sigma(x_t W_a + b_a), \\quad i_t = \\sigma(x_t W_x + b_x), \\quad
    \\log a_t = -c \\, r_t \\odot \\mathrm{softplus}(\\Lambda), \\\\
    h_t = a_t \\odot h_{t-1} + \\sqrt{1 - a_t^2} \\odot (i_t \\odot x_t)

with ``c = 8``, block-diagonal gate matrices (one block per head) and ``a = \\sigma(-\\Lambda)``
initialised so that ``a^c`` lies in ``[0.9, 0.999]``. It is linear in ``h``, so
:class:`RGLRUCell` runs time-parallel. The recurrent block of Hawk and Griffin wraps it:
a GeLU branch, and a branch through a causal temporal convolution of width 4 into the
RG-LRU, multiplied and projected back (:class:`HawkCell`). Its convolution keeps a window of
past inputs in its carry, a shift register: still linear, so the block has its own
time-parallel form (:mod:`rnnlab.layers.convolved`) beside the step-by-step scan.

The oracle is DeepMind's ``recurrentgemma`` (``tests/test_cells_griffin.py``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx
from jax.nn import initializers

from rnnlab.cells.base import Array, Carry, Params, RecurrentCell, check_positive_int, matmul
from rnnlab.cells.linear import LinearRecurrentCell
from rnnlab.cells.params import init_param
from rnnlab.cells.registry import register_cell

F32 = jnp.float32
GATE_SCALE = 8.0  # the paper's c
MAX_SQRT_GRADIENT = 1000.0


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def bounded_sqrt(x: Array, max_gradient: float = MAX_SQRT_GRADIENT) -> Array:
    """``sqrt(x)`` whose derivative is capped at ``max_gradient`` (recurrentgemma's guard:
    ``sqrt(1 - a^2)`` has an unbounded slope as ``a -> 1``)."""
    del max_gradient
    return jnp.sqrt(x)


def _bounded_sqrt_fwd(x, max_gradient):
    return jnp.sqrt(x), x


def _bounded_sqrt_bwd(max_gradient, x, g):
    floor = jnp.asarray(1.0 / (4.0 * max_gradient**2), x.dtype)
    return (g * 0.5 / jnp.sqrt(jnp.maximum(x, floor)),)


bounded_sqrt.defvjp(_bounded_sqrt_fwd, _bounded_sqrt_bwd)


def block_diagonal(x: Array, w: Array, b: Array, dtype) -> Array:
    """``x`` ``[..., K*I]`` through ``K`` independent blocks ``w [K, I, O]`` plus ``b [K, O]``."""
    heads = w.shape[0]
    xh = x.reshape(x.shape[:-1] + (heads, -1)).astype(dtype)
    y = jnp.einsum("...hi,hio->...ho", xh, w.astype(dtype), preferred_element_type=F32)
    y = y + b.astype(F32)
    return y.reshape(x.shape[:-1] + (-1,))


def rglru_a_init(min_rad: float = 0.9, max_rad: float = 0.999):
    """``Lambda`` with ``a^c = sigmoid(-Lambda)^c`` uniform in ``[min_rad^2, max_rad^2]`` in
    squared radius (the authors' ring initialisation, stored through ``softplus``)."""

    def init(key, shape, dtype=F32):
        u = jax.random.uniform(key, shape, F32)
        log_radius = 0.5 * jnp.log(u * (max_rad**2 - min_rad**2) + min_rad**2 + 1e-8)
        return jnp.log(jnp.exp(-log_radius) - 1.0).astype(dtype)

    return init


def rglru_coefficients(a_param: Array, gate_a: Array, gate_x: Array, u: Array):
    """``(a_t, b_t)`` of the RG-LRU from the gate pre-activations and its input ``u``."""
    log_a = -GATE_SCALE * jax.nn.sigmoid(gate_a) * jax.nn.softplus(a_param.astype(F32))
    a = jnp.exp(log_a)
    multiplier = bounded_sqrt(1.0 - jnp.exp(2.0 * log_a))
    return a, multiplier * (jax.nn.sigmoid(gate_x) * u.astype(F32))


def add_rglru_params(cell, width: int, num_heads: int, min_rad: float, param_dtype, rngs):
    """Creates on ``cell`` the gate blocks and decay of one RG-LRU of width ``width``."""
    if width % num_heads:
        raise ValueError(f"width {width} must be divisible by num_heads={num_heads}")
    block = width // num_heads
    w_init = initializers.variance_scaling(1.0, "fan_in", "normal")
    shape = (num_heads, block, block)
    cell.gate_x_kernel = init_param(w_init, rngs.params(), shape, param_dtype)
    cell.gate_x_bias = nnx.Param(jnp.zeros((num_heads, block), param_dtype))
    cell.gate_a_kernel = init_param(w_init, rngs.params(), shape, param_dtype)
    cell.gate_a_bias = nnx.Param(jnp.zeros((num_heads, block), param_dtype))
    cell.a_param = init_param(rglru_a_init(min_rad), rngs.params(), (width,), param_dtype)


RGLRU_PARAMS = ("gate_x_kernel", "gate_x_bias", "gate_a_kernel", "gate_a_bias", "a_param")


class RGLRUCell(LinearRecurrentCell):
    """Real-gated linear recurrent unit (De et al. 2024), time-parallel.

    .. math::
        u_t = x_t [W_{in} + b_{in}], \\quad
        h_t = a_t \\odot h_{t-1} + \\sqrt{1 - a_t^2} \\odot \\sigma(u_t W_x + b_x) \\odot u_t,
        \\quad a_t = \\sigma(-\\Lambda)^{c \\, \\sigma(u_t W_a + b_a)}, \\quad y_t = h_t

    ``W_x``, ``W_a`` are block-diagonal with ``num_heads`` blocks and ``c = 8``. When
    ``in_features != hidden_features`` a dense input map ``W_in`` gives ``u_t`` the cell's
    width (in the Griffin block this is the block's ``linear_x``). Initialisation follows
    recurrentgemma: gate kernels ``N(0, 1/fan_in)``, zero biases, ``a^c`` on the ring
    ``[0.9, 0.999]``.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import RGLRUCell
        >>> cell = RGLRUCell(4, 8, num_heads=2, rngs=nnx.Rngs(0))
        >>> h, y = cell(cell.initialize_carry((2, 4)), jnp.ones((2, 4)))
        >>> y.shape
        (2, 8)
    """

    param_names = ("kernel_in", "bias_in") + RGLRU_PARAMS

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        num_heads: int = 1,
        min_rad: float = 0.9,
        dtype=None,
        param_dtype=F32,
        rngs: nnx.Rngs,
    ):
        self.set_features(in_features, hidden_features, dtype, param_dtype)
        self.num_heads = check_positive_int("num_heads", num_heads)
        if in_features != hidden_features:
            lecun = initializers.lecun_normal()
            shape = (in_features, hidden_features)
            self.kernel_in = init_param(lecun, rngs.params(), shape, param_dtype)
            self.bias_in = nnx.Param(jnp.zeros((hidden_features,), param_dtype))
        else:
            self.kernel_in = self.bias_in = None
        add_rglru_params(self, hidden_features, num_heads, min_rad, param_dtype, rngs)

    def project(self, params: Params, x: Array) -> Array:
        """``[u, u W_x + b_x, u W_a + b_a]`` (float32, ``[..., 3H]``)."""
        dtype = self.compute_dtype
        u = x.astype(F32)
        if "kernel_in" in params:
            u = matmul(x, params["kernel_in"], dtype) + params["bias_in"].astype(F32)
        gx = block_diagonal(u, params["gate_x_kernel"], params["gate_x_bias"], dtype)
        ga = block_diagonal(u, params["gate_a_kernel"], params["gate_a_bias"], dtype)
        return jnp.concatenate([u, gx, ga], axis=-1)

    def coefficients(self, params: Params, xp: Array) -> tuple[Array, Array]:
        u, gx, ga = jnp.split(xp, 3, axis=-1)
        return rglru_coefficients(params["a_param"], ga, gx, u)


class HawkCell(RecurrentCell):
    """The recurrent block of Hawk and Griffin (De et al. 2024, their Fig. 2), as a cell.

    .. math::
        g_t = \\mathrm{GeLU}(x_t W_y + b_y), \\quad u_t = x_t W_x + b_x, \\\\
        v_t = \\textstyle\\sum_{k=0}^{K-1} w_{K-1-k} \\odot u_{t-k} + b_c
        \\quad \\text{(causal temporal convolution, width } K = 4), \\\\
        h_t = \\mathrm{RG\\text{-}LRU}(v_t, h_{t-1}), \\quad
        y_t = (h_t \\odot g_t) W_{out} + b_{out}

    The carry is ``(h, window)``: the RG-LRU state ``[*batch, H]`` and the last ``K - 1``
    convolution inputs ``[*batch, K-1, H]``, so a reset restarts both (recurrentgemma masks
    its convolution at document starts the same way). ``hidden_features`` is the RG-LRU
    width (the paper's ``lru_width``); ``out_features`` defaults to it.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import HawkCell
        >>> cell = HawkCell(4, 8, num_heads=2, rngs=nnx.Rngs(0))
        >>> carry, y = cell(cell.initialize_carry((2, 4)), jnp.ones((2, 4)))
        >>> y.shape, carry[1].shape
        ((2, 8), (2, 3, 8))
    """

    param_names = (
        "kernel_y",
        "bias_y",
        "kernel_x",
        "bias_x",
        "conv_kernel",
        "conv_bias",
        "kernel_out",
        "bias_out",
    ) + RGLRU_PARAMS

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        out_features: int | None = None,
        num_heads: int = 1,
        conv_width: int = 4,
        min_rad: float = 0.9,
        dtype=None,
        param_dtype=F32,
        rngs: nnx.Rngs,
    ):
        self.set_features(in_features, hidden_features, dtype, param_dtype)
        self.out_features = check_positive_int("out_features", out_features or hidden_features)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.conv_width = check_positive_int("conv_width", conv_width)
        h, fan_in = hidden_features, initializers.variance_scaling(1.0, "fan_in", "normal")
        self.kernel_y = init_param(fan_in, rngs.params(), (in_features, h), param_dtype)
        self.bias_y = nnx.Param(jnp.zeros((h,), param_dtype))
        self.kernel_x = init_param(fan_in, rngs.params(), (in_features, h), param_dtype)
        self.bias_x = nnx.Param(jnp.zeros((h,), param_dtype))
        conv_init = initializers.variance_scaling(0.01, "fan_in", "normal")
        self.conv_kernel = init_param(conv_init, rngs.params(), (conv_width, h), param_dtype)
        self.conv_bias = nnx.Param(jnp.zeros((h,), param_dtype))
        out = (h, self.out_features)
        self.kernel_out = init_param(fan_in, rngs.params(), out, param_dtype)
        self.bias_out = nnx.Param(jnp.zeros((self.out_features,), param_dtype))
        add_rglru_params(self, h, num_heads, min_rad, param_dtype, rngs)

    @property
    def output_features(self) -> int:
        return self.out_features

    def carry_sizes(self) -> tuple[int, ...]:
        self.no_vector_carry("(h, window [K-1, H])")

    def initialize_carry(self, input_shape, rngs=None, carry_init=None) -> Carry:
        """Zero ``(h [*batch, H], window [*batch, K-1, H])`` in float32."""
        if carry_init is not None:
            raise ValueError("carry_init is not supported by HawkCell; pass initial_carry")
        batch = tuple(input_shape[:-1])
        h = self.hidden_features
        return jnp.zeros(batch + (h,), F32), jnp.zeros(batch + (self.conv_width - 1, h), F32)

    def project(self, params: Params, x: Array) -> Array:
        """``[GeLU(x W_y + b_y), x W_x + b_x]`` (float32, ``[..., 2H]``)."""
        dtype = self.compute_dtype
        y = jax.nn.gelu(matmul(x, params["kernel_y"], dtype) + params["bias_y"].astype(F32))
        u = matmul(x, params["kernel_x"], dtype) + params["bias_x"].astype(F32)
        return jnp.concatenate([y, u], axis=-1)

    def step_with(self, params: Params, carry: Carry, xp: Array) -> tuple[Carry, Array]:
        h, window = carry
        gate, u = jnp.split(xp, 2, axis=-1)
        taps = jnp.concatenate([window, u[..., None, :]], axis=-2)  # oldest first
        a, b = self.coefficients(params, taps)
        h = a * h + b
        return (h, taps[..., 1:, :]), self.readout(params, h, gate)

    def coefficients(self, params: Params, taps: Array) -> tuple[Array, Array]:
        """``(a_t, b_t)`` of the RG-LRU from the convolution's inputs ``[..., K, H]``."""
        dtype = self.compute_dtype
        v = jnp.sum(taps * params["conv_kernel"].astype(F32), axis=-2)
        v = v + params["conv_bias"].astype(F32)
        gx = block_diagonal(v, params["gate_x_kernel"], params["gate_x_bias"], dtype)
        ga = block_diagonal(v, params["gate_a_kernel"], params["gate_a_bias"], dtype)
        return rglru_coefficients(params["a_param"], ga, gx, v)

    def readout(self, params: Params, h: Array, gate: Array) -> Array:
        """``(h_t * g_t) W_out + b_out`` in the compute dtype."""
        y = matmul(h * gate, params["kernel_out"], self.compute_dtype)
        return (y + params["bias_out"].astype(F32)).astype(self.compute_dtype)


register_cell("rglru", RGLRUCell)
register_cell("hawk", HawkCell)
