"""Decoding autoregressive models: greedy, beam search, and sampling.

Every decoder here drives a *step function* that carries the recurrent state::

    step_fn(state, tokens) -> (state, logits)     tokens int [N], logits [N, V]

so a prefix is never re-run. ``state`` is any pytree whose leaves have the batch ``N`` as
their leading axis (beam search tiles it to ``N * beam_size`` rows and reorders it as beams
are chosen). The decoders are pure JAX and can be jitted with the step function closed over.
They are closed-loop recurrences (:mod:`rnnlab.layers.feedback`): each step's input is the
token the step before chose. Beam search stops early through ``lax.while_loop``, once no
live hypothesis can beat the finished ones.

Outputs are padded: after a sequence emits ``eos_id`` the following positions hold
``pad_id``; ``lengths`` count the generated tokens including the end token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from rnnlab.layers.feedback import feedback_loop

Array = jax.Array
StepFn = Callable[[Any, Array], tuple[Any, Array]]

NEG_INF = float("-inf")


# -- sampling -------------------------------------------------------------------------------
def top_k_mask(logits: Array, k: int) -> Array:
    """True for the ``k`` largest logits of each row (ties at the k-th value are kept)."""
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return logits >= kth


def nucleus_mask(logits: Array, top_p: float) -> Array:
    """True for the smallest set of most likely tokens whose probability reaches ``top_p``.

    Nucleus (top-p) sampling, Holtzman et al. 2020: a token is kept when the probability
    mass of the strictly more likely tokens is below ``top_p``; the most likely token is
    always kept.
    """
    order = jnp.argsort(-logits, axis=-1)
    probs = jax.nn.softmax(jnp.take_along_axis(logits, order, axis=-1), axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    keep_sorted = mass_before < top_p
    inverse = jnp.argsort(order, axis=-1)
    return jnp.take_along_axis(keep_sorted, inverse, axis=-1)


def filter_logits(
    logits: Array, *, temperature: float | Array = 1.0, top_k: int = 0, top_p: float = 1.0
) -> Array:
    """Float32 logits of the sampling distribution: scaled by ``1 / temperature``, with
    tokens outside the top ``k`` (``top_k`` 0: all) and outside the nucleus ``top_p`` set to
    ``-inf``. ``softmax`` of the result is the distribution :func:`sample_logits` draws from.
    """
    logits = logits.astype(jnp.float32) / jnp.asarray(temperature, jnp.float32)
    if top_k > 0:
        logits = jnp.where(top_k_mask(logits, top_k), logits, NEG_INF)
    if top_p < 1.0:
        logits = jnp.where(nucleus_mask(logits, top_p), logits, NEG_INF)
    return logits


def check_sampling(temperature: float, top_k: int, top_p: float, vocab_size: int) -> None:
    """Raises a ValueError naming the first sampling argument out of range."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= vocab_size:
        raise ValueError(f"top_k must be an int in [0, {vocab_size}], got {top_k!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


def sample_logits(
    key: Array,
    logits: Array,
    *,
    temperature: float | Array = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> Array:
    """Draws one token per row of ``logits`` ``[..., V]`` (int32).

    A Python ``temperature`` of 0 means greedy decoding (argmax); otherwise tokens are drawn
    from ``softmax(filter_logits(...))``.
    """
    if isinstance(temperature, int | float) and temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    filtered = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    return jax.random.categorical(key, filtered, axis=-1).astype(jnp.int32)


# -- greedy and sampled decoding ------------------------------------------------------------
def _check_decode_args(start_tokens: Array, max_length: int) -> None:
    if start_tokens.ndim != 1 or not jnp.issubdtype(start_tokens.dtype, jnp.integer):
        raise ValueError(
            f"start_tokens must be int [batch], got {start_tokens.dtype} "
            f"{tuple(start_tokens.shape)}"
        )
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive int, got {max_length!r}")


def sample_decode(
    step_fn: StepFn,
    state: Any,
    start_tokens: Array,
    *,
    max_length: int,
    eos_id: int,
    pad_id: int = 0,
    key: Array | None = None,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> tuple[Array, Array, Array]:
    """Decodes up to ``max_length`` tokens one step at a time.

    ``temperature`` 0 (default) is greedy decoding; otherwise tokens are sampled (see
    :func:`sample_logits`) with ``key``.

    Returns:
      ``(tokens [N, max_length], lengths [N], log_probs [N])``: the log-probability (of the
      unfiltered model distribution) of each decoded sequence up to and including its end.
    """
    _check_decode_args(start_tokens, max_length)
    greedy = isinstance(temperature, int | float) and temperature == 0
    if not greedy and key is None:
        raise ValueError("key must be given when temperature > 0 (sampling)")
    keys = jax.random.split(key if key is not None else jax.random.key(0), max_length)

    def body(carry, k):
        state, tokens, done = carry
        state, logits = step_fn(state, tokens)
        if greedy:
            nxt = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        else:
            nxt = sample_logits(k, logits, temperature=temperature, top_k=top_k, top_p=top_p)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits.astype(jnp.float32)), nxt[:, None], -1)
        out = jnp.where(done, jnp.int32(pad_id), nxt)
        logp = jnp.where(done, 0.0, logp[:, 0])
        return (state, nxt, done | (nxt == eos_id)), (out, logp, ~done)

    init = (state, start_tokens.astype(jnp.int32), jnp.zeros(start_tokens.shape, jnp.bool_))
    _, (tokens, logps, live) = feedback_loop(body, init, keys)
    lengths = jnp.sum(live, axis=0).astype(jnp.int32)
    return tokens.T, lengths, jnp.sum(logps, axis=0)


def greedy_decode(step_fn: StepFn, state: Any, start_tokens: Array, **kwargs):
    """:func:`sample_decode` at temperature 0: the most likely token at every step."""
    return sample_decode(step_fn, state, start_tokens, temperature=0.0, **kwargs)


# -- beam search ----------------------------------------------------------------------------
def length_penalty(length: Array, alpha: float) -> Array:
    """GNMT length penalty (Wu et al. 2016): ``((5 + |Y|) / 6) ** alpha``; 1 when alpha is 0."""
    return ((5.0 + length.astype(jnp.float32)) / 6.0) ** jnp.float32(alpha)


def _gather_beams(x: Array, idx: Array) -> Array:
    """``x[b, idx[b, k]]`` for ``x`` ``[B, K, ...]`` and ``idx`` ``[B, K']``."""
    ix = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, ix, axis=1)


def beam_search(
    step_fn: StepFn,
    state: Any,
    start_tokens: Array,
    *,
    beam_size: int,
    max_length: int,
    eos_id: int,
    pad_id: int = 0,
    alpha: float = 0.0,
) -> tuple[Array, Array, Array]:
    """Beam search with length normalisation.

    At every step the ``beam_size`` best one-token extensions of the live hypotheses (by
    total log-probability) are kept. An extension ending in ``eos_id`` leaves the beam and
    joins the finished set with the normalised score ``log p(Y) / lp(|Y|)``
    (:func:`length_penalty`); hypotheses still alive at ``max_length`` are finished there.
    Because a finished hypothesis takes one of the step's slots, ``beam_size=1`` is exactly
    greedy decoding; a beam at least as wide as the number of prefixes is exhaustive.

    The search stops early once no live hypothesis can beat the worst kept finished one:
    ``log p`` only falls as a hypothesis grows and ``lp`` rises, so ``log p / lp(max_length)``
    bounds every continuation.

    Returns:
      ``(sequences [N, K, max_length], scores [N, K], lengths [N, K])``, best first.
    """
    _check_decode_args(start_tokens, max_length)
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    n, k, steps = start_tokens.shape[0], beam_size, max_length
    tile = lambda x: jnp.repeat(x, k, axis=0)
    lp_max = length_penalty(jnp.int32(steps), alpha)

    init = dict(
        i=jnp.int32(0),
        state=jax.tree.map(tile, state),
        tokens=tile(start_tokens.astype(jnp.int32)),
        alive_seq=jnp.full((n, k, steps), pad_id, jnp.int32),
        alive_logp=jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32), (n, 1)),
        fin_seq=jnp.full((n, k, steps), pad_id, jnp.int32),
        fin_score=jnp.full((n, k), NEG_INF, jnp.float32),
        fin_len=jnp.zeros((n, k), jnp.int32),
    )

    def cond(c):
        bound = jnp.max(c["alive_logp"], axis=1) / lp_max
        worst = jnp.min(c["fin_score"], axis=1)
        hopeless = jnp.isneginf(bound) | (bound <= worst)
        return (c["i"] < steps) & ~jnp.all(hopeless)

    def body(c):
        i = c["i"]
        state, logits = step_fn(c["state"], c["tokens"])
        vocab = logits.shape[-1]
        logp = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(n, k, vocab)
        cand = (c["alive_logp"][..., None] + logp).reshape(n, k * vocab)
        top_logp, top_idx = jax.lax.top_k(cand, k)
        beam, tok = top_idx // vocab, (top_idx % vocab).astype(jnp.int32)
        seqs = _gather_beams(c["alive_seq"], beam).at[:, :, i].set(tok)

        length = i + 1
        ends = (tok == eos_id) | (length == steps)
        new_score = jnp.where(ends, top_logp / length_penalty(length, alpha), NEG_INF)
        all_score = jnp.concatenate([c["fin_score"], new_score], axis=1)
        all_seq = jnp.concatenate([c["fin_seq"], seqs], axis=1)
        all_len = jnp.concatenate([c["fin_len"], jnp.full((n, k), length, jnp.int32)], axis=1)
        fin_score, keep = jax.lax.top_k(all_score, k)

        flat_beam = (beam + jnp.arange(n)[:, None] * k).reshape(-1)
        return dict(
            i=i + 1,
            state=jax.tree.map(lambda x: x[flat_beam], state),
            tokens=tok.reshape(-1),
            alive_seq=seqs,
            alive_logp=jnp.where(tok == eos_id, NEG_INF, top_logp),
            fin_seq=_gather_beams(all_seq, keep),
            fin_score=fin_score,
            fin_len=jnp.take_along_axis(all_len, keep, axis=1),
        )

    out = jax.lax.while_loop(cond, body, init)
    return out["fin_seq"], out["fin_score"], out["fin_len"]
