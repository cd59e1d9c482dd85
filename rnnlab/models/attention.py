"""Attention over a padded source sequence: Bahdanau (additive) and Luong (multiplicative).

Both score every source position ``j`` against a query ``q`` (the decoder state), normalise
the scores with a softmax over the *valid* source positions only, and return the weighted
sum of the values (the context vector)::

    a_j = exp(e_j) [j < L] / sum_k exp(e_k) [k < L],      c = sum_j a_j v_j

Padding positions get weight exactly zero, and a source of length 0 gets all-zero weights
and a zero context instead of NaNs.

The key projections do not depend on the decoder step, so :meth:`BahdanauAttention.keys`
and :meth:`LuongAttention.keys` compute them once per source sequence and the per-step
call only projects the query.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells.base import check_positive_int

Array = jax.Array

SCORES = ("additive", "dot", "general")


def source_mask(lengths: Array, num_steps: int) -> Array:
    """Bool ``[B, S]`` with ``mask[b, j] = j < lengths[b]``."""
    return jnp.arange(num_steps, dtype=jnp.int32)[None, :] < lengths.astype(jnp.int32)[:, None]


def masked_softmax(scores: Array, mask: Array) -> Array:
    """Softmax of ``scores`` ``[..., S]`` over the positions where ``mask`` is true.

    Masked positions get weight 0; a row with no valid position gets all zeros.
    """
    scores = scores.astype(jnp.float32)
    low = jnp.finfo(jnp.float32).min
    shifted = scores - jnp.max(jnp.where(mask, scores, low), axis=-1, keepdims=True)
    e = jnp.where(mask, jnp.exp(jnp.where(mask, shifted, 0.0)), 0.0)
    total = jnp.sum(e, axis=-1, keepdims=True)
    return e / jnp.where(total > 0, total, 1.0)


def attend(weights: Array, values: Array) -> Array:
    """Context ``c_b = sum_j w_bj v_bj`` for weights ``[B, S]`` and values ``[B, S, F]``."""
    return jnp.einsum("bs,bsf->bf", weights, values.astype(jnp.float32))


class BahdanauAttention(nnx.Module):
    """Additive attention (Bahdanau, Cho & Bengio 2015).

    .. math::
        e_j = v^\\top \\tanh(W_q q + W_k k_j + b), \\qquad a = \\mathrm{softmax}_{j<L}(e)

    Args:
      query_features: size of the query (decoder state).
      key_features: size of the keys (encoder outputs).
      attention_features: size of the hidden layer of the score network.
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    def __init__(
        self,
        query_features: int,
        key_features: int,
        attention_features: int,
        *,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        check_positive_int("query_features", query_features)
        check_positive_int("key_features", key_features)
        check_positive_int("attention_features", attention_features)
        self.query_proj = nnx.Linear(
            query_features, attention_features, use_bias=False, dtype=dtype, rngs=rngs
        )
        self.key_proj = nnx.Linear(key_features, attention_features, dtype=dtype, rngs=rngs)
        self.score = nnx.Linear(attention_features, 1, use_bias=False, dtype=dtype, rngs=rngs)

    def keys(self, keys: Array) -> Array:
        """``W_k k_j + b`` for all source positions, computed once per sequence."""
        return self.key_proj(keys).astype(jnp.float32)

    def __call__(
        self, query: Array, projected_keys: Array, values: Array, mask: Array
    ) -> tuple[Array, Array]:
        """Context ``[B, F]`` and weights ``[B, S]`` for a query ``[B, Q]``."""
        q = self.query_proj(query).astype(jnp.float32)
        hidden = jnp.tanh(projected_keys + q[:, None, :])
        scores = self.score(hidden)[..., 0]
        weights = masked_softmax(scores, mask)
        return attend(weights, values), weights


class LuongAttention(nnx.Module):
    """Multiplicative attention (Luong, Pham & Manning 2015).

    .. math::
        e_j = q^\\top k_j \\;(\\text{dot}), \\qquad e_j = q^\\top W k_j \\;(\\text{general})

    ``dot`` needs equal query and key sizes. ``scale`` divides the scores by
    ``sqrt(key size)`` (Vaswani et al. 2017), off by default as in Luong et al.
    """

    def __init__(
        self,
        query_features: int,
        key_features: int,
        *,
        score: str = "general",
        scale: bool = False,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        check_positive_int("query_features", query_features)
        check_positive_int("key_features", key_features)
        if score not in ("dot", "general"):
            raise ValueError(f"score must be 'dot' or 'general', got {score!r}")
        if score == "dot" and query_features != key_features:
            raise ValueError(
                "score='dot' needs query_features == key_features, got "
                f"{query_features} and {key_features}"
            )
        self.score_type, self.scale = score, scale
        self.key_features = key_features
        self.key_proj = (
            nnx.Linear(key_features, query_features, use_bias=False, dtype=dtype, rngs=rngs)
            if score == "general"
            else None
        )

    def keys(self, keys: Array) -> Array:
        """``W k_j`` (general) or ``k_j`` (dot), computed once per sequence."""
        out = keys if self.key_proj is None else self.key_proj(keys)
        return out.astype(jnp.float32)

    def __call__(
        self, query: Array, projected_keys: Array, values: Array, mask: Array
    ) -> tuple[Array, Array]:
        """Context ``[B, F]`` and weights ``[B, S]`` for a query ``[B, Q]``."""
        scores = jnp.einsum("bq,bsq->bs", query.astype(jnp.float32), projected_keys)
        if self.scale:
            scores = scores / jnp.sqrt(jnp.float32(self.key_features))
        weights = masked_softmax(scores, mask)
        return attend(weights, values), weights


def make_attention(
    kind: str, query_features: int, key_features: int, *, attention_features: int, dtype, rngs
) -> BahdanauAttention | LuongAttention:
    """``kind``: ``"additive"`` (Bahdanau), ``"dot"`` or ``"general"`` (Luong)."""
    if kind == "additive":
        return BahdanauAttention(
            query_features, key_features, attention_features, dtype=dtype, rngs=rngs
        )
    if kind in ("dot", "general"):
        return LuongAttention(query_features, key_features, score=kind, dtype=dtype, rngs=rngs)
    raise ValueError(f"attention must be one of {SCORES}, got {kind!r}")
