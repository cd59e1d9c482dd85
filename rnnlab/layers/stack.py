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
"""

from __future__ import annotations

import contextlib
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
from rnnlab.regularizers.dropout import KeyLike, as_key, sequence_dropout
from rnnlab.regularizers.losses import ar_tar_losses

Array = jax.Array
Carry = Any


class StackedRNN(nnx.Module):
    """``num_layers`` recurrent layers in depth, optionally bidirectional, residual and
    regularised.

    Training or evaluation follows NNX's mode: ``stack.train()`` / ``stack.eval()`` (or the
    same on any module containing it) switch every dropout on or off, zoneout to its
    expectation and batch-normalised cells to their running averages; the ``deterministic``
    argument of a call overrides the mode for that call.

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
        # As nnx.Dropout does, a stack that can drop keeps a stream forked from the
        # construction-time rngs and draws from it in training when a call passes none:
        # one randomness path for every dropout of the stack. A stack without dropout forks
        # nothing, so the keys left for the caller's next modules are as before.
        # Rngs without a dropout (or default) stream, e.g. nnx.Rngs(params=0) as the
        # trainer builds models, give no stream: each call then passes its rngs.
        droppable = dropout > 0 or reg.stochastic
        try:
            self.dropout = nnx.Dropout(dropout, rngs=rngs if droppable else None)
        except KeyError:
            self.dropout = nnx.Dropout(dropout)
        self.deterministic = False  # NNX mode; .eval() sets it

    @property
    def output_features(self) -> int:
        return self.layers[-1].output_features

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Sequence[Carry] | None = None,
        seq_lengths: Array | None = None,
        resets: Array | None = None,
        reset_carry: Sequence[Carry] | None = None,
        deterministic: bool | None = None,
        rngs: KeyLike | None = None,
        return_carry: bool = False,
        return_aux: bool = False,
    ):
        """Runs all layers.

        ``initial_carry``, ``reset_carry`` and the returned carry hold one entry per layer.
        ``rngs`` (an ``nnx.Rngs`` with a ``dropout`` stream, or a key) overrides, for this
        call, the dropout stream forked at construction from the constructor's ``rngs``.
        Returns ``outputs``, ``(carries, outputs)`` with ``return_carry``, and with
        ``return_aux`` a dict last: ``"hidden"`` (last layer before output dropout) and the
        ``"ar"`` / ``"tar"`` loss terms (already weighted) when enabled.
        """
        for name, value in (("initial_carry", initial_carry), ("reset_carry", reset_carry)):
            if value is not None and len(value) != self.num_layers:
                raise ValueError(
                    f"{name} must hold one carry per layer ({self.num_layers}), got {len(value)}"
                )
        deterministic = self.deterministic if deterministic is None else bool(deterministic)
        carries, out, aux = self._run(
            inputs, initial_carry, seq_lengths, resets, reset_carry, deterministic, rngs
        )
        result = (carries, out) if return_carry else (out,)
        if return_aux:
            result = result + (aux,)
        return result[0] if len(result) == 1 else result

    def step(
        self,
        carries: Sequence[Carry],
        x: Array,
        *,
        deterministic: bool | None = True,
        rngs: KeyLike | None = None,
    ) -> tuple[list[Carry], Array]:
        """One time step through every layer: ``(carries, x [*batch, F]) -> (carries, y)``.

        The step of a closed-loop decoder (:mod:`rnnlab.layers.feedback`): the stack runs on
        a sequence of length one, so the step does exactly what a call on the whole sequence
        does at that position (zoneout's expectation, weight drop's evaluation weights,
        residuals), by the same layers. ``deterministic`` defaults to ``True``, because a
        free-running decoder has no per-sequence dropout masks to reuse; ``None`` follows
        the module's mode and ``False`` draws fresh masks every step from ``rngs``.
        A batch-normalised cell in training mode cannot step inside a decoder's loop (its
        running averages would move as a side effect of the loop's trace): run the loop
        under :meth:`running_averages`, or in evaluation mode. A bidirectional stack cannot
        step: its backward direction needs the inputs that are still to come.
        """
        if self.bidirectional:
            raise ValueError("a bidirectional StackedRNN cannot run step by step")
        if self._collecting():
            raise ValueError(
                "a batch-normalised StackedRNN in training mode cannot step inside a loop: "
                "run the loop under `with stack.running_averages():` or after `.eval()`"
            )
        time_axis = 0 if self.layers[0].time_major else x.ndim - 1
        carries, y = self(
            jnp.expand_dims(x, time_axis),
            initial_carry=carries,
            deterministic=deterministic,
            rngs=rngs,
            return_carry=True,
        )
        return carries, jnp.squeeze(y, time_axis)

    def _collecting(self) -> list[Any]:
        return [
            layer.cell
            for layer in self.layers
            if isinstance(layer, RNN) and getattr(layer.cell, "collects_statistics", False)
        ]

    @contextlib.contextmanager
    def running_averages(self):
        """Within the block, batch-normalised cells normalise with their running averages
        and leave them unchanged, whatever the mode: for a closed loop in training (a free
        run), entered outside the loop. Other cells are unaffected."""
        cells = self._collecting()
        for cell in cells:
            cell.use_running_average = True
        try:
            yield self
        finally:
            for cell in cells:
                cell.use_running_average = False

    def _run(self, inputs, initial_carry, seq_lengths, resets, reset_carry, deterministic, rngs):
        reg = self.regularization
        time_axis = 0 if self.layers[0].time_major else -2
        valid = None
        if self.residual and seq_lengths is not None:
            valid = valid_positions(seq_lengths, inputs, self.layers[0].time_major)
        hidden_rate = reg.hidden_dropout or self.dropout_rate
        rates = (reg.input_dropout, hidden_rate, reg.output_dropout)
        # Without a regularization, the plain stack draws its inter-layer dropout from the
        # caller's nnx.Rngs stream, as nnx.Dropout does (and as it always has).
        plain = not reg.active
        stochastic = not deterministic and (reg.recurrent_active or max(rates) > 0)
        keys = None
        if stochastic and not plain:
            own = self.dropout.rngs
            key0 = as_key(rngs) if rngs is not None or own is None else own()
            keys = jax.random.split(key0, 2 * self.num_layers + 1)
        key = (lambda i: keys[i]) if keys is not None else (lambda i: None)

        def drop(x, rate, k):
            if plain:
                return self.dropout(x, deterministic=deterministic or rate == 0, rngs=rngs)
            return sequence_dropout(
                x,
                rate,
                k,
                variational=reg.variational,
                time_axis=time_axis,
                deterministic=deterministic,
            )

        x = inputs if plain else drop(inputs, reg.input_dropout, key(0))
        carries = []
        for i, layer in enumerate(self.layers):
            carry, y = regularized_layer(
                layer,
                x,
                reg,
                rngs=key(2 * i + 1),
                deterministic=deterministic,
                initial_carry=None if initial_carry is None else initial_carry[i],
                reset_carry=None if reset_carry is None else reset_carry[i],
                seq_lengths=seq_lengths,
                resets=resets,
            )
            if self.residual and y.shape == x.shape:
                # The layer zeroed its padded outputs; the residual must not refill them.
                y = y + (x if valid is None else jnp.where(valid, x, 0)).astype(y.dtype)
            if i < self.num_layers - 1 and hidden_rate > 0:
                y = drop(y, hidden_rate, key(2 * i + 2))
            carries.append(carry)
            x = y
        raw = x
        out = raw if plain else drop(raw, reg.output_dropout, key(2 * self.num_layers))
        aux: dict[str, Array] = {"hidden": raw}
        aux.update(ar_tar_losses(out, raw, reg, seq_lengths=seq_lengths, time_axis=time_axis))
        return carries, out, aux

    def initialize_carry(self, input_shape: tuple[int, ...]) -> list[Carry]:
        """Zero carries, one per layer, for inputs ``[*batch, features]`` of the first layer."""
        batch = tuple(input_shape[:-1])
        out, size = [], input_shape[-1]
        for layer in self.layers:
            rnns = (layer,) if isinstance(layer, RNN) else (layer.forward_rnn, layer.backward_rnn)
            carry = [r.cell.initialize_carry(batch + (size,)) for r in rnns]
            out.append(carry[0] if len(carry) == 1 else tuple(carry))
            size = layer.output_features
        return out
