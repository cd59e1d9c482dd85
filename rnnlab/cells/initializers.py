"""Initialisers that matter for recurrences.

All follow the ``jax.nn.initializers`` signature ``init(key, shape, dtype) -> array`` so they
can be passed wherever Flax accepts an initialiser.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.nn import initializers

Initializer = initializers.Initializer


def orthogonal_blocks(num_blocks: int, scale: float = 1.0) -> Initializer:
    """Orthogonal init applied separately to each of ``num_blocks`` gate blocks.

    A fused recurrent kernel ``[H, G*H]`` holds one ``H x H`` matrix per gate; each should be
    orthogonal on its own so that every gate starts norm-preserving (Saxe et al. 2014).
    """

    def init(key, shape, dtype=jnp.float32):
        rows, cols = shape[-2], shape[-1]
        if cols % num_blocks:
            raise ValueError(f"shape[-1]={cols} is not divisible by num_blocks={num_blocks}")
        keys = jax.random.split(key, num_blocks)
        ortho = initializers.orthogonal(scale)
        blocks = [ortho(k, shape[:-1] + (cols // num_blocks,), dtype) for k in keys]
        del rows
        return jnp.concatenate(blocks, axis=-1)

    return init


def identity(scale: float = 1.0) -> Initializer:
    """Scaled identity for a square recurrent matrix: the IRNN of Le, Jaitly & Hinton (2015).

    With ReLU units, ``h_t = relu(W_x x_t + I h_{t-1} + b)`` starts as an integrator that
    neither shrinks nor grows the state, which keeps gradients alive over long spans.
    """

    def init(key, shape, dtype=jnp.float32):
        del key
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"identity init needs a square 2-D shape, got {shape}")
        return scale * jnp.eye(shape[0], dtype=dtype)

    return init


def chrono_forget_bias(max_timescale: float) -> Initializer:
    """Chrono initialisation of a forget-gate bias (Tallec & Ollivier, 2018).

    .. math:: b_f \\sim \\log(\\mathcal{U}(1, T_{max} - 1))

    so that the gate's characteristic forgetting times spread over ``[1, T_max]``. The input
    gate bias is then ``-b_f`` (see :func:`lstm_bias`).
    """
    if max_timescale <= 2:
        raise ValueError(f"max_timescale must be > 2, got {max_timescale}")

    def init(key, shape, dtype=jnp.float32):
        u = jax.random.uniform(key, shape, jnp.float32, 1.0, max_timescale - 1.0)
        return jnp.log(u).astype(dtype)

    return init


def lstm_bias(
    hidden: int, forget_bias: float = 1.0, chrono_max_timescale: float | None = None
) -> Initializer:
    """Bias of a fused LSTM gate vector in ``(i, f, g, o)`` order.

    The forget-gate bias defaults to 1 (Gers et al. 2000; Jozefowicz et al. 2015), so the
    cell remembers by default. With ``chrono_max_timescale`` the forget bias follows
    :func:`chrono_forget_bias` and the input bias its negative (Tallec & Ollivier 2018).
    """

    def init(key, shape, dtype=jnp.float32):
        if shape != (4 * hidden,):
            raise ValueError(f"LSTM bias shape must be ({4 * hidden},), got {shape}")
        zeros = jnp.zeros((hidden,), dtype)
        if chrono_max_timescale is None:
            b_f = jnp.full((hidden,), forget_bias, dtype)
            b_i = zeros
        else:
            b_f = chrono_forget_bias(chrono_max_timescale)(key, (hidden,), dtype)
            b_i = -b_f
        return jnp.concatenate([b_i, b_f, zeros, zeros])

    return init
