"""Recurrent layers in depth, with the regularisation toolkit as an option of the stack.

The order of operations follows AWD-LSTM (Merity et al. 2017)::

    x -> input dropout -> [layer 1 -> hidden dropout -> layer 2 ... -> layer L]
      -> raw output -> output dropout -> output
                           |                 |
                          TAR               AR

with recurrent dropout, zoneout and weight drop inside each layer and every dropout
variational (one mask per sequence) when ``variational`` is set. Every switch is off by
default; the stack's plain ``dropout`` (between layers, as in PyTorch) is the
``hidden_dropout`` of a stack built without a ``regularization``.

One randomness path, the one of ``nnx.Dropout``: every mask of a training call (input,
hidden and output dropout, each layer's recurrent masks) draws the next key of one stream,
in that order, from the ``rngs`` of the call or else from the stream the stack forked at
construction. The three dropouts are ``nnx.Dropout`` modules (variational dropout is their
``broadcast_dims`` over time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells.base import RecurrentCell
from rnnlab.cells.registry import make_cell
from rnnlab.layers.bidirectional import Bidirectional
from rnnlab.layers.checks import valid_positions
from rnnlab.layers.regularized import regularized_layer
from rnnlab.layers.rnn import RNN
from rnnlab.regularizers.config import Regularization
from rnnlab.regularizers.dropout import KeyLike
from rnnlab.regularizers.losses import ar_tar_losses

Array = jax.Array
Carry = Any


class StackedRNN(nnx.Module):
    """``num_layers`` recurrent layers in depth, optionally bidirectional, residual and
    regularised.

    Training or evaluation is NNX's mode, set one way: ``stack.train()`` / ``stack.eval()``
    (or the same on any module containing it) switch every dropout on or off, zoneout to its
    expectation and batch-normalised cells to their running averages;
    ``nnx.with_attributes(stack, deterministic=True, use_running_average=True,
    raise_if_not_found=False)`` is a copy in evaluation form that leaves the stack as it is.

    Example::

        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.layers import StackedRNN
        >>> from rnnlab.regularizers import Regularization
        >>> reg = Regularization(variational=True, input_dropout=0.3, zoneout_c=0.5,
        ...                      zoneout_h=0.05, weight_drop=0.5, ar=2.0, tar=1.0)
        >>> rnn = StackedRNN(8, 16, 2, regularization=reg, rngs=nnx.Rngs(0))
        >>> y, aux = rnn(jnp.ones((4, 10, 8)), rngs=jax.random.key(1), return_aux=True)
        >>> y.shape, sorted(aux)
        ((4, 10, 16), ['ar', 'hidden', 'tar'])

    Args:
      in_features: input size of the first layer.
      hidden_features: cell size of every layer.
      num_layers: depth.
      cell: a registered cell name (``"lstm"``, ``"gru"``, ``"simple"``, ``"irnn"``, ...) or a
        callable ``(in_features, hidden_features, rngs=...) -> cell``.
      cell_kwargs: extra arguments for every cell (e.g. ``proj_features``, ``dtype``).
      bidirectional: each layer is a :class:`Bidirectional` pair.
      merge: how bidirectional outputs merge (``"concat"`` or ``"sum"``).
      residual: add each layer's input to its output wherever their sizes match
        (Wu et al. 2016 use it from the third layer on; here it applies wherever it can).
      dropout: dropout rate between layers (not after the last), as in PyTorch.
      regularization: a :class:`~rnnlab.regularizers.Regularization` (or a mapping of its
        fields); ``None`` is all off. Its ``hidden_dropout`` and ``dropout`` are the same
        switch: set one.
      rnn_kwargs: passed to every :class:`RNN` (``implementation``, ``unroll``,
        ``hoist_input_projection``, ``remat``).
      rngs: parameter and dropout streams.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        num_layers: int = 1,
        *,
        cell: str | Callable[..., RecurrentCell] = "lstm",
        cell_kwargs: dict[str, Any] | None = None,
        bidirectional: bool = False,
        merge: str = "concat",
        residual: bool = False,
        dropout: float = 0.0,
        regularization: Any = None,
        rnn_kwargs: dict[str, Any] | None = None,
        rngs: nnx.Rngs,
    ):
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        reg = Regularization.from_config(regularization)
        if reg.hidden_dropout > 0 and dropout > 0:
            raise ValueError(
                f"set the inter-layer dropout once: regularization.hidden_dropout="
                f"{reg.hidden_dropout} and dropout={dropout} are both above zero"
            )
        cell_kwargs, rnn_kwargs = dict(cell_kwargs or {}), dict(rnn_kwargs or {})
        build = (
            (lambda i, h: make_cell(cell, i, h, rngs=rngs, **cell_kwargs))
            if isinstance(cell, str)
            else (lambda i, h: cell(i, h, rngs=rngs, **cell_kwargs))
        )
        layers, size = [], in_features
        for _ in range(num_layers):
            if bidirectional:
                layer = Bidirectional(
                    RNN(build(size, hidden_features), **rnn_kwargs),
                    RNN(build(size, hidden_features), **rnn_kwargs),
                    merge=merge,
                )
            else:
                layer = RNN(build(size, hidden_features), **rnn_kwargs)
            layers.append(layer)
            size = layer.output_features
        self.layers = nnx.List(layers)
        self.in_features, self.hidden_features = in_features, hidden_features
        self.num_layers, self.residual, self.dropout_rate = num_layers, residual, dropout
        self.bidirectional = bidirectional
        self.regularization = reg
        # Variational dropout is nnx.Dropout with one mask broadcast over time.
        self.time_axis = 0 if layers[0].time_major else -2
        dims = (self.time_axis,) if reg.variational else ()
        # As nnx.Dropout does, a stack that can drop keeps a stream forked from the
        # construction-time rngs and draws from it in training when a call passes none.
        # A stack without dropout forks nothing, so the keys left for the caller's next
        # modules are as before. Rngs without a dropout (or default) stream, e.g.
        # nnx.Rngs(params=0) as the trainer builds models, give no stream: each call then
        # passes its rngs. The other two dropouts draw from the same stream.
        hidden_rate = reg.hidden_dropout or dropout
        droppable = dropout > 0 or reg.stochastic
        try:
            self.dropout = nnx.Dropout(
                hidden_rate, broadcast_dims=dims, rngs=rngs if droppable else None
            )
        except KeyError:
            self.dropout = nnx.Dropout(hidden_rate, broadcast_dims=dims)
        self.input_dropout = nnx.Dropout(reg.input_dropout, broadcast_dims=dims)
        self.output_dropout = nnx.Dropout(reg.output_dropout, broadcast_dims=dims)
        self.deterministic = False  # NNX mode; .eval() sets it

    @property
    def output_features(self) -> int:
        return self.layers[-1].output_features

    def dropout_stream(self, rngs: KeyLike | nnx.RngStream | None = None) -> nnx.RngStream:
        """The stream a training call draws every mask from, one key per mask in order.

        ``rngs`` of the call when given (an ``nnx.Rngs``: its ``dropout`` stream, else its
        default one; an ``nnx.RngStream`` as it is; a key seeds a fresh stream), else the
        stream forked at construction. A model that draws masks of its own before the stack
        (embedding dropout) takes them from this stream and passes it on.
        """
        if isinstance(rngs, nnx.RngStream):
            return rngs
        if isinstance(rngs, nnx.Rngs):
            return rngs["dropout"]
        if rngs is not None:
            return nnx.Rngs(dropout=rngs)["dropout"]
        if self.dropout.rngs is None:
            raise ValueError(
                "rngs must be given to train with dropout or regularization (an nnx.Rngs "
                "with a dropout stream, or a key), or the stack built from rngs with one; "
                "got None"
            )
        return self.dropout.rngs

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Sequence[Carry] | None = None,
        seq_lengths: Array | None = None,
        resets: Array | None = None,
        reset_carry: Sequence[Carry] | None = None,
        rngs: KeyLike | nnx.RngStream | None = None,
        return_carry: bool = False,
        return_aux: bool = False,
    ):
        """Runs all layers in the stack's mode (``.train()`` / ``.eval()``).

        ``initial_carry``, ``reset_carry`` and the returned carry hold one entry per layer.
        ``rngs`` overrides, for this call, the dropout stream forked at construction
        (:meth:`dropout_stream`). Returns ``outputs``, ``(carries, outputs)`` with
        ``return_carry``, and with ``return_aux`` a dict last: ``"hidden"`` (last layer
        before output dropout) and the ``"ar"`` / ``"tar"`` loss terms (already weighted)
        when enabled.
        """
        for name, value in (("initial_carry", initial_carry), ("reset_carry", reset_carry)):
            if value is not None and len(value) != self.num_layers:
                raise ValueError(
                    f"{name} must hold one carry per layer ({self.num_layers}), got {len(value)}"
                )
        carries, out, aux = self._run(inputs, initial_carry, seq_lengths, resets, reset_carry, rngs)
        result = (carries, out) if return_carry else (out,)
        if return_aux:
            result = result + (aux,)
        return result[0] if len(result) == 1 else result

    def step(
        self,
        carries: Sequence[Carry],
        x: Array,
        *,
        rngs: KeyLike | nnx.RngStream | None = None,
    ) -> tuple[list[Carry], Array]:
        """One time step through every layer: ``(carries, x [*batch, F]) -> (carries, y)``.

        The step of a closed-loop decoder (:mod:`rnnlab.layers.feedback`): the stack runs on
        a sequence of length one, in its mode, so the step does exactly what a call on the
        whole sequence does at that position (in evaluation: zoneout's expectation, weight
        drop's evaluation weights; residuals), by the same layers. In training every step
        draws fresh masks (a free-running decoder has no per-sequence masks to reuse). A
        decoder that must run in evaluation form while the model trains (a forecaster's
        free run) steps a copy in that form: ``nnx.with_attributes(stack,
        deterministic=True, use_running_average=True, raise_if_not_found=False)``. A cell
        that returns per-step extras in this mode (a batch-normalised cell in training)
        cannot step inside a loop: its aggregate would move as a side effect of the loop's
        trace. A bidirectional stack cannot step: its backward direction needs the inputs
        that are still to come.
        """
        if self.bidirectional:
            raise ValueError("a bidirectional StackedRNN cannot run step by step")
        extras = sorted({type(c).__name__ for c in self._cells() if getattr(c, "step_extras", 0)})
        if extras:
            raise ValueError(
                f"{', '.join(extras)} returns per-step extras in this mode (batch statistics "
                "in training) and cannot step inside a loop: step a copy in evaluation form, "
                "nnx.with_attributes(stack, deterministic=True, use_running_average=True, "
                "raise_if_not_found=False), or the stack after .eval()"
            )
        time_axis = 0 if self.layers[0].time_major else x.ndim - 1
        carries, y = self(
            jnp.expand_dims(x, time_axis), initial_carry=carries, rngs=rngs, return_carry=True
        )
        return carries, jnp.squeeze(y, time_axis)

    def _cells(self) -> list[Any]:
        return [r.cell for layer in self.layers for r in _rnns(layer)]

    def _run(self, inputs, initial_carry, seq_lengths, resets, reset_carry, rngs):
        reg, training = self.regularization, not self.deterministic
        valid = None
        if self.residual and seq_lengths is not None:
            valid = valid_positions(seq_lengths, inputs, self.layers[0].time_major)
        rates = (self.input_dropout.rate, self.dropout.rate, self.output_dropout.rate)
        stream = None
        if training and (reg.recurrent_active or max(rates) > 0):
            stream = self.dropout_stream(rngs)

        def drop(module: nnx.Dropout, x: Array) -> Array:
            return module(x, deterministic=not training, rngs=stream)

        x = drop(self.input_dropout, inputs)
        carries = []
        for i, layer in enumerate(self.layers):
            carry, y = regularized_layer(
                layer,
                x,
                reg,
                rngs=stream() if stream is not None and reg.recurrent_active else None,
                deterministic=not training,
                initial_carry=None if initial_carry is None else initial_carry[i],
                reset_carry=None if reset_carry is None else reset_carry[i],
                seq_lengths=seq_lengths,
                resets=resets,
            )
            if self.residual and y.shape == x.shape:
                # The layer zeroed its padded outputs; the residual must not refill them.
                y = y + (x if valid is None else jnp.where(valid, x, 0)).astype(y.dtype)
            if i < self.num_layers - 1:
                y = drop(self.dropout, y)
            carries.append(carry)
            x = y
        raw = x
        out = drop(self.output_dropout, raw)
        aux: dict[str, Array] = {"hidden": raw}
        aux.update(ar_tar_losses(out, raw, reg, seq_lengths=seq_lengths, time_axis=self.time_axis))
        return carries, out, aux

    def initialize_carry(self, input_shape: tuple[int, ...]) -> list[Carry]:
        """Zero carries, one per layer, for inputs ``[*batch, features]`` of the first layer."""
        batch = tuple(input_shape[:-1])
        out, size = [], input_shape[-1]
        for layer in self.layers:
            carry = [r.cell.initialize_carry(batch + (size,)) for r in _rnns(layer)]
            out.append(carry[0] if len(carry) == 1 else tuple(carry))
            size = layer.output_features
        return out


def _rnns(layer: RNN | Bidirectional) -> tuple[RNN, ...]:
    return (layer,) if isinstance(layer, RNN) else (layer.forward_rnn, layer.backward_rnn)
