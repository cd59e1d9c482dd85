"""Dropout on sequences: standard, variational (locked) and embedding (word) dropout.

All use inverted scaling: kept units are divided by ``1 - rate`` during training, so the
expectation of every unit is unchanged and evaluation is the identity. ``deterministic=True``
or ``rate == 0`` returns the input itself, untouched.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.regularizers.config import check_rate

Array = jax.Array
KeyLike = jax.Array | nnx.Rngs


def as_key(rngs: KeyLike | None, argument: str = "rngs") -> Array:
    """A PRNG key from a key or an ``nnx.Rngs`` (its ``dropout`` stream)."""
    if isinstance(rngs, nnx.Rngs):
        return rngs.dropout()
    if rngs is None:
        raise ValueError(
            f"{argument} must be a PRNG key or nnx.Rngs when deterministic=False and a rate "
            "is above zero, got None"
        )
    return rngs


def keep_mask(key: Array, rate: float, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
    """Inverted-dropout multiplier: ``0`` with probability ``rate``, else ``1 / (1 - rate)``.

    ``E[mask] = 1``, so ``x * mask`` keeps the expectation of ``x``.
    """
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return jnp.where(keep, jnp.asarray(1.0 / (1.0 - rate), dtype), jnp.zeros((), dtype))


def _apply(x: Array, keep: Array, rate: float) -> Array:
    return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype))


def dropout(x: Array, rate: float, rngs: KeyLike | None = None, *, deterministic=False) -> Array:
    """Standard dropout (Srivastava et al. 2014): a fresh mask for every element and step."""
    rate = check_rate("rate", rate)
    if deterministic or rate == 0.0:
        return x
    keep = jax.random.bernoulli(as_key(rngs), 1.0 - rate, x.shape)
    return _apply(x, keep, rate)


def locked_dropout(
    x: Array,
    rate: float,
    rngs: KeyLike | None = None,
    *,
    time_axis: int = -2,
    deterministic: bool = False,
) -> Array:
    """Variational (locked) dropout: one mask per sequence, shared by every time step.

    .. math::
        y_{b,t,:} = x_{b,t,:} \\odot m_{b,:} / (1 - p), \\qquad m_{b,j} \\sim
        \\mathrm{Bernoulli}(1 - p)

    Gal & Ghahramani (2016), "A theoretically grounded application of dropout in recurrent
    neural networks"; Merity et al. (2017) call it locked dropout.

    Args:
      x: ``[*batch, time, features]`` (or any layout with ``time_axis`` naming time).
      rate: drop probability in ``[0, 1)``.
      rngs: PRNG key or ``nnx.Rngs``.
      time_axis: the axis along which the mask is constant.
      deterministic: evaluation mode (identity).
    """
    rate = check_rate("rate", rate)
    if deterministic or rate == 0.0:
        return x
    shape = list(x.shape)
    shape[time_axis] = 1
    keep = jax.random.bernoulli(as_key(rngs), 1.0 - rate, tuple(shape))
    return _apply(x, keep, rate)


def sequence_dropout(
    x: Array,
    rate: float,
    rngs: KeyLike | None = None,
    *,
    variational: bool,
    time_axis: int = -2,
    deterministic: bool = False,
) -> Array:
    """:func:`locked_dropout` when ``variational`` else :func:`dropout`."""
    if variational:
        return locked_dropout(x, rate, rngs, time_axis=time_axis, deterministic=deterministic)
    return dropout(x, rate, rngs, deterministic=deterministic)


def embedding_dropout(
    embedding: Array, rate: float, rngs: KeyLike | None = None, *, deterministic: bool = False
) -> Array:
    """Drops whole rows (word types) of an embedding matrix ``[vocab, features]``.

    .. math::
        \\tilde E_{v,:} = E_{v,:} \\, m_v / (1 - p), \\qquad m_v \\sim \\mathrm{Bernoulli}(1 - p)

    Every occurrence of a dropped word in the batch embeds to zero. One mask per call, i.e.
    per mini-batch, as in AWD-LSTM (Merity et al. 2017, ``embedded_dropout``); Gal &
    Ghahramani (2016) introduced it per sequence (:func:`embed_with_dropout`).
    """
    rate = check_rate("embedding_dropout", rate)
    if deterministic or rate == 0.0:
        return embedding
    if embedding.ndim != 2:
        raise ValueError(f"embedding must be [vocab, features], got shape {tuple(embedding.shape)}")
    keep = jax.random.bernoulli(as_key(rngs), 1.0 - rate, (embedding.shape[0], 1))
    return _apply(embedding, keep, rate)


def embed_with_dropout(
    embedding: Array,
    tokens: Array,
    rate: float,
    rngs: KeyLike | None = None,
    *,
    deterministic: bool = False,
) -> Array:
    """Embedding lookup with word-type dropout drawn per sequence (Gal & Ghahramani 2016).

    Within one sequence ``tokens[b]`` (``[*batch, time]``) every occurrence of a word type is
    dropped or kept together; different sequences draw independently. The draw for word
    ``v`` in sequence ``b`` comes from ``fold_in(key_b, v)``, so no ``[batch, vocab]`` mask
    is ever built.

    Returns:
      ``[*batch, time, features]`` embeddings, scaled by ``1 / (1 - rate)`` where kept.
    """
    rate = check_rate("embedding_dropout", rate)
    emb = jnp.take(embedding, tokens, axis=0)
    if deterministic or rate == 0.0:
        return emb
    if tokens.ndim < 1:
        raise ValueError(f"tokens must be [*batch, time], got shape {tuple(tokens.shape)}")
    batch = tokens.shape[:-1]
    flat = tokens.reshape((-1, tokens.shape[-1]))
    keys = jax.random.split(as_key(rngs), flat.shape[0])

    def draws(key, seq):
        return jax.vmap(lambda v: jax.random.uniform(jax.random.fold_in(key, v)))(seq)

    keep = (jax.vmap(draws)(keys, flat) >= rate).reshape(batch + (tokens.shape[-1], 1))
    return _apply(emb, keep, rate)
