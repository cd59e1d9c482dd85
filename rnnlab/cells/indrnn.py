"""Independently recurrent network, IndRNN (Li, Li, Cook, Zhu & Gao 2018).

Each unit sees only its own past, through a scalar recurrent weight ``u_n``:

.. math:: h_t = \\sigma(x_t W + u \\odot h_{t-1} + b)

so the gradient through time of unit ``n`` is a product of scalars,
``dh_{n,T} / dh_{n,t} = prod_k sigma'_{n,k} u_n``. With ReLU and an active unit
(``sigma' = 1``) it is exactly ``u_n^{T-t}``: it neither explodes nor vanishes over a
horizon of ``T - t`` steps when

.. math:: \\epsilon^{1/(T-t)} \\le |u_n| \\le \\gamma^{1/(T-t)}

(Li et al. 2018, section 3.1), for a largest allowed gradient gain ``gamma`` and a smallest
``epsilon``. The cell enforces this bound by clipping ``|u|`` inside the forward pass (see
:func:`constrain_recurrent_weight`), so it holds at every step whatever the optimiser does;
:meth:`IndRNNCell.project_weights` also clips the stored parameter in place, which is the
projection Li et al. apply after each update.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax.nn import initializers

from rnnlab.cells.base import (
    Array,
    Carry,
    Params,
    RecurrentCell,
    check_one_of,
    check_positive_int,
    matmul,
)
from rnnlab.cells.initializers import Initializer
from rnnlab.cells.params import gate_params
from rnnlab.cells.registry import register_cell

F32 = jnp.float32

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {"relu": jax.nn.relu, "tanh": jnp.tanh}


def recurrent_weight_bounds(
    horizon: int | None, max_gain: float = 2.0, min_gain: float | None = None
) -> tuple[float, float | None]:
    """``(min_abs, max_abs)`` of ``|u|`` for a gradient gain in ``[min_gain, max_gain]``.

    ``max_abs = max_gain ** (1 / horizon)`` and ``min_abs = min_gain ** (1 / horizon)``
    (0 when ``min_gain`` is None). Without a horizon there is no bound: ``(0, None)``.
    """
    if horizon is None:
        return 0.0, None
    check_positive_int("horizon", horizon)
    if not max_gain > 0:
        raise ValueError(f"max_gain must be > 0, got {max_gain!r}")
    if min_gain is not None and not 0 < min_gain <= max_gain:
        raise ValueError(f"min_gain must lie in (0, max_gain={max_gain}], got {min_gain!r}")
    max_abs = float(max_gain) ** (1.0 / horizon)
    min_abs = 0.0 if min_gain is None else float(min_gain) ** (1.0 / horizon)
    return min_abs, max_abs


def constrain_recurrent_weight(u: Array, min_abs: float, max_abs: float | None) -> Array:
    """Clips ``|u|`` into ``[min_abs, max_abs]`` keeping its sign (zero counts as positive).

    Outside the bounds the gradient with respect to ``u`` is zero, as for any clip: the
    effective weight sits on the bound until the optimiser moves ``u`` back inside.
    """
    if max_abs is None and min_abs <= 0:
        return u
    sign = jnp.where(u < 0, -1.0, 1.0).astype(u.dtype)
    mag = jnp.clip(jnp.abs(u), min_abs, max_abs)
    return sign * mag


def indrnn_project(params: Params, x: Array, dtype) -> Array:
    """``x W + b`` in float32."""
    return matmul(x, params["kernel_ih"], dtype) + params["bias"].astype(F32)


def indrnn_step(
    params: Params,
    h: Array,
    xp: Array,
    dtype,
    activation: str = "relu",
    min_abs: float = 0.0,
    max_abs: float | None = None,
) -> tuple[Array, Array]:
    """One IndRNN step: ``h_t = act(x_t W + b + clip(u) * h_{t-1})``."""
    u = constrain_recurrent_weight(params["recurrent_weight"].astype(F32), min_abs, max_abs)
    h = ACTIVATIONS[activation](xp + u * h)
    return h, h.astype(dtype)


class IndRNNCell(RecurrentCell):
    """IndRNN cell with the recurrent-weight bound of Li et al. (2018).

    .. math:: h_t = \\sigma(x_t W + u \\odot h_{t-1} + b), \\qquad
        \\epsilon^{1/H} \\le |u_n| \\le \\gamma^{1/H}

    for a horizon ``H`` (``horizon``), ``gamma`` = ``max_gain`` and ``epsilon`` =
    ``min_gain``. Li et al. train the adding problem with ``|u| <= 2^{1/T}``, the default
    here (``max_gain=2``) once a horizon is given; ``min_gain`` (for example 0.5) keeps the
    gradient of an active unit from vanishing over the horizon as well.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import IndRNNCell
        >>> cell = IndRNNCell(3, 8, horizon=100, rngs=nnx.Rngs(0))
        >>> h, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
        >>> y.shape
        (2, 8)

    Args:
      in_features: input size.
      hidden_features: number of units.
      horizon: number of steps over which the gradient gain is bounded; ``None`` leaves
        ``u`` unconstrained.
      max_gain: largest gradient gain ``gamma`` of an active unit over the horizon.
      min_gain: smallest gain ``epsilon`` (None: no lower bound).
      activation: ``"relu"`` (the paper's) or ``"tanh"``.
      kernel_init, bias_init: input kernel and bias initialisers.
      recurrent_init: initialiser of ``u``; default uniform in ``[min_abs, min(1, max_abs)]``.
      dtype, param_dtype: compute and parameter dtypes; carries stay float32.
      carry_init: initialiser of the carry (zeros by default).
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    param_names = ("kernel_ih", "recurrent_weight", "bias")

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        horizon: int | None = None,
        max_gain: float = 2.0,
        min_gain: float | None = None,
        activation: str = "relu",
        kernel_init: Initializer = initializers.lecun_normal(),
        recurrent_init: Initializer | None = None,
        bias_init: Initializer = initializers.zeros,
        dtype=None,
        param_dtype=F32,
        carry_init: Initializer | None = None,
        rngs: nnx.Rngs,
    ):
        check_one_of("activation", activation, ACTIVATIONS)
        self.set_features(in_features, hidden_features, dtype, param_dtype, carry_init)
        self.activation, self.horizon = activation, horizon
        self.min_abs, self.max_abs = recurrent_weight_bounds(horizon, max_gain, min_gain)
        hi = 1.0 if self.max_abs is None else min(1.0, self.max_abs)
        recurrent_init = recurrent_init or _uniform(self.min_abs, hi)
        # One scalar recurrent weight per unit: a recurrent "kernel" of shape [H].
        self.kernel_ih, self.recurrent_weight, self.bias = gate_params(
            rngs,
            input_shape=(in_features,),
            recurrent_shape=(),
            width=hidden_features,
            kernel_init=kernel_init,
            recurrent_kernel_init=recurrent_init,
            bias_init=bias_init,
            param_dtype=param_dtype,
        )

    def project(self, params: Params, x: Array) -> Array:
        return indrnn_project(params, x, self.compute_dtype)

    def step_with(self, params: Params, carry: Carry, xp: Array) -> tuple[Carry, Array]:
        return indrnn_step(
            params, carry, xp, self.compute_dtype, self.activation, self.min_abs, self.max_abs
        )

    def effective_recurrent_weight(self) -> Array:
        """The clipped ``u`` the forward pass uses."""
        return constrain_recurrent_weight(self.recurrent_weight[...], self.min_abs, self.max_abs)

    def project_weights(self) -> None:
        """Clips the stored ``u`` into the bound in place (call after an optimiser update)."""
        self.recurrent_weight[...] = self.effective_recurrent_weight()


def _uniform(low: float, high: float) -> Initializer:
    def init(key, shape, dtype=F32):
        return jax.random.uniform(key, shape, dtype, low, high)

    return init


register_cell("indrnn", IndRNNCell)
