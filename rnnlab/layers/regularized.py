"""One recurrent layer under the in-layer regularisers: recurrent dropout, zoneout, weight drop.

The masks are drawn once per forward pass, outside the time loop, by
:func:`rnnlab.regularizers.prepare_layer`; they reach the layer as a ``params=`` override
(weight-dropped kernel, recurrent-dropout masks: the fused path applies these too) and, for
zoneout, as a step hook with per-step inputs (scan path).
"""

from __future__ import annotations

from typing import Any

import jax

from rnnlab.layers.bidirectional import Bidirectional
from rnnlab.layers.rnn import RNN
from rnnlab.regularizers.config import Regularization
from rnnlab.regularizers.dropout import KeyLike, as_key
from rnnlab.regularizers.recurrent import LayerMasks, prepare_layer

Array = jax.Array
Carry = Any


def _plan_kwargs(rnn: RNN, inputs: Array, reg: Regularization, key, deterministic, masks=None):
    if not reg.recurrent_active:
        return {}
    if rnn.time_major:
        batch, steps = tuple(inputs.shape[1:-1]), inputs.shape[0]
    else:
        batch, steps = tuple(inputs.shape[:-2]), inputs.shape[-2]
    plan = prepare_layer(
        rnn,
        reg,
        batch_shape=batch,
        num_steps=steps,
        rngs=key,
        deterministic=deterministic,
        masks=masks,
    )
    return dict(
        params=plan.params, step_transform=plan.step_transform, step_inputs=plan.step_inputs
    )


def regularized_rnn(
    rnn: RNN,
    inputs: Array,
    reg: Regularization,
    *,
    rngs: KeyLike | None = None,
    deterministic: bool = True,
    masks: LayerMasks | None = None,
    **call_kwargs,
):
    """Calls ``rnn`` with recurrent dropout, zoneout and weight drop as ``reg`` asks.

    Args:
      rnn: an :class:`rnnlab.RNN`.
      inputs: ``[*batch, time, features]`` (time first if the layer is ``time_major``).
      reg: the switches; only ``recurrent_dropout``, ``recurrent_dropout_kind``,
        ``zoneout_c``, ``zoneout_h`` and ``weight_drop`` act here.
      rngs: PRNG key or ``nnx.Rngs``; needed for training with any of those above zero.
      deterministic: evaluation mode: no masks; zoneout uses its expectation.
      masks: masks to use instead of drawing them (training only), e.g. to reproduce a run.
      **call_kwargs: passed to the layer (``seq_lengths``, ``resets``, ``reset_carry``,
        ``initial_carry``, ``reverse``, ``keep_order``, ``return_carry``).

    Returns:
      What ``rnn(...)`` returns. With nothing active this *is* ``rnn(inputs, ...)``.
    """
    need_key = reg.recurrent_active and not deterministic and masks is None
    key = as_key(rngs) if need_key else None
    extra = _plan_kwargs(rnn, inputs, reg, key, deterministic, masks)
    return rnn(inputs, **extra, **call_kwargs)


def regularized_layer(
    layer: RNN | Bidirectional,
    inputs: Array,
    reg: Regularization,
    *,
    rngs: KeyLike | None = None,
    deterministic: bool = True,
    **call_kwargs,
) -> tuple[Carry, Array]:
    """One :class:`RNN` or :class:`Bidirectional` layer with its in-layer regularisers;
    returns ``(carry, outputs)``. A bidirectional layer draws separate masks per direction."""
    call_kwargs["return_carry"] = True
    need_key = reg.recurrent_active and not deterministic
    if isinstance(layer, RNN):
        return regularized_rnn(
            layer, inputs, reg, rngs=rngs, deterministic=deterministic, **call_kwargs
        )
    if not isinstance(layer, Bidirectional):
        raise ValueError(f"layer must be an RNN or Bidirectional, got {type(layer).__name__}")
    k_f, k_b = jax.random.split(as_key(rngs)) if need_key else (None, None)
    per_direction = (
        _plan_kwargs(layer.forward_rnn, inputs, reg, k_f, deterministic),
        _plan_kwargs(layer.backward_rnn, inputs, reg, k_b, deterministic),
    )
    return layer(inputs, layer_kwargs=per_direction, **call_kwargs)
