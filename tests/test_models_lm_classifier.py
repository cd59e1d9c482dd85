"""Language-model sampling with a carried state against re-running the whole prefix, and the
classifier's attention pooling against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rnnlab.layers.decoding import filter_logits, sample_logits
from rnnlab.models.classifier import SequenceClassifier
from rnnlab.models.language_model import LanguageModel, generate

V, P, N = 11, 4, 6
forward = nnx.jit(lambda model, batch: model(batch)[0])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sampling_with_the_carried_state_equals_rerunning_the_prefix(cell):
    model = LanguageModel(
        V,
        embed_features=6,
        hidden_features=8,
        num_layers=2,
        cell=cell,
        tie_embeddings=True,
        rngs=nnx.Rngs(0),
    )
    prompt = jax.random.randint(jax.random.key(1), (3, P), 0, V)
    key = jax.random.key(2)
    kw = dict(temperature=0.8, top_k=7, top_p=0.9)
    tokens = generate(model, prompt, N, key=key, **kw)
    full = jnp.concatenate([prompt, tokens], axis=1)
    rerun = forward(model, {"inputs": full})  # logits of every prefix, from scratch
    # The carried path: the prompt once, then one step per token.
    _, aux = nnx.jit(lambda m, b: m(b))(model, {"inputs": prompt})
    step = nnx.jit(lambda m, t, c: m.decode_step(t, c))
    carry, stepped = aux["carry"], []
    for k in range(N):
        logits, carry = step(model, tokens[:, k], carry)
        stepped.append(logits)
    np.testing.assert_allclose(np.stack(stepped, 1), np.asarray(rerun[:, P:]), rtol=1e-5, atol=1e-5)
    # The same sampling distribution: each drawn token is what the re-run logits give.
    keys = jax.random.split(key, N)
    draw = jax.jit(
        lambda k, z: sample_logits(k, z, temperature=jnp.float32(0.8), top_k=7, top_p=0.9)
    )
    support = jax.jit(lambda z: jnp.isfinite(filter_logits(z, **kw)))
    for k in range(N):
        ref_logits = rerun[:, P - 1 + k]
        again = draw(keys[k], ref_logits)
        np.testing.assert_array_equal(np.asarray(tokens[:, k]), np.asarray(again))
        allowed = np.asarray(support(ref_logits))
        assert np.all(allowed[np.arange(3), np.asarray(tokens[:, k])])
    greedy = generate(model, prompt, N, key=key, temperature=0)
    best = forward(model, {"inputs": jnp.concatenate([prompt, greedy], axis=1)})
    np.testing.assert_array_equal(
        np.asarray(greedy), np.asarray(jnp.argmax(best[:, P - 1 : -1], axis=-1))
    )


def test_attention_pooling_matches_numpy_and_ignores_padding():
    model = SequenceClassifier(
        3,
        4,
        hidden_features=5,
        pooling="attention",
        attention_features=6,
        bidirectional=True,
        rngs=nnx.Rngs(0),
    )
    x = np.random.default_rng(0).normal(size=(3, 7, 3)).astype(np.float32)
    lengths = np.array([7, 4, 1], np.int32)
    run = nnx.jit(lambda m, b: m(b))
    out, aux = run(model, {"inputs": jnp.asarray(x), "seq_lengths": jnp.asarray(lengths)})
    h = np.asarray(aux["hidden"], np.float64)
    W, b = np.asarray(model.att_proj.kernel[...]), np.asarray(model.att_proj.bias[...])
    v = np.asarray(model.att_score.kernel[...])[:, 0]
    for i, n in enumerate(lengths):
        e = np.tanh(h[i, :n] @ W + b) @ v
        a = np.exp(e - e.max())
        a /= a.sum()
        np.testing.assert_allclose(np.asarray(aux["attention"][i, :n]), a, atol=1e-5)
        assert np.all(np.asarray(aux["attention"][i, n:]) == 0)
        np.testing.assert_allclose(np.asarray(aux["pooled"][i]), a @ h[i, :n], atol=1e-5)
    junk = x.copy()
    junk[1, 4:], junk[2, 1:] = 50.0, -50.0
    out2, _ = run(model, {"inputs": jnp.asarray(junk), "seq_lengths": jnp.asarray(lengths)})
    np.testing.assert_allclose(np.asarray(out2), np.asarray(out), atol=1e-5)
