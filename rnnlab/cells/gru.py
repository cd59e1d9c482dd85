"""Gated recurrent unit (Cho et al. 2014), in the original and the "reset after" forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.nn import initializers

from rnnlab.cells.base import Array, Carry, Params, RecurrentCell, matmul
from rnnlab.cells.initializers import Initializer, orthogonal_blocks
from rnnlab.cells.params import gate_params

F32 = jnp.float32


def gru_project(params: Params, x: Array, dtype) -> Array:
    """Input half ``x W_ih + b_ih`` of the ``(r, z, n)`` pre-activations, float32 ``[..., 3H]``."""
    return matmul(x, params["kernel_ih"], dtype) + params["bias_ih"].astype(F32)


def gru_step(
    params: Params, h: Array, xp: Array, dtype, reset_after: bool = True
) -> tuple[Array, Array]:
    """One GRU step from projected input ``xp``.

    .. math::
        r_t = \\sigma(x_r + h_{t-1} W_{hr} + b_{hr}), \\quad
        z_t = \\sigma(x_z + h_{t-1} W_{hz} + b_{hz}), \\\\
        n_t = \\tanh(x_n + r_t \\odot (h_{t-1} W_{hn} + b_{hn}))
        \\quad \\text{(reset after: cuDNN, PyTorch)} \\\\
        n_t = \\tanh(x_n + (r_t \\odot h_{t-1}) W_{hn} + b_{hn})
        \\quad \\text{(original: Cho et al. 2014)} \\\\
        h_t = (1 - z_t) \\odot n_t + z_t \\odot h_{t-1}

    Optional mask entries in ``params`` (absent by default; see :mod:`rnnlab.regularizers`):
    ``"recurrent_mask"`` multiplies ``h_{t-1}`` where it enters ``W_hh`` but not in the
    interpolation (Gal & Ghahramani 2016), ``"update_mask"`` the candidate ``n_t``
    (Semeniuta et al. 2016).
    """
    hidden = h.shape[-1]
    h_in = h * params["recurrent_mask"] if "recurrent_mask" in params else h
    x_r, x_z, x_n = jnp.split(xp, 3, axis=-1)
    b_hh = params["bias_hh"].astype(F32)
    w_hh = params["kernel_hh"]
    if reset_after:
        hh = matmul(h_in, w_hh, dtype) + b_hh
        h_r, h_z, h_n = jnp.split(hh, 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
    else:
        hrz = matmul(h_in, w_hh[:, : 2 * hidden], dtype) + b_hh[: 2 * hidden]
        h_r, h_z = jnp.split(hrz, 2, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + matmul(r * h_in, w_hh[:, 2 * hidden :], dtype) + b_hh[2 * hidden :])
    if "update_mask" in params:
        n = n * params["update_mask"]
    h = (1.0 - z) * n + z * h
    return h, h.astype(dtype)


class GRUCell(RecurrentCell):
    """GRU cell with gates in PyTorch's ``(r, z, n)`` order.

    ``reset_after=True`` (default) is the form of cuDNN and PyTorch ``nn.GRU``: the reset
    gate scales the recurrent *product*. ``reset_after=False`` is Cho et al.'s original,
    where it scales the state before the product.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import GRUCell
        >>> cell = GRUCell(3, 8, rngs=nnx.Rngs(0))
        >>> h, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
        >>> y.shape
        (2, 8)
    """

    param_names = ("kernel_ih", "kernel_hh", "bias_ih", "bias_hh")
    mask_hooks = ("recurrent_mask", "update_mask")

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        reset_after: bool = True,
        kernel_init: Initializer = initializers.lecun_normal(),
        recurrent_kernel_init: Initializer = orthogonal_blocks(3),
        bias_init: Initializer = initializers.zeros,
        dtype=None,
        param_dtype=F32,
        carry_init: Initializer | None = None,
        rngs: nnx.Rngs,
    ):
        self.set_features(in_features, hidden_features, dtype, param_dtype, carry_init)
        self.reset_after = bool(reset_after)
        self.kernel_ih, self.kernel_hh, self.bias_ih, self.bias_hh = gate_params(
            rngs,
            input_shape=(in_features,),
            recurrent_shape=(hidden_features,),
            width=3 * hidden_features,
            kernel_init=kernel_init,
            recurrent_kernel_init=recurrent_kernel_init,
            bias_init=bias_init,
            num_biases=2,
            param_dtype=param_dtype,
        )

    def project(self, params: Params, x: Array) -> Array:
        return gru_project(params, x, self.compute_dtype)

    def step_with(self, params: Params, carry: Carry, xp: Array) -> tuple[Carry, Array]:
        return gru_step(params, carry, xp, self.compute_dtype, self.reset_after)
