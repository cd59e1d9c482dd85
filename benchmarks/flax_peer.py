"""Flax's own recurrent cells in the sequence classifier: the peer of rnnlab's cells.

The results table compares rnnlab's GRU and LSTM with Flax's stock ``nnx.GRUCell`` and
``nnx.OptimizedLSTMCell`` trained with the same budget. The model here is the
:class:`rnnlab.models.SequenceClassifier` with only the recurrence swapped: the stock cell
runs in ``flax.nnx.RNN`` (Flax's defaults: LeCun-normal input kernels, orthogonal
recurrent kernels, zero biases), then the same pooling over valid steps and the same
linear head. A peer for comparisons, not part of the package: importing this module
registers it as ``"flax_classifier"`` (``experiments/mnist1d.py`` does so)::

    import benchmarks.flax_peer  # noqa: F401
    config.model.name = "flax_classifier"
    config.model.cell = "gru"            # or "lstm"
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells.base import check_positive_int
from rnnlab.models import Model, register, resolve_dtype
from rnnlab.models.classifier import POOLINGS, pool
from rnnlab.options import opt

Array = jax.Array

FLAX_CELLS = {"gru": nnx.GRUCell, "lstm": nnx.OptimizedLSTMCell}


@register("flax_classifier")
@dataclasses.dataclass(frozen=True)
class FlaxClassifierConfig:
    """The options of :class:`FlaxClassifier` a config sets (the rest come from the data)."""

    hidden_features: int = opt(128, "the recurrent stack.")
    num_layers: int = opt(1, "the recurrent stack.")
    cell: str = opt("gru", '``"gru"`` (``nnx.GRUCell``) or ``"lstm"`` (``nnx.OptimizedLSTMCell``).')
    pooling: str = opt(
        "last", "``last`` | ``mean`` | ``max`` over the valid steps (as the classifier)."
    )
    dtype: Any = opt(None, "compute dtype; parameters stay ``param_dtype``.")
    param_dtype: Any = opt("float32", "FlaxClassifier argument param_dtype")

    def build(self, info: Mapping[str, Any], rngs: nnx.Rngs) -> FlaxClassifier:
        """The model for the dataset ``info`` describes, from every option."""
        return _build(info, rngs=rngs, **vars(self))


class FlaxClassifier(Model):
    """Stacked ``nnx.RNN`` of stock Flax cells -> pooling -> linear head.

    Args:
      input_features: features per step of the float inputs ``[B, T, F]``.
      num_outputs: classes (logits) or regression targets.
      hidden_features, num_layers: the recurrent stack.
      cell: ``"gru"`` (``nnx.GRUCell``) or ``"lstm"`` (``nnx.OptimizedLSTMCell``).
      pooling: ``last`` | ``mean`` | ``max`` over the valid steps (as the classifier).
      dtype: compute dtype; parameters stay ``param_dtype``.
    """

    def __init__(
        self,
        input_features: int,
        num_outputs: int,
        *,
        hidden_features: int = 128,
        num_layers: int = 1,
        cell: str = "gru",
        pooling: str = "last",
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if cell not in FLAX_CELLS:
            raise ValueError(f"cell must be one of {sorted(FLAX_CELLS)}, got {cell!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        check_positive_int("num_layers", num_layers)
        dtype = resolve_dtype(dtype)
        # A config names the parameter dtype ("float32"); library calls may pass a dtype.
        param_dtype = resolve_dtype(param_dtype) if isinstance(param_dtype, str) else param_dtype
        self.pooling, self.hidden_features = pooling, hidden_features
        sizes = [input_features] + [hidden_features] * num_layers
        # No RNG stream is kept (rngs=False): the zero carry is passed in on every call.
        self.layers = nnx.List(
            [
                nnx.RNN(
                    FLAX_CELLS[cell](
                        sizes[i], hidden_features, dtype=dtype, param_dtype=param_dtype, rngs=rngs
                    ),
                    rngs=False,
                )
                for i in range(num_layers)
            ]
        )
        self.head = nnx.Linear(
            hidden_features, num_outputs, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )

    def _zero_carry(self, cell: nnx.Module, batch: int) -> Any:
        h = jnp.zeros((batch, self.hidden_features), jnp.float32)
        return (h, h) if isinstance(cell, nnx.OptimizedLSTMCell) else h

    def forward(
        self, batch: Mapping[str, Array], *, rngs: nnx.Rngs | None, carry: Any
    ) -> tuple[Array, dict[str, Any]]:
        """Float32 outputs ``[B, num_outputs]``; ``aux["pooled"]``, ``aux["hidden"]``."""
        del rngs, carry  # no dropout; every sequence starts from the zero state
        x = batch["inputs"]
        if x.ndim == 2:
            x = x[..., None]
        x = x.astype(jnp.float32) if not jnp.issubdtype(x.dtype, jnp.floating) else x
        lengths = batch.get("seq_lengths")
        if lengths is None:
            lengths = jnp.full(x.shape[:1], x.shape[1], jnp.int32)
        h = x
        for layer in self.layers:
            zero = self._zero_carry(layer.cell, x.shape[0])
            h = layer(h, initial_carry=zero, seq_lengths=lengths)
        pooled = pool(h, lengths, self.pooling)
        out = self.head(pooled).astype(jnp.float32)
        return out, {"pooled": pooled, "hidden": h}


def _build(info: Mapping[str, Any], *, rngs: nnx.Rngs, **kwargs) -> FlaxClassifier:
    """Classifier of Flax's cells for ``task == "classification"`` (or ``"regression"``)."""
    task = info.get("task")
    key = {"classification": "num_classes", "regression": "output_features"}.get(task)
    if key is None or not info.get(key):
        raise ValueError(
            f"flax_classifier fits data with task 'classification' or 'regression', got {task!r}"
        )
    return FlaxClassifier(int(info.get("input_features") or 1), int(info[key]), rngs=rngs, **kwargs)
