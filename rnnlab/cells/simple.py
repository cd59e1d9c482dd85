"""Elman recurrent network (Elman 1990) and its identity-initialised ReLU form (IRNN)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax.nn import initializers

from rnnlab.cells.base import Array, Carry, Params, RecurrentCell, check_one_of, matmul
from rnnlab.cells.initializers import Initializer, identity
from rnnlab.cells.params import gate_params

F32 = jnp.float32

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def simple_project(params: Params, x: Array, dtype) -> Array:
    """``x W_ih + b`` in float32."""
    return matmul(x, params["kernel_ih"], dtype) + params["bias"].astype(F32)


def simple_step(params: Params, h: Array, xp: Array, dtype, activation: str) -> tuple[Array, Array]:
    """``h_t = act(x_t W_ih + h_{t-1} W_hh + b)``.

    An optional ``"recurrent_mask"`` entry in ``params`` multiplies ``h_{t-1}`` before
    ``W_hh`` (Gal & Ghahramani 2016; see :mod:`rnnlab.regularizers`).
    """
    h_in = h * params["recurrent_mask"] if "recurrent_mask" in params else h
    h = ACTIVATIONS[activation](xp + matmul(h_in, params["kernel_hh"], dtype))
    return h, h.astype(dtype)


class SimpleCell(RecurrentCell):
    """Elman cell: :math:`h_t = \\phi(x_t W_{ih} + h_{t-1} W_{hh} + b)`.

    ``activation`` is ``"tanh"`` (default) or ``"relu"``. With ``activation="relu"`` and
    ``recurrent_kernel_init=rnnlab.cells.initializers.identity()`` this is the IRNN of
    Le, Jaitly & Hinton (2015); :meth:`irnn` builds it.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import SimpleCell
        >>> cell = SimpleCell(3, 8, rngs=nnx.Rngs(0))
        >>> h, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
        >>> y.shape
        (2, 8)
    """

    param_names = ("kernel_ih", "kernel_hh", "bias")
    # No separate candidate update: the whole state is the update.
    mask_hooks = ("recurrent_mask",)

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        activation: str = "tanh",
        kernel_init: Initializer = initializers.lecun_normal(),
        recurrent_kernel_init: Initializer = initializers.orthogonal(),
        bias_init: Initializer = initializers.zeros,
        dtype=None,
        param_dtype=F32,
        carry_init: Initializer | None = None,
        rngs: nnx.Rngs,
    ):
        check_one_of("activation", activation, ACTIVATIONS)
        self.set_features(in_features, hidden_features, dtype, param_dtype, carry_init)
        self.activation = activation
        self.kernel_ih, self.kernel_hh, self.bias = gate_params(
            rngs,
            input_shape=(in_features,),
            recurrent_shape=(hidden_features,),
            width=hidden_features,
            kernel_init=kernel_init,
            recurrent_kernel_init=recurrent_kernel_init,
            bias_init=bias_init,
            param_dtype=param_dtype,
        )

    @classmethod
    def irnn(cls, in_features: int, hidden_features: int, *, scale: float = 1.0, **kwargs):
        """IRNN: ReLU units with an identity-initialised recurrent matrix (Le et al. 2015)."""
        kwargs.setdefault("kernel_init", initializers.normal(1e-3))
        return cls(
            in_features,
            hidden_features,
            activation="relu",
            recurrent_kernel_init=identity(scale),
            **kwargs,
        )

    def project(self, params: Params, x: Array) -> Array:
        return simple_project(params, x, self.compute_dtype)

    def step_with(self, params: Params, carry: Carry, xp: Array) -> tuple[Carry, Array]:
        return simple_step(params, carry, xp, self.compute_dtype, self.activation)
