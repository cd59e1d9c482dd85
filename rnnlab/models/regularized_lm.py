"""The language model with the recurrent regularisation toolkit switched on from config.

:class:`RegularizedLanguageModel` is :class:`rnnlab.models.LanguageModel` (same parameters,
same carried state for truncated backpropagation, same sampling) whose forward pass applies
a :class:`rnnlab.regularizers.Regularization` in the order of AWD-LSTM (Merity et al. 2017)::

    E -> embedding dropout (whole word types) -> lookup -> input dropout
      -> layer 1 (weight drop, recurrent dropout) -> hidden dropout -> ... -> layer L
      -> raw -> output dropout -> decoder            loss += AR(dropped) + TAR(raw)

Masks that must stay fixed over time (locked dropout with ``variational``, weight drop,
recurrent dropout) are drawn once per batch outside the scan. Everything is the identity at
evaluation, so validation and sampling run the plain model. Registered as
``"regularized_language_model"``; ``config.model.regularization`` holds the fields of
``Regularization`` (``Regularization.awd_lstm().to_dict()`` for the full recipe).

Zoneout is refused: its evaluation form changes the recurrence, which the one-step sampler
of the plain model does not apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.models import register
from rnnlab.models.language_model import LanguageModel, run_rnn
from rnnlab.regularizers import (
    Regularization,
    ar_tar_losses,
    embedding_dropout,
    prepare_layer,
    sequence_dropout,
)

Array = jax.Array


class RegularizedLanguageModel(LanguageModel):
    """:class:`LanguageModel` trained under a :class:`Regularization` (see the module doc).

    Args:
      vocab_size: number of tokens.
      regularization: a ``Regularization``, or a mapping/ConfigDict of its fields; ``None``
        is the plain model (bit-identical outputs).
      **kwargs: as for :class:`LanguageModel`; its ``dropout`` must stay 0 (the
        regularisation's input/hidden/output dropout replace it).
    """

    def __init__(self, vocab_size: int, *, regularization: Any = None, **kwargs):
        reg = Regularization.from_config(regularization)
        if reg.zoneout_c > 0 or reg.zoneout_h > 0:
            raise ValueError(
                "regularization.zoneout_c/zoneout_h must be 0 for the language model (its "
                f"sampler runs the plain cell), got {reg.zoneout_c}/{reg.zoneout_h}"
            )
        if kwargs.get("dropout", 0.0):
            raise ValueError(
                f"dropout must be 0 when regularization is given (use its input_dropout, "
                f"hidden_dropout, output_dropout), got {kwargs['dropout']!r}"
            )
        super().__init__(vocab_size, **kwargs)
        self.regularization = reg

    def __call__(
        self,
        batch: Mapping[str, Array],
        *,
        train: bool = False,
        rngs: nnx.Rngs | None = None,
        carry: Any = None,
    ) -> tuple[Array, dict[str, Any]]:
        """Logits ``[B, T, V]``; ``aux["carry"]``, ``aux["hidden"]`` and, in training,
        ``aux["losses"]`` with the weighted ``ar``/``tar`` terms."""
        reg = self.regularization
        tokens = batch["inputs"]
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(
                f"batch['inputs'] must be integer tokens [batch, time], got "
                f"{tokens.dtype} {tuple(tokens.shape)}"
            )
        if carry is None:
            carry = self.init_carry(tokens.shape[0])
        resets = batch.get("resets")
        deterministic = not train or not reg.stochastic
        num_layers = len(self.rnn.layers)
        if deterministic:
            keys = [None] * (2 * num_layers + 2)
        elif rngs is None:
            raise ValueError("rngs must be given to train with regularization, got None")
        else:
            keys = list(jax.random.split(rngs.dropout(), 2 * num_layers + 2))

        def drop(x, rate, key):
            return sequence_dropout(
                x, rate, key, variational=reg.variational, deterministic=deterministic
            )

        table = embedding_dropout(
            self.embed.embedding[...], reg.embedding_dropout, keys[0], deterministic=deterministic
        )
        x = jnp.take(table, tokens, axis=0)
        if self.dtype is not None:
            x = x.astype(self.dtype)
        x = drop(x, reg.input_dropout, keys[1])
        carries = []
        for i, layer in enumerate(self.rnn.layers):
            plan = prepare_layer(
                layer,
                reg,
                batch_shape=tokens.shape[:1],
                num_steps=tokens.shape[1],
                rngs=keys[2 + 2 * i],
                deterministic=deterministic,
            )
            c, x = run_rnn(layer, x, carry[i], resets, plan.params)
            carries.append(c)
            if i < num_layers - 1:
                x = drop(x, reg.hidden_dropout, keys[3 + 2 * i])
        raw = x
        x = drop(raw, reg.output_dropout, keys[-1])
        aux: dict[str, Any] = {"carry": carries, "hidden": x}
        if train:
            aux["losses"] = ar_tar_losses(x, raw, reg)
        return self.decode(x), aux


@register("regularized_language_model")
def _build(info: Mapping[str, Any], *, rngs: nnx.Rngs, **kwargs) -> RegularizedLanguageModel:
    return RegularizedLanguageModel(int(info["vocab_size"]), rngs=rngs, **kwargs)
