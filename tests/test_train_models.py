"""The language model and the sequence classifier against independent references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rnnlab import models
from rnnlab.models.classifier import pool
from rnnlab.models.language_model import sample_logits

V = 11


def _lm(**kw):
    kw = {"embed_features": 8, "hidden_features": 12, "num_layers": 2, **kw}
    return models.build("language_model", {"task": "lm", "vocab_size": V}, nnx.Rngs(0), **kw)


def _tokens(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(V, size=shape), jnp.int32)


def test_carried_state_continues_the_sequence():
    """Two batches with the state carried equal one pass over their concatenation."""
    model = _lm()
    x = _tokens((3, 10))
    whole, _ = model({"inputs": x})
    first, aux = model({"inputs": x[:, :6]})
    second, _ = model({"inputs": x[:, 6:]}, carry=aux["carry"])
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, rtol=1e-5, atol=1e-5)


def test_resets_restart_from_zero_not_from_the_carried_state():
    model = _lm()
    x = _tokens((2, 8), seed=1)
    _, aux = model({"inputs": _tokens((2, 5), seed=2)})  # some non-zero carried state
    resets = jnp.zeros((2, 8), bool).at[:, 3].set(True)
    out, _ = model({"inputs": x, "resets": resets}, carry=aux["carry"])
    fresh, _ = model({"inputs": x[:, 3:]})
    np.testing.assert_allclose(out[:, 3:], fresh, rtol=1e-5, atol=1e-5)
    carried_only, _ = model({"inputs": x}, carry=aux["carry"])
    np.testing.assert_allclose(out[:, :3], carried_only[:, :3], rtol=1e-6)


def test_decode_step_loop_reproduces_the_full_forward_pass():
    model = _lm(tie_embeddings=True)
    x = _tokens((2, 7), seed=3)
    full, _ = model({"inputs": x})
    carry = model.init_carry(2)
    for t in range(7):
        logits, carry = model.decode_step(x[:, t], carry)
        np.testing.assert_allclose(logits, full[:, t], rtol=1e-5, atol=1e-5)


def test_greedy_generation_equals_rerunning_the_prefix():
    """The jitted stateful sampler against the naive loop that re-runs the whole prefix."""
    model = _lm()
    prompt = _tokens((2, 4), seed=4)
    out = models.generate(model, prompt, 6, key=jax.random.key(0), temperature=0.0)
    seq = prompt
    for _ in range(6):
        logits, _ = model({"inputs": seq})
        nxt = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
        seq = jnp.concatenate([seq, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(out, seq[:, 4:])


def test_tied_embeddings_decode_with_the_embedding_matrix():
    model = _lm(tie_embeddings=True, embed_features=12)
    assert model.head is None and model.proj is None
    h = jnp.asarray(np.random.default_rng(5).normal(size=(3, 12)), jnp.float32)
    expected = h @ model.embed.embedding[...].T + model.out_bias[...]
    np.testing.assert_allclose(model.decode(h), expected, rtol=1e-5, atol=1e-6)


def test_top_k_and_top_p_sample_only_from_the_allowed_tokens():
    probs = np.array([0.05, 0.5, 0.15, 0.3])
    logits = jnp.log(jnp.asarray(np.tile(probs, (4000, 1)), jnp.float32))
    key = jax.random.key(0)
    top2 = np.asarray(sample_logits(key, logits, top_k=2))
    assert set(np.unique(top2)) == {1, 3}
    # renormalised over the top 2: 0.5 / 0.8 = 0.625
    assert np.mean(top2 == 1) == pytest.approx(0.625, abs=0.03)
    # nucleus 0.7: token 1 (mass before 0) and token 3 (mass before 0.5) stay; token 2 has
    # 0.8 before it and goes.
    nucleus = np.asarray(sample_logits(key, logits, top_p=0.7))
    assert set(np.unique(nucleus)) == {1, 3}
    greedy = np.asarray(sample_logits(key, logits[:3], temperature=0))
    np.testing.assert_array_equal(greedy, [1, 1, 1])
    full = np.asarray(sample_logits(key, logits))
    np.testing.assert_allclose(np.bincount(full, minlength=4) / 4000, probs, atol=0.03)


def test_pooling_matches_numpy():
    rng = np.random.default_rng(6)
    h = rng.normal(size=(3, 5, 4)).astype(np.float32)
    lengths = np.array([5, 2, 1], np.int32)
    last = np.stack([h[b, n - 1] for b, n in enumerate(lengths)])
    mean = np.stack([h[b, :n].mean(0) for b, n in enumerate(lengths)])
    mx = np.stack([h[b, :n].max(0) for b, n in enumerate(lengths)])
    bidir = np.stack(
        [np.concatenate([h[b, n - 1, :2], h[b, 0, 2:]]) for b, n in enumerate(lengths)]
    )
    hj, lj = jnp.asarray(h), jnp.asarray(lengths)
    np.testing.assert_allclose(pool(hj, lj, "last"), last)
    np.testing.assert_allclose(pool(hj, lj, "mean"), mean, rtol=1e-6)
    np.testing.assert_allclose(pool(hj, lj, "max"), mx)
    np.testing.assert_allclose(pool(hj, lj, "last", split=2), bidir)


def test_classifier_ignores_padding():
    info = {"task": "classification", "num_classes": 3, "input_features": 2}
    model = models.build("classifier", info, nnx.Rngs(0), hidden_features=6, pooling="mean")
    x = np.random.default_rng(7).normal(size=(2, 6, 2)).astype(np.float32)
    lengths = np.array([4, 6], np.int32)
    noisy = x.copy()
    noisy[0, 4:] = 100.0
    a, _ = model({"inputs": jnp.asarray(x), "seq_lengths": jnp.asarray(lengths)})
    b, _ = model({"inputs": jnp.asarray(noisy), "seq_lengths": jnp.asarray(lengths)})
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert a.shape == (2, 3)


def test_bfloat16_compute_keeps_float32_parameters_and_carries():
    full = _lm()
    mixed = _lm(dtype="bfloat16")
    _, params, rest = nnx.split(full, nnx.Param, ...)
    nnx.update(mixed, params)
    assert {x.dtype for x in jax.tree.leaves(nnx.state(mixed, nnx.Param))} == {jnp.dtype("float32")}
    x = _tokens((2, 9), seed=8)
    a, _ = full({"inputs": x})
    b, aux = mixed({"inputs": x})
    assert b.dtype == jnp.float32
    assert {c.dtype for c in jax.tree.leaves(aux["carry"])} == {jnp.dtype("float32")}
    np.testing.assert_allclose(b, a, atol=0.05)


def test_unknown_model_names_the_registered_ones():
    with pytest.raises(ValueError, match="language_model"):
        models.build("transformer", {"task": "lm", "vocab_size": 3}, nnx.Rngs(0))
