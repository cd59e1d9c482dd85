"""Orthogonal RNN by the exponential map, expRNN (Lezcano-Casado & Martinez-Rubio 2019).

An orthogonal recurrent matrix preserves the norm of the state it multiplies, so the
linear part of backpropagation through time neither shrinks nor grows the gradient. The
exponential of a skew-symmetric matrix is orthogonal, and every special orthogonal matrix
is such an exponential, so

.. math:: W = \\exp(A - A^\\top)

with ``A`` an unconstrained (strictly upper-triangular) parameter trains an orthogonal
``W`` with any optimiser: the constraint holds by construction, not by projection.
``W`` is computed once per sequence, outside the time loop (:meth:`cell_params`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax.nn import initializers

from rnnlab.cells.base import Array, Carry, Params, RecurrentCell, check_one_of, matmul
from rnnlab.cells.initializers import Initializer
from rnnlab.cells.params import gate_params, init_param
from rnnlab.cells.registry import register_cell

F32 = jnp.float32


def skew(a: Array) -> Array:
    """``A - A^T`` built from the strict upper triangle of ``a`` (the free parameters)."""
    upper = jnp.triu(a, k=1)
    return upper - upper.T


def orthogonal_matrix(a: Array) -> Array:
    """``expm(A - A^T)`` in float32: an orthogonal matrix of determinant 1."""
    return jax.scipy.linalg.expm(skew(a.astype(F32)))


def modrelu(z: Array, b: Array) -> Array:
    """``modReLU(z) = sign(z) relu(|z| + b)`` (Arjovsky, Shah & Bengio 2016).

    It keeps the sign of each unit and thresholds its magnitude, so with ``b >= 0`` and an
    orthogonal ``W`` the map is close to norm-preserving.
    """
    return jnp.sign(z) * jax.nn.relu(jnp.abs(z) + b.astype(F32))


ACTIVATIONS: dict[str, Callable[[Array, Array], Array]] = {
    "modrelu": modrelu,
    "tanh": lambda z, b: jnp.tanh(z),
    "identity": lambda z, b: z,
}


def henaff_init(key, shape, dtype=F32) -> Array:
    """Skew parameter whose exponential is block-diagonal 2x2 rotations (Henaff et al. 2016).

    Angles are uniform in ``[-pi, pi]``; ``A[2i, 2i+1] = s_i`` so that ``A - A^T`` has the
    blocks ``[[0, s_i], [-s_i, 0]]``.
    """
    n = shape[-1]
    if len(shape) != 2 or shape[0] != n:
        raise ValueError(f"henaff_init needs a square 2-D shape, got {shape}")
    angles = jax.random.uniform(key, (n // 2,), F32, -math.pi, math.pi)
    rows = jnp.arange(0, 2 * (n // 2), 2)
    return jnp.zeros(shape, F32).at[rows, rows + 1].set(angles).astype(dtype)


def symmetric_uniform(scale: float) -> Initializer:
    """Uniform in ``[-scale, scale]``."""

    def init(key, shape, dtype=F32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


def orthogonal_project(params: Params, x: Array, dtype) -> Array:
    """``x W_ih + b`` in float32."""
    return matmul(x, params["kernel_ih"], dtype) + params["bias"].astype(F32)


def orthogonal_step(
    params: Params, h: Array, xp: Array, dtype, activation: str = "modrelu"
) -> tuple[Array, Array]:
    """``h_t = act(x_t W_ih + b + h_{t-1} W, b_mod)`` with ``W = expm(A - A^T)``.

    ``params["kernel_hh"]`` holds ``W`` when the caller computed it once per sequence (as
    :meth:`OrthogonalCell.cell_params` does); otherwise it is computed here from ``A``.
    """
    w = params.get("kernel_hh")
    if w is None:
        w = orthogonal_matrix(params["recurrent_skew"])
    h = ACTIVATIONS[activation](xp + matmul(h, w, dtype), params["modrelu_bias"])
    return h, h.astype(dtype)


class OrthogonalCell(RecurrentCell):
    """RNN with an exactly orthogonal recurrent matrix, ``W = expm(A - A^T)``.

    .. math:: h_t = \\sigma(x_t W_{ih} + b + h_{t-1} W), \\qquad
        W = \\exp(A - A^\\top), \\; W^\\top W = I

    Lezcano-Casado & Martinez-Rubio (2019) use the modReLU nonlinearity, the default;
    ``"tanh"`` and ``"identity"`` are also available (with ``"identity"`` the recurrent
    Jacobian is ``W^T`` itself). ``A`` starts from Henaff et al.'s (2016) random 2x2
    rotations. Because ``W`` is a function of ``A``, the recurrent matrix stays orthogonal
    (to float32 precision of ``expm``) after any optimiser update.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import OrthogonalCell
        >>> cell = OrthogonalCell(3, 8, rngs=nnx.Rngs(0))
        >>> w = cell.recurrent_matrix()
        >>> bool(jnp.allclose(w.T @ w, jnp.eye(8), atol=1e-5))
        True

    Args:
      in_features: input size.
      hidden_features: state size.
      activation: ``"modrelu"``, ``"tanh"`` or ``"identity"``.
      kernel_init, bias_init: input kernel and bias initialisers.
      skew_init: initialiser of ``A`` (square ``[H, H]``; only its strict upper triangle
        is used).
      modrelu_bias_init: initialiser of the modReLU thresholds (uniform in +-0.01, as the
        authors' code).
      dtype, param_dtype: compute and parameter dtypes; carries stay float32.
      carry_init: initialiser of the carry (zeros by default).
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    param_names = ("kernel_ih", "recurrent_skew", "bias", "modrelu_bias")

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        activation: str = "modrelu",
        kernel_init: Initializer = initializers.lecun_normal(),
        skew_init: Initializer = henaff_init,
        bias_init: Initializer = initializers.zeros,
        modrelu_bias_init: Initializer | None = None,
        dtype=None,
        param_dtype=F32,
        carry_init: Initializer | None = None,
        rngs: nnx.Rngs,
    ):
        check_one_of("activation", activation, ACTIVATIONS)
        self.set_features(in_features, hidden_features, dtype, param_dtype, carry_init)
        self.activation = activation
        h = hidden_features
        modrelu_bias_init = modrelu_bias_init or symmetric_uniform(0.01)
        # The recurrent "kernel" is the skew parameter A of W = expm(A - A^T).
        self.kernel_ih, self.recurrent_skew, self.bias = gate_params(
            rngs,
            input_shape=(in_features,),
            recurrent_shape=(h,),
            width=h,
            kernel_init=kernel_init,
            recurrent_kernel_init=skew_init,
            bias_init=bias_init,
            param_dtype=param_dtype,
        )
        self.modrelu_bias = init_param(modrelu_bias_init, rngs.params(), (h,), param_dtype)

    def cell_params(self) -> Params:
        """Parameters plus ``kernel_hh = expm(A - A^T)``, computed once per sequence."""
        params = super().cell_params()
        params["kernel_hh"] = orthogonal_matrix(params["recurrent_skew"])
        return params

    def recurrent_matrix(self) -> Array:
        """The orthogonal recurrent matrix ``W`` for the current parameters."""
        return orthogonal_matrix(self.recurrent_skew[...])

    def project(self, params: Params, x: Array) -> Array:
        return orthogonal_project(params, x, self.compute_dtype)

    def step_with(self, params: Params, carry: Carry, xp: Array) -> tuple[Carry, Array]:
        return orthogonal_step(params, carry, xp, self.compute_dtype, self.activation)


register_cell("orthogonal", OrthogonalCell)
