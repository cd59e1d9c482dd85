"""Mamba's selective state space, S6 (Gu & Dao 2023, "Mamba: linear-time sequence modeling
with selective state spaces", Algorithm 2).

Each of ``D`` channels owns ``N`` states. The step size ``Delta_t`` and the matrices ``B_t``,
``C_t`` are functions of the input (the *selection*), and the continuous system
``h' = A h + B u`` is discretised per step with zero-order hold on ``A`` and Euler on ``B``:

.. math::
    \\Delta_t = \\mathrm{softplus}(u_t W_{\\Delta\\downarrow} W_{\\Delta\\uparrow} + b_\\Delta)
    \\in \\mathbb{R}^D, \\quad B_t = u_t W_B, \\quad C_t = u_t W_C \\in \\mathbb{R}^N, \\\\
    h_t[d, n] = \\exp(\\Delta_t[d] A[d, n]) \\, h_{t-1}[d, n] + \\Delta_t[d] B_t[n] u_t[d],
    \\qquad y_t[d] = \\textstyle\\sum_n C_t[n] h_t[d, n] + D[d] u_t[d]

with ``A = -exp(A_log)`` (so every decay lies in ``(0, 1)``). The recurrence is linear and
diagonal in the ``D x N`` state, so :class:`S6Cell` runs time-parallel through rnnlab's
associative scan. Initialisation follows the reference code: ``A[d, n] = n`` (S4D-real),
``D = 1``, ``Delta`` biased so that ``softplus(b_Delta)`` is log-uniform in
``[0.001, 0.1]``.

The oracle is ``mambapy`` (pure PyTorch; ``tests/test_cells_mamba.py``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.nn import initializers

from rnnlab.cells.base import Array, Carry, Params, check_positive_int, matmul
from rnnlab.cells.linear import LinearRecurrentCell
from rnnlab.cells.params import init_param
from rnnlab.cells.registry import register_cell

F32 = jnp.float32


def dt_bias_init(dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4):
    """``softplus^{-1}`` of step sizes log-uniform in ``[dt_min, dt_max]`` (Gu & Dao 2023)."""

    def init(key, shape, dtype=F32):
        u = jax.random.uniform(key, shape, F32)
        dt = jnp.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = jnp.maximum(dt, floor)
        return (dt + jnp.log(-jnp.expm1(-dt))).astype(dtype)

    return init


def s4d_real_init(key, shape, dtype=F32):
    """``A_log[d, n] = log(n + 1)``: the S4D-real initialisation ``A = -(n + 1)``."""
    del key
    return jnp.broadcast_to(jnp.log(jnp.arange(1, shape[-1] + 1, dtype=F32)), shape).astype(dtype)


class S6Cell(LinearRecurrentCell):
    """Selective state space (S6) of Mamba (Gu & Dao 2023) as a time-parallel cell.

    ``hidden_features`` is the channel count ``D`` (the output size); ``state_size`` is
    ``N`` and ``dt_rank`` the rank of the step-size projection (default ``ceil(D / 16)``).
    When ``in_features != hidden_features`` a dense map ``u_t = x_t W_{in}`` gives the input
    its ``D`` channels (in the Mamba block this is the ``in_proj`` after its convolution).
    The state is the ``D x N`` array flattened to ``[*batch, D * N]``.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import S6Cell
        >>> cell = S6Cell(8, 8, state_size=4, rngs=nnx.Rngs(0))
        >>> h, y = cell(cell.initialize_carry((2, 8)), jnp.ones((2, 8)))
        >>> h.shape, y.shape
        ((2, 32), (2, 8))
    """

    param_names = ("kernel_in", "x_proj", "dt_proj", "dt_bias", "A_log", "D")

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        state_size: int = 16,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dtype=None,
        param_dtype=F32,
        rngs: nnx.Rngs,
    ):
        self.set_features(in_features, hidden_features, dtype, param_dtype)
        d = hidden_features
        self.state_size = check_positive_int("state_size", state_size)
        self.dt_rank = check_positive_int("dt_rank", dt_rank or math.ceil(d / 16))
        n, r = self.state_size, self.dt_rank
        lecun = initializers.lecun_normal()
        self.kernel_in = (
            init_param(lecun, rngs.params(), (in_features, d), param_dtype)
            if in_features != d
            else None
        )
        self.x_proj = init_param(lecun, rngs.params(), (d, r + 2 * n), param_dtype)
        dt_std = r**-0.5
        dt_init = initializers.uniform(2 * dt_std)
        self.dt_proj = nnx.Param(
            (init_param(dt_init, rngs.params(), (r, d), F32)[...] - dt_std).astype(param_dtype)
        )
        self.dt_bias = init_param(dt_bias_init(dt_min, dt_max), rngs.params(), (d,), param_dtype)
        self.A_log = init_param(s4d_real_init, None, (d, n), param_dtype)
        self.D = nnx.Param(jnp.ones((d,), param_dtype))

    def carry_sizes(self) -> tuple[int, ...]:
        return (self.hidden_features * self.state_size,)

    def initialize_carry(self, input_shape, rngs=None, carry_init=None) -> Carry:
        """Zero state ``[*batch, D * N]`` (float32)."""
        if carry_init is not None:
            raise ValueError("carry_init is not supported by S6Cell; pass initial_carry")
        batch = tuple(input_shape[: len(input_shape) - self.num_feature_axes])
        return jnp.zeros(batch + self.carry_sizes(), F32)

    def project(self, params: Params, x: Array) -> Array:
        """``[u, Delta, B, C]`` (float32, ``[..., 2D + 2N]``)."""
        dtype = self.compute_dtype
        u = matmul(x, params["kernel_in"], dtype) if "kernel_in" in params else x.astype(F32)
        low, bc = jnp.split(matmul(u, params["x_proj"], dtype), [self.dt_rank], axis=-1)
        dt = jax.nn.softplus(matmul(low, params["dt_proj"], dtype) + params["dt_bias"].astype(F32))
        return jnp.concatenate([u, dt, bc], axis=-1)

    def _split(self, xp: Array):
        d, n = self.hidden_features, self.state_size
        return jnp.split(xp, [d, 2 * d, 2 * d + n], axis=-1)

    def coefficients(self, params: Params, xp: Array) -> tuple[Array, Array]:
        u, dt, b, _ = self._split(xp)
        a_mat = -jnp.exp(params["A_log"].astype(F32))  # [D, N]
        decay = jnp.exp(dt[..., :, None] * a_mat)
        drive = (dt * u)[..., :, None] * b[..., None, :]
        flat = lambda z: z.reshape(z.shape[:-2] + (-1,))  # noqa: E731
        return flat(decay), flat(drive)

    def readout(self, params: Params, h: Array, xp: Array) -> Array:
        u, _, _, c = self._split(xp)
        hs = h.reshape(h.shape[:-1] + (self.hidden_features, self.state_size))
        y = jnp.einsum("...dn,...n->...d", hs, c) + params["D"].astype(F32) * u
        return y.astype(self.compute_dtype)


register_cell("s6", S6Cell)
