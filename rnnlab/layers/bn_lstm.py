"""The batch-normalised LSTM layer: :class:`rnnlab.RNN` over a
:class:`~rnnlab.cells.BNLSTMCell` (Cooijmans et al. 2016)."""

from __future__ import annotations

from flax import nnx

from rnnlab.cells.batchnorm import BNLSTMCell
from rnnlab.layers.rnn import RNN


class BNLSTM(RNN):
    """A BN-LSTM layer over batch-major sequences that keeps the running averages.

    In training (``layer.train()``, the default) every step normalises with the statistics
    of the valid examples of the batch at that step, and after the sequence the running
    averages move towards them (:meth:`~rnnlab.cells.BNLSTMCell.update_statistics`). In
    evaluation (``layer.eval()``) the cell normalises with its running averages and nothing
    is updated, so an example scores the same alone as in any batch.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.layers import BNLSTM
        >>> layer = BNLSTM(3, 8, max_stat_steps=20, rngs=nnx.Rngs(0))
        >>> y = layer(jnp.ones((4, 10, 3)))          # training: updates the averages
        >>> layer.eval()
        >>> y = layer(jnp.ones((4, 10, 3)))          # evaluation: uses them
        >>> y.shape
        (4, 10, 8)

    Args:
      in_features, hidden_features: sizes.
      momentum: running-average momentum.
      time_major: inputs are ``[time, *batch, features]``.
      return_carry: return ``(carry, outputs)``.
      rngs: parameter stream.
      **cell_kwargs: passed to :class:`~rnnlab.cells.BNLSTMCell` (``max_stat_steps``,
        ``gamma_init``, ...).
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        momentum: float = 0.99,
        time_major: bool = False,
        return_carry: bool = False,
        rngs: nnx.Rngs,
        **cell_kwargs,
    ):
        cell = BNLSTMCell(in_features, hidden_features, momentum=momentum, rngs=rngs, **cell_kwargs)
        super().__init__(cell, time_major=time_major, return_carry=return_carry)
