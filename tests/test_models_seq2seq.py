"""Attention against NumPy formulas, and the translator's decoding against its own
teacher-forced scoring (greedy, beam of width one, scheduled sampling, padding)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rnnlab.models.attention import (
    BahdanauAttention,
    LuongAttention,
    masked_softmax,
    source_mask,
)
from rnnlab.models.seq2seq import Translator

forward = nnx.jit(lambda model, batch: model(batch, train=False))  # evaluation mode


def np_masked_softmax(scores, mask):
    out = np.zeros_like(scores, np.float64)
    for b in range(scores.shape[0]):
        valid = np.flatnonzero(mask[b])
        if len(valid):
            e = np.exp(scores[b, valid] - scores[b, valid].max())
            out[b, valid] = e / e.sum()
    return out


def test_masked_softmax_weights_sum_to_one_over_valid_positions_only():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4, 6)).astype(np.float32) * 3
    lengths = np.array([6, 3, 1, 0])
    mask = np.asarray(source_mask(jnp.asarray(lengths), 6))
    w = np.asarray(masked_softmax(jnp.asarray(scores), jnp.asarray(mask)))
    np.testing.assert_allclose(w, np_masked_softmax(scores, mask), atol=1e-6)
    np.testing.assert_allclose(w.sum(axis=1), [1, 1, 1, 0], atol=1e-6)
    assert np.all(w[~mask] == 0.0)


def _inputs(seed=0, q=5, k=7, s=6):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(3, q)).astype(np.float32)
    keys = rng.normal(size=(3, s, k)).astype(np.float32)
    mask = np.arange(s)[None, :] < np.array([6, 4, 1])[:, None]
    return query, keys, mask


def test_bahdanau_attention_matches_the_additive_score():
    query, keys, mask = _inputs()
    att = BahdanauAttention(5, 7, 4, rngs=nnx.Rngs(0))
    ctx, w = att(
        jnp.asarray(query), att.keys(jnp.asarray(keys)), jnp.asarray(keys), jnp.asarray(mask)
    )
    Wq = np.asarray(att.query_proj.kernel[...])
    Wk, bk = np.asarray(att.key_proj.kernel[...]), np.asarray(att.key_proj.bias[...])
    v = np.asarray(att.score.kernel[...])[:, 0]
    scores = np.tanh((query @ Wq)[:, None, :] + keys @ Wk + bk) @ v  # e_j = v.tanh(Wq q + Wk k_j)
    ref = np_masked_softmax(scores, mask)
    np.testing.assert_allclose(np.asarray(w), ref, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ctx), np.einsum("bs,bsf->bf", ref, keys), atol=1e-5)


@pytest.mark.parametrize("score", ["dot", "general"])
def test_luong_attention_matches_the_multiplicative_score(score):
    query, keys, mask = _inputs(1, q=7, k=7)
    att = LuongAttention(7, 7, score=score, rngs=nnx.Rngs(0))
    ctx, w = att(
        jnp.asarray(query), att.keys(jnp.asarray(keys)), jnp.asarray(keys), jnp.asarray(mask)
    )
    W = np.asarray(att.key_proj.kernel[...]) if score == "general" else np.eye(7)
    scores = np.einsum("bq,bsq->bs", query, keys @ W)  # q . W k_j
    ref = np_masked_softmax(scores, mask)
    np.testing.assert_allclose(np.asarray(w), ref, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ctx), np.einsum("bs,bsf->bf", ref, keys), atol=1e-5)
    with pytest.raises(ValueError, match="query_features == key_features"):
        LuongAttention(5, 7, score="dot", rngs=nnx.Rngs(0))


EOS, BOS = 3, 2


def translator(attention, **kw):
    return Translator(
        10,
        10,
        eos_id=EOS,
        bos_id=BOS,
        attention=attention,
        embed_features=6,
        hidden_features=8,
        attention_features=6,
        rngs=nnx.Rngs(0),
        **kw,
    )


def batch():
    return {
        "inputs": jnp.array([[4, 5, 6, 7], [8, 9, 0, 0], [5, 0, 0, 0]], jnp.int32),
        "input_lengths": jnp.array([4, 2, 1], jnp.int32),
        "targets": jnp.array([[7, 6, 5, 4, 3], [9, 8, 3, 0, 0], [5, 3, 0, 0, 0]], jnp.int32),
        "target_lengths": jnp.array([5, 3, 2], jnp.int32),
    }


@pytest.mark.parametrize("attention", ["additive", "dot"])
def test_translator_attends_over_valid_source_positions_only(attention):
    model = translator(attention, eval_beam_size=0)
    b = batch()
    logits, aux = forward(model, b)
    w = np.asarray(aux["attention"])  # [B, T, S]
    assert logits.shape == (3, 5, 10) and w.shape == (3, 5, 4)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    for i, n in enumerate([4, 2, 1]):
        assert np.all(w[i, :, n:] == 0.0)
    # Junk in the source padding changes nothing.
    junk = dict(b, inputs=b["inputs"].at[1, 2:].set(9).at[2, 1:].set(4))
    logits2, _ = forward(model, junk)
    np.testing.assert_allclose(np.asarray(logits2), np.asarray(logits), atol=1e-5)


@pytest.mark.parametrize("attention", ["additive", "general"])
def test_greedy_translation_agrees_with_teacher_forced_scoring(attention):
    model = translator(attention, eval_beam_size=0)
    b = batch()
    tokens, lengths = nnx.jit(lambda m, x: m.translate(x, max_length=5))(model, b)
    # Scored with its own output as the target, the argmax at every step is that output.
    logits, _ = forward(model, dict(b, targets=tokens))
    best = np.asarray(jnp.argmax(logits, -1))
    for i in range(3):
        n = int(lengths[i])
        np.testing.assert_array_equal(best[i, :n], np.asarray(tokens[i, :n]))
        assert np.all(np.asarray(tokens[i, n:]) == 0)
    if attention == "additive":
        beam_tokens, beam_lengths = nnx.jit(
            lambda m, x: m.translate(x, max_length=5, beam_size=1, greedy=False)
        )(model, b)
        np.testing.assert_array_equal(np.asarray(beam_tokens), np.asarray(tokens))
        np.testing.assert_array_equal(np.asarray(beam_lengths), np.asarray(lengths))


def test_evaluation_decodes_and_scheduled_sampling_only_acts_in_training():
    model = translator("additive", sampling_prob=1.0, eval_beam_size=1)
    b = batch()
    logits, aux = forward(model, b)
    tokens, lengths = nnx.jit(lambda m, x: m.translate(x, max_length=5))(model, b)
    np.testing.assert_array_equal(np.asarray(aux["predictions"]), np.asarray(tokens))
    np.testing.assert_array_equal(np.asarray(aux["prediction_lengths"]), np.asarray(lengths))
    train = nnx.jit(lambda m, x, key: m(x, train=True, rngs=nnx.Rngs(key)))
    sampled, _ = train(model, b, jax.random.key(0))
    # Step 0 reads the start token either way; later steps read sampled tokens.
    np.testing.assert_allclose(np.asarray(sampled[:, 0]), np.asarray(logits[:, 0]), atol=1e-5)
    assert not np.allclose(np.asarray(sampled[:, 1:]), np.asarray(logits[:, 1:]), atol=1e-3)
    with pytest.raises(ValueError, match="rngs"):
        model(b, train=True)
