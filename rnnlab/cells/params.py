"""Parameter creation shared by the cells: one helper for the gate kernels and biases.

Every gated cell owns the same three kinds of arrays: an input kernel ``kernel_ih``
``[*window, in, G*H]`` (``window`` is the spatial kernel of a convolutional cell, empty
otherwise), a recurrent kernel ``kernel_hh`` ``[*window, rec, G*H]`` and one or two biases
``[G*H]``. :func:`gate_params` creates them in that order, drawing one key per array from
the ``params`` stream, so a cell built with the same seed gets the same arrays as before
the helper existed and the keys left for the next module are the same too.

Initialisers run in float32 (or wider) and the result is cast to ``param_dtype``
(:func:`init_param`). Low-precision initialisation is both inaccurate and, for the
orthogonal initialiser, impossible on CPU: XLA's CPU QR decomposition has no bfloat16
kernel. A bfloat16 model thus starts from the rounded float32 initialisation, which is what
mixed-precision recipes do.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells.initializers import Initializer

F32 = jnp.float32


def init_dtype(param_dtype) -> jnp.dtype:
    """The dtype initialisers run in: ``param_dtype`` if it has at least 32 bits, else f32."""
    dtype = jnp.dtype(param_dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"param_dtype must be a floating dtype, got {dtype}")
    return dtype if dtype.itemsize >= 4 else jnp.dtype(F32)


def init_array(init: Initializer, key: jax.Array | None, shape, param_dtype) -> jax.Array:
    """``init(key, shape)`` computed in :func:`init_dtype` and cast to ``param_dtype``."""
    return jnp.asarray(init(key, tuple(shape), init_dtype(param_dtype))).astype(param_dtype)


def init_param(init: Initializer, key: jax.Array | None, shape, param_dtype) -> nnx.Param:
    """:func:`init_array` as an ``nnx.Param``."""
    return nnx.Param(init_array(init, key, shape, param_dtype))


def gate_params(
    rngs: nnx.Rngs,
    *,
    input_shape: Sequence[int],
    recurrent_shape: Sequence[int] | None,
    width: int,
    kernel_init: Initializer,
    recurrent_kernel_init: Initializer | None = None,
    bias_init: Initializer,
    num_biases: int = 1,
    param_dtype=F32,
    bias_keys: bool = True,
) -> tuple[nnx.Param, ...]:
    """The gate parameters of a cell: ``(kernel_ih, [kernel_hh,] bias[, bias_hh])``.

    .. math:: z_t = x_t W_{ih} + h_{t-1} W_{hh} + b \\in \\mathbb{R}^{\\text{width}}

    Args:
      rngs: the cell's ``nnx.Rngs``; one ``params`` key is drawn per array, in the order
        returned (``bias_keys=False``: biases draw none, for deterministic bias inits).
      input_shape: leading shape of the input kernel: ``(in_features,)``, or
        ``(kh, kw, in_channels)`` for a convolution.
      recurrent_shape: leading shape of the recurrent kernel: ``(hidden,)``, ``(kh, kw,
        hidden)``, ``()`` for a diagonal (per-unit) recurrence, ``None`` for none at all.
      width: size of the last axis (all gate blocks together, e.g. ``4 * hidden``).
      kernel_init, recurrent_kernel_init, bias_init: ``init(key, shape, dtype)``.
      num_biases: 1 (a fused bias) or 2 (input and recurrent biases, as the GRU needs).
      param_dtype: the parameters' dtype (initialisers run in float32 or wider).

    Returns:
      ``nnx.Param`` s: ``kernel_ih`` ``[*input_shape, width]``, then ``kernel_hh``
      ``[*recurrent_shape, width]`` unless ``recurrent_shape`` is None, then the biases
      ``[width]``.
    """
    if num_biases not in (1, 2):
        raise ValueError(f"num_biases must be 1 or 2, got {num_biases!r}")
    out = [init_param(kernel_init, rngs.params(), (*input_shape, width), param_dtype)]
    if recurrent_shape is not None:
        if recurrent_kernel_init is None:
            raise ValueError("recurrent_kernel_init is required with a recurrent_shape")
        shape = (*recurrent_shape, width)
        out.append(init_param(recurrent_kernel_init, rngs.params(), shape, param_dtype))
    for _ in range(num_biases):
        key = rngs.params() if bias_keys else None
        out.append(init_param(bias_init, key, (width,), param_dtype))
    return tuple(out)
