"""Linear recurrences: LRU (Orvieto et al. 2023), minGRU and minLSTM (Feng et al. 2024).

Each is ``h_t = a_t * h_{t-1} + b_t`` with ``a_t`` and ``b_t`` functions of the input alone,
followed by a readout ``y_t = r(h_t, x_t)``. Because the state enters linearly, the whole
sequence can be solved time-parallel with an associative scan
(:class:`rnnlab.layers.LinearRecurrence`); the cells here also follow the per-step
contract, so they run in :class:`rnnlab.RNN` for sampling, streaming and diagnostics.

A linear cell splits its maths three ways, all of which work on any leading dimensions:
``project(params, x) -> xp`` (every input-side matmul), ``coefficients(params, xp) -> (a, b)``
and ``readout(params, h, xp) -> y``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.nn import initializers

from rnnlab.cells.base import Array, Carry, Params, RecurrentCell, check_positive_int, matmul
from rnnlab.cells.initializers import Initializer
from rnnlab.cells.params import gate_params, init_param
from rnnlab.cells.registry import register_cell

F32 = jnp.float32
C64 = jnp.complex64


class LinearRecurrentCell(RecurrentCell):
    """Base class of cells with ``h_t = a_t * h_{t-1} + b_t``, ``(a_t, b_t)`` from ``x_t``."""

    state_dtype = F32

    def coefficients(self, params: Params, xp: Array) -> tuple[Array, Array]:
        """``(a_t, b_t)`` of the recurrence from projected inputs (any leading dims)."""
        raise NotImplementedError

    def readout(self, params: Params, h: Array, xp: Array) -> Array:
        """Output ``y_t`` from the state ``h_t`` and the projected input."""
        return h.astype(self.compute_dtype)

    def step_with(self, params: Params, carry: Carry, xp: Array) -> tuple[Carry, Array]:
        a, b = self.coefficients(params, xp)
        h = a * carry + b
        return h, self.readout(params, h, xp)

    def initialize_carry(
        self, input_shape: tuple[int, ...], rngs: nnx.Rngs | None = None, carry_init=None
    ) -> Carry:
        """Zero state ``[*batch, hidden_features]`` in the cell's state dtype."""
        if carry_init is not None:
            raise ValueError("carry_init is not supported by linear cells; pass initial_carry")
        batch = tuple(input_shape[: len(input_shape) - self.num_feature_axes])
        return jnp.zeros(batch + (self.hidden_features,), self.state_dtype)


# -- LRU --------------------------------------------------------------------------------------


def lru_init_eigenvalues(
    key, size: int, r_min: float = 0.0, r_max: float = 1.0, max_phase: float = 2 * math.pi
) -> tuple[Array, Array, Array]:
    """``(nu_log, theta_log, gamma_log)`` for eigenvalues uniform on a ring (Orvieto et al.).

    ``|lambda|`` is drawn so that ``lambda`` is uniform on the ring
    ``r_min <= |lambda| <= r_max`` with phase in ``[0, max_phase]``;
    ``gamma = sqrt(1 - |lambda|^2)`` normalises the input so the state keeps unit
    variance for white-noise input, however close ``|lambda|`` is to 1.
    """
    k1, k2 = jax.random.split(key)
    u1 = jax.random.uniform(k1, (size,), F32)
    u2 = jax.random.uniform(k2, (size,), F32)
    nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
    theta_log = jnp.log(max_phase * u2)
    magnitude = jnp.exp(-jnp.exp(nu_log))
    gamma_log = jnp.log(jnp.sqrt(1.0 - jnp.square(magnitude)))
    return nu_log, theta_log, gamma_log


def lru_eigenvalues(params: Params) -> Array:
    """``lambda = exp(-exp(nu_log) + i exp(theta_log))``: ``|lambda| < 1`` for any ``nu_log``."""
    magnitude = jnp.exp(-jnp.exp(params["nu_log"].astype(F32)))
    phase = jnp.exp(params["theta_log"].astype(F32))
    return jax.lax.complex(magnitude * jnp.cos(phase), magnitude * jnp.sin(phase))


class LRUCell(LinearRecurrentCell):
    """Linear recurrent unit (Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De 2023).

    .. math::
        \\lambda = \\exp(-\\exp(\\nu) + i \\exp(\\theta)), \\qquad
        x_t = \\lambda \\odot x_{t-1} + \\gamma \\odot (B u_t), \\qquad
        y_t = \\mathrm{Re}(C x_t) + D u_t

    with a complex diagonal state ``x_t`` (``hidden_features`` = ``N``), complex ``B`` and
    ``C`` and ``gamma`` initialised to ``sqrt(1 - |lambda|^2)`` and trained (``gamma_log``),
    as in the authors' code. The exponential parametrisation keeps ``|lambda| < 1`` for every
    parameter value, so the recurrence cannot blow up. ``D`` is diagonal (the paper's) when
    ``out_features == in_features`` and a dense ``[in, out]`` matrix otherwise.

    The LRU is linear from input to output; Orvieto et al. put a position-wise nonlinearity
    after it in every block (their Fig. 1). ``glu=True`` applies theirs, a gated linear unit
    ``y <- (y W_a + b_a) * sigmoid(y W_b + b_b)``, in the readout, so stacking LRU cells in
    :class:`rnnlab.StackedRNN` gives the stack of LRU blocks (without the normalisation and
    the residual connection). The recurrence stays linear, so it still trains time-parallel.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import LRUCell
        >>> cell = LRUCell(3, 16, out_features=3, rngs=nnx.Rngs(0))
        >>> h, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
        >>> h.dtype, y.shape
        (dtype('complex64'), (2, 3))

    Args:
      in_features: input size ``H_in``.
      hidden_features: complex state size ``N``.
      out_features: output size (default ``hidden_features``).
      r_min, r_max, max_phase: eigenvalue ring at initialisation (the paper uses 0.9, 0.999
        and ``pi / 10`` on long-range tasks).
      glu: gated linear unit on the output (see above).
      dtype, param_dtype: compute and parameter dtypes; the state is complex64.
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    param_names = (
        "nu_log",
        "theta_log",
        "gamma_log",
        "B_re",
        "B_im",
        "C_re",
        "C_im",
        "D",
        "glu_kernel",
        "glu_bias",
    )
    state_dtype = C64

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        out_features: int | None = None,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 2 * math.pi,
        glu: bool = False,
        dtype=None,
        param_dtype=F32,
        rngs: nnx.Rngs,
    ):
        self.set_features(in_features, hidden_features, dtype, param_dtype)
        self.glu = bool(glu)
        self.out_features = check_positive_int("out_features", out_features or hidden_features)
        if not 0.0 <= r_min < r_max <= 1.0:
            raise ValueError(f"need 0 <= r_min < r_max <= 1, got r_min={r_min}, r_max={r_max}")
        n, h_in, h_out = hidden_features, in_features, self.out_features
        nu, theta, gamma = lru_init_eigenvalues(rngs.params(), n, r_min, r_max, max_phase)
        self.nu_log = nnx.Param(nu.astype(param_dtype))
        self.theta_log = nnx.Param(theta.astype(param_dtype))
        self.gamma_log = nnx.Param(gamma.astype(param_dtype))
        b_init = initializers.normal(1.0 / math.sqrt(2 * h_in))
        c_init = initializers.normal(1.0 / math.sqrt(n))
        self.B_re = init_param(b_init, rngs.params(), (h_in, n), param_dtype)
        self.B_im = init_param(b_init, rngs.params(), (h_in, n), param_dtype)
        self.C_re = init_param(c_init, rngs.params(), (n, h_out), param_dtype)
        self.C_im = init_param(c_init, rngs.params(), (n, h_out), param_dtype)
        d_shape = (h_in,) if h_in == h_out else (h_in, h_out)
        d_init = initializers.normal(1.0 if h_in == h_out else 1.0 / math.sqrt(h_in))
        self.D = init_param(d_init, rngs.params(), d_shape, param_dtype)
        lecun = initializers.lecun_normal()
        self.glu_kernel = (
            init_param(lecun, rngs.params(), (h_out, 2 * h_out), param_dtype) if self.glu else None
        )
        self.glu_bias = nnx.Param(jnp.zeros((2 * h_out,), param_dtype)) if self.glu else None

    @property
    def output_features(self) -> int:
        return self.out_features

    def project(self, params: Params, x: Array) -> Array:
        """``[Re(B u), Im(B u), D u]`` (float32, ``[..., 2N + out]``)."""
        dtype = self.compute_dtype
        d = params["D"]
        du = x.astype(F32) * d.astype(F32) if d.ndim == 1 else matmul(x, d, dtype)
        return jnp.concatenate(
            [matmul(x, params["B_re"], dtype), matmul(x, params["B_im"], dtype), du], axis=-1
        )

    def coefficients(self, params: Params, xp: Array) -> tuple[Array, Array]:
        n = self.hidden_features
        gamma = jnp.exp(params["gamma_log"].astype(F32))
        b = jax.lax.complex(gamma * xp[..., :n], gamma * xp[..., n : 2 * n])
        a = jnp.broadcast_to(lru_eigenvalues(params), b.shape)
        return a, b

    def readout(self, params: Params, h: Array, xp: Array) -> Array:
        dtype = self.compute_dtype
        y = matmul(jnp.real(h), params["C_re"], dtype) - matmul(jnp.imag(h), params["C_im"], dtype)
        y = y + xp[..., 2 * self.hidden_features :]
        if "glu_kernel" in params:
            g = matmul(y, params["glu_kernel"], dtype) + params["glu_bias"].astype(F32)
            value, gate = jnp.split(g, 2, axis=-1)
            y = value * jax.nn.sigmoid(gate)
        return y.astype(dtype)


# -- minGRU / minLSTM -------------------------------------------------------------------------


def candidate_g(x: Array) -> Array:
    """``g(x) = x + 0.5`` for ``x >= 0``, ``sigmoid(x)`` otherwise (Feng et al. 2024).

    A positive, continuous candidate; the authors use it so the state can be computed in
    log space. Here the scan is in linear space, and ``g`` is an option.
    """
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


CANDIDATES = {"identity": lambda x: x, "g": candidate_g}


class _MinCell(LinearRecurrentCell):
    """Shared shell of minGRU and minLSTM: one fused input kernel, no recurrent weights."""

    param_names = ("kernel", "bias")
    num_blocks = 1

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        candidate: str = "identity",
        kernel_init: Initializer = initializers.lecun_normal(),
        bias_init: Initializer = initializers.zeros,
        dtype=None,
        param_dtype=F32,
        rngs: nnx.Rngs,
    ):
        if candidate not in CANDIDATES:
            raise ValueError(f"candidate must be one of {sorted(CANDIDATES)}, got {candidate!r}")
        self.set_features(in_features, hidden_features, dtype, param_dtype)
        self.candidate = candidate
        # No recurrent kernel: the gates see the input only.
        self.kernel, self.bias = gate_params(
            rngs,
            input_shape=(in_features,),
            recurrent_shape=None,
            width=self.num_blocks * hidden_features,
            kernel_init=kernel_init,
            bias_init=bias_init,
            param_dtype=param_dtype,
        )

    def project(self, params: Params, x: Array) -> Array:
        return matmul(x, params["kernel"], self.compute_dtype) + params["bias"].astype(F32)


class MinGRUCell(_MinCell):
    """minGRU (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs all we needed?").

    .. math::
        z_t = \\sigma(x_t W_z + b_z), \\quad \\tilde h_t = x_t W_h + b_h, \\quad
        h_t = (1 - z_t) \\odot h_{t-1} + z_t \\odot \\tilde h_t

    The GRU without its reset gate and without ``h_{t-1}`` in the gates, so
    ``a_t = 1 - z_t`` and ``b_t = z_t \\tilde h_t``. ``candidate="g"`` passes
    ``\\tilde h_t`` through :func:`candidate_g` as in the authors' log-space version.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import MinGRUCell
        >>> cell = MinGRUCell(3, 8, rngs=nnx.Rngs(0))
        >>> h, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
        >>> y.shape
        (2, 8)
    """

    num_blocks = 2

    def coefficients(self, params: Params, xp: Array) -> tuple[Array, Array]:
        zp, hp = jnp.split(xp, 2, axis=-1)
        z = jax.nn.sigmoid(zp)
        return 1.0 - z, z * CANDIDATES[self.candidate](hp)


class MinLSTMCell(_MinCell):
    """minLSTM (Feng et al. 2024), with the time-independent normalised gates.

    .. math::
        f_t = \\sigma(x_t W_f + b_f), \\quad i_t = \\sigma(x_t W_i + b_i), \\quad
        \\tilde h_t = x_t W_h + b_h, \\\\
        h_t = \\frac{f_t}{f_t + i_t} \\odot h_{t-1} + \\frac{i_t}{f_t + i_t} \\odot \\tilde h_t

    The normalised weights are computed as ``sigmoid(log sigmoid(f) - log sigmoid(i))``
    and its mirror, which equal ``f / (f + i)`` and ``i / (f + i)`` without the
    cancellation of a ratio of small numbers.
    """

    num_blocks = 3

    def coefficients(self, params: Params, xp: Array) -> tuple[Array, Array]:
        fp, ip, hp = jnp.split(xp, 3, axis=-1)
        log_f, log_i = jax.nn.log_sigmoid(fp), jax.nn.log_sigmoid(ip)
        forget, inp = jax.nn.sigmoid(log_f - log_i), jax.nn.sigmoid(log_i - log_f)
        return forget, inp * CANDIDATES[self.candidate](hp)


register_cell("lru", LRUCell)
register_cell("mingru", MinGRUCell)
register_cell("minlstm", MinLSTMCell)
