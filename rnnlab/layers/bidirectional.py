"""Two :class:`~rnnlab.layers.RNN` layers over the same sequence, one each way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.layers.rnn import RNN

Array = jax.Array
Carry = Any

MERGES: dict[str, Callable[[Array, Array], Array]] = {
    "concat": lambda a, b: jnp.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
}


def merge_fn(merge: str | Callable[[Array, Array], Array]) -> Callable[[Array, Array], Array]:
    """The merge named ``merge`` (``"concat"``, ``"sum"``) or ``merge`` itself."""
    return MERGES[merge] if isinstance(merge, str) else merge


class Bidirectional(nnx.Module):
    """Runs one RNN forward and another backward and merges their aligned outputs.

    The backward layer reverses only the valid part of each sequence, so with
    ``seq_lengths`` output ``t`` of both directions refers to the same input step.
    ``merge`` is ``"concat"`` (default), ``"sum"`` or a callable ``(fwd, bwd) -> out``.
    The carry is the pair ``(forward_carry, backward_carry)``.
    """

    def __init__(
        self,
        forward_rnn: RNN,
        backward_rnn: RNN,
        *,
        merge: str | Callable[[Array, Array], Array] = "concat",
        return_carry: bool = False,
    ):
        if isinstance(merge, str) and merge not in MERGES:
            raise ValueError(f"merge must be one of {sorted(MERGES)} or a callable, got {merge!r}")
        self.forward_rnn, self.backward_rnn = forward_rnn, backward_rnn
        self.merge = merge
        self.return_carry = return_carry

    @property
    def output_features(self) -> int:
        f, b = self.forward_rnn.output_features, self.backward_rnn.output_features
        return f + b if self.merge == "concat" else f

    @property
    def time_major(self) -> bool:
        return self.forward_rnn.time_major

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: tuple[Carry, Carry] | None = None,
        seq_lengths: Array | None = None,
        resets: Array | None = None,
        reset_carry: tuple[Carry, Carry] | None = None,
        return_carry: bool | None = None,
        layer_kwargs: tuple[dict, dict] = ({}, {}),
    ):
        """Runs both directions; ``layer_kwargs`` adds per-direction arguments of
        :meth:`RNN.__call__` (``params``, ``step_transform``, ... from a regulariser)."""
        return_carry = self.return_carry if return_carry is None else return_carry
        c_f, c_b = (None, None) if initial_carry is None else initial_carry
        r_f, r_b = (None, None) if reset_carry is None else reset_carry
        kw = dict(seq_lengths=seq_lengths, resets=resets, return_carry=True)
        carry_f, y_f = self.forward_rnn(
            inputs, initial_carry=c_f, reset_carry=r_f, reverse=False, **kw, **layer_kwargs[0]
        )
        carry_b, y_b = self.backward_rnn(
            inputs,
            initial_carry=c_b,
            reset_carry=r_b,
            reverse=True,
            keep_order=True,
            **kw,
            **layer_kwargs[1],
        )
        out = merge_fn(self.merge)(y_f, y_b)
        return ((carry_f, carry_b), out) if return_carry else out
