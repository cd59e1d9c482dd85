"""A stacked RNN with every regulariser switched from one :class:`Regularization`.

The order of operations follows AWD-LSTM (Merity et al. 2017)::

    x -> input dropout -> [layer 1 -> hidden dropout -> layer 2 ... -> layer L]
      -> raw output -> output dropout -> output
                           |                 |
                          TAR               AR

with recurrent dropout, zoneout and weight drop inside each layer and every dropout
variational (one mask per sequence) when ``variational`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from rnnlab.layers import MERGES, RNN, Bidirectional, StackedRNN, _valid_positions
from rnnlab.regularizers.config import Regularization
from rnnlab.regularizers.dropout import KeyLike, as_key, sequence_dropout
from rnnlab.regularizers.losses import ar_tar_losses
from rnnlab.regularizers.recurrent import regularized_rnn

Array = jax.Array
Carry = Any


def regularized_layer(
    layer: RNN | Bidirectional,
    inputs: Array,
    reg: Regularization,
    *,
    rngs: KeyLike | None = None,
    deterministic: bool = True,
    initial_carry: Carry | None = None,
    seq_lengths: Array | None = None,
    resets: Array | None = None,
) -> tuple[Carry, Array]:
    """One :class:`RNN` or :class:`Bidirectional` layer with its in-layer regularisers.

    Returns ``(carry, outputs)``; a bidirectional layer draws separate masks per direction.
    """
    kw = dict(seq_lengths=seq_lengths, resets=resets, return_carry=True)
    need_key = reg.recurrent_active and not deterministic
    if isinstance(layer, RNN):
        key = as_key(rngs) if need_key else None
        return regularized_rnn(
            layer,
            inputs,
            reg,
            rngs=key,
            deterministic=deterministic,
            initial_carry=initial_carry,
            **kw,
        )
    if not isinstance(layer, Bidirectional):
        raise ValueError(f"layer must be an RNN or Bidirectional, got {type(layer).__name__}")
    k_f, k_b = jax.random.split(as_key(rngs)) if need_key else (None, None)
    c_f, c_b = (None, None) if initial_carry is None else initial_carry
    carry_f, y_f = regularized_rnn(
        layer.forward_rnn,
        inputs,
        reg,
        rngs=k_f,
        deterministic=deterministic,
        initial_carry=c_f,
        reverse=False,
        **kw,
    )
    carry_b, y_b = regularized_rnn(
        layer.backward_rnn,
        inputs,
        reg,
        rngs=k_b,
        deterministic=deterministic,
        initial_carry=c_b,
        reverse=True,
        keep_order=True,
        **kw,
    )
    merge = MERGES[layer.merge] if isinstance(layer.merge, str) else layer.merge
    return (carry_f, carry_b), merge(y_f, y_b)


def regularized_stack(
    stack: StackedRNN,
    inputs: Array,
    reg: Regularization,
    *,
    rngs: KeyLike | None = None,
    deterministic: bool = True,
    initial_carry: Sequence[Carry] | None = None,
    seq_lengths: Array | None = None,
    resets: Array | None = None,
) -> tuple[list[Carry], Array, dict[str, Array]]:
    """Runs a :class:`StackedRNN` under ``reg``.

    Args:
      stack: the stack (its parameters are used unchanged).
      inputs: ``[*batch, time, features]``.
      reg: the switches.
      rngs: PRNG key or ``nnx.Rngs`` (``dropout`` stream); needed for training when a rate
        is above zero.
      deterministic: evaluation mode: every dropout is the identity, zoneout its
        expectation.
      initial_carry, seq_lengths, resets: as for :class:`StackedRNN`.

    Returns:
      ``(carries, outputs, aux)``: one carry per layer, the (dropped) outputs of the last
      layer, and ``aux`` with ``"hidden"`` (last layer before output dropout) and the loss
      terms ``"ar"`` / ``"tar"`` (already multiplied by their coefficients) when enabled.
    """
    if initial_carry is not None and len(initial_carry) != stack.num_layers:
        raise ValueError(
            f"initial_carry must hold one carry per layer ({stack.num_layers}), "
            f"got {len(initial_carry)}"
        )
    if reg.hidden_dropout > 0 and stack.dropout_rate > 0:
        raise ValueError(
            f"set the inter-layer dropout once: hidden_dropout={reg.hidden_dropout} and the "
            f"stack's dropout={stack.dropout_rate} are both above zero"
        )
    hidden_rate = reg.hidden_dropout or stack.dropout_rate
    first = stack.layers[0]
    time_major = (first if isinstance(first, RNN) else first.forward_rnn).time_major
    time_axis = 0 if time_major else -2
    valid = None
    if stack.residual and seq_lengths is not None:
        valid = _valid_positions(seq_lengths, inputs, time_major)
    rates = (reg.input_dropout, hidden_rate, reg.output_dropout)
    stochastic = not deterministic and (reg.recurrent_active or max(rates) > 0)
    keys = jax.random.split(as_key(rngs), 2 * stack.num_layers + 1) if stochastic else None
    key = (lambda i: keys[i]) if stochastic else (lambda i: None)

    def drop(x, rate, k):
        return sequence_dropout(
            x,
            rate,
            k,
            variational=reg.variational,
            time_axis=time_axis,
            deterministic=deterministic,
        )

    x = drop(inputs, reg.input_dropout, key(0))
    carries = []
    for i, layer in enumerate(stack.layers):
        c0 = None if initial_carry is None else initial_carry[i]
        carry, y = regularized_layer(
            layer,
            x,
            reg,
            rngs=key(2 * i + 1),
            deterministic=deterministic,
            initial_carry=c0,
            seq_lengths=seq_lengths,
            resets=resets,
        )
        if stack.residual and y.shape == x.shape:
            # As in StackedRNN: padded outputs stay zero.
            y = y + (x if valid is None else jnp.where(valid, x, 0)).astype(y.dtype)
        if i < stack.num_layers - 1:
            y = drop(y, hidden_rate, key(2 * i + 2))
        carries.append(carry)
        x = y
    raw = x
    out = drop(raw, reg.output_dropout, key(2 * stack.num_layers))
    aux: dict[str, Array] = {"hidden": raw}
    aux.update(ar_tar_losses(out, raw, reg, seq_lengths=seq_lengths, time_axis=time_axis))
    return carries, out, aux


class RegularizedStackedRNN(StackedRNN):
    """:class:`StackedRNN` with a :class:`Regularization`; same parameters, same defaults.

    With ``regularization=None`` (or all switches off) the outputs are bit-identical to a
    :class:`StackedRNN` built with the same arguments and ``rngs``.

    Example::

        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.regularizers import Regularization, RegularizedStackedRNN
        >>> reg = Regularization(variational=True, input_dropout=0.3, zoneout_c=0.5,
        ...                      zoneout_h=0.05, weight_drop=0.5, ar=2.0, tar=1.0)
        >>> rnn = RegularizedStackedRNN(8, 16, 2, regularization=reg, rngs=nnx.Rngs(0))
        >>> y, aux = rnn(jnp.ones((4, 10, 8)), deterministic=False,
        ...              rngs=jax.random.key(1), return_aux=True)
        >>> y.shape, sorted(aux)
        ((4, 10, 16), ['ar', 'hidden', 'tar'])

    Args:
      regularization: a :class:`Regularization`, a mapping or a ConfigDict of its fields.
      *args, **kwargs: as for :class:`StackedRNN`.
    """

    def __init__(self, *args, regularization: Any = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.regularization = Regularization.from_config(regularization)

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Sequence[Carry] | None = None,
        seq_lengths: Array | None = None,
        resets: Array | None = None,
        deterministic: bool = True,
        rngs: KeyLike | None = None,
        return_carry: bool = False,
        return_aux: bool = False,
    ):
        """Runs the stack; returns ``outputs``, ``(carries, outputs)`` with ``return_carry``,
        and ``aux`` (see :func:`regularized_stack`) last with ``return_aux``."""
        carries, out, aux = regularized_stack(
            self,
            inputs,
            self.regularization,
            rngs=rngs,
            deterministic=deterministic,
            initial_carry=initial_carry,
            seq_lengths=seq_lengths,
            resets=resets,
        )
        result = (carries, out) if return_carry else (out,)
        if return_aux:
            result = result + (aux,)
        return result[0] if len(result) == 1 else result
