"""Pieces every task's metrics share: per-row weights and weighted sums.

A task turns ``(outputs, aux, batch)`` into weighted sums ``{name: (sum, weight)}``; the mean
over any number of batches (and devices) is ``sum(sums) / sum(weights)``, exact for padded
final batches whose ``weights`` are zero.

Row weights: ``batch["weights"]`` is ``[B]`` or, for token targets, ``[B, T]``; a sequence's
weight is then its first position's (0 for padding rows).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
Sums = dict[str, tuple[Array, Array]]


def weights(batch: Mapping[str, Array], shape: tuple[int, ...]) -> Array:
    """``batch["weights"]`` broadcast to ``shape`` (ones when the batch has none)."""
    w = batch.get("weights")
    if w is None:
        return jnp.ones(shape, jnp.float32)
    return jnp.broadcast_to(w.astype(jnp.float32), shape)


def row_weights(batch: Mapping[str, Array], batch_size: int) -> Array:
    """Per-sequence weights ``[B]`` (ones when the batch has none)."""
    w = batch.get("weights")
    if w is None:
        return jnp.ones((batch_size,), jnp.float32)
    w = jnp.asarray(w, jnp.float32)
    return w.reshape(batch_size, -1)[:, 0]


def _weighted(values: Array, w: Array) -> tuple[Array, Array]:
    return jnp.sum(values.astype(jnp.float32) * w), jnp.sum(w)


def weighted(values: Array, w: Array) -> tuple[Array, Array]:
    """``(sum(values * w), sum(w))`` in float32."""
    return jnp.sum(values.astype(jnp.float32) * w), jnp.sum(w)


def token_cross_entropy(logits: Array, targets: Array, weights: Array) -> Sums:
    """Weighted token cross-entropy (nats) and accuracy for ``logits`` ``[..., V]``."""
    logits = logits.astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    total = jnp.sum(weights)
    return {"loss": (jnp.sum(ce * weights), total), "accuracy": (jnp.sum(correct * weights), total)}
