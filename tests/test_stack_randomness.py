"""One randomness path for the dropouts of a stack and of the language model: every mask of
a training call draws the next key of one stream, in a fixed order, exactly as
``nnx.Dropout`` draws from a stream. The references apply ``nnx.Dropout`` by hand, layer by
layer, and never call the stack's own dropout code."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from rnnlab.layers import StackedRNN
from rnnlab.models.language_model import LanguageModel
from rnnlab.regularizers import Regularization, sample_layer_masks

B, T, F, H, V = 3, 6, 4, 5, 11


def _x(seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(B, T, F)), jnp.float32)


def _tokens(seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, V, size=(B, T)), jnp.int32)


def test_a_regularised_stack_draws_every_mask_from_one_stream_in_order():
    """Input dropout, then per layer its weight-drop mask and the hidden dropout after it,
    then output dropout: keys 0, 1, 2, 3, 4 of the stream the call's rngs give."""
    reg = Regularization(
        input_dropout=0.3, hidden_dropout=0.4, output_dropout=0.5, variational=True,
        weight_drop=0.5,
    )  # fmt: skip
    # A params stream only: both stacks get the same parameters and no stream of their own.
    stack = StackedRNN(F, H, 2, regularization=reg, rngs=nnx.Rngs(params=0))
    plain = StackedRNN(F, H, 2, rngs=nnx.Rngs(params=0))
    x = _x()
    y = stack(x, rngs=nnx.Rngs(dropout=5))

    stream = nnx.Rngs(dropout=5).dropout
    locked = lambda rate, v: nnx.Dropout(rate, broadcast_dims=(1,))(v, rngs=stream)  # noqa: E731
    h = locked(0.3, x)
    for i, layer in enumerate(plain.layers):
        mask = sample_layer_masks(stream(), stack.layers[i], reg, (B,), T).kernel
        layer.cell.kernel_hh[...] = layer.cell.kernel_hh[...] * mask
        h = layer(h)
        if i == 0:
            h = locked(0.4, h)
    want = locked(0.5, h)
    np.testing.assert_allclose(np.asarray(y), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_a_stack_built_with_a_dropout_stream_draws_from_it_when_a_call_gives_none():
    reg = Regularization(hidden_dropout=0.5, variational=True)
    stack = StackedRNN(F, H, 2, regularization=reg, rngs=nnx.Rngs(params=0, dropout=9))
    plain = StackedRNN(F, H, 2, rngs=nnx.Rngs(params=0))
    x = _x(1)
    first, second = stack(x), stack(x)
    # nnx.Dropout forks its stream from the constructor's: the same fork, drawn in order.
    stream = nnx.Rngs(params=0, dropout=9)["dropout"].fork()
    for y in (first, second):
        mid = nnx.Dropout(0.5, broadcast_dims=(1,))(plain.layers[0](x), rngs=stream)
        np.testing.assert_allclose(y, plain.layers[1](mid), rtol=1e-5, atol=1e-6)
    assert not np.allclose(first, second)


def test_the_plain_language_model_draws_as_nnx_dropout_does():
    """The plain ``dropout`` on the embeddings, between layers and before the decoder: one
    fresh mask each, in that order, from the call's stream (what it always drew)."""
    model = LanguageModel(
        V, embed_features=6, hidden_features=H, num_layers=2, dropout=0.3,
        rngs=nnx.Rngs(params=0),
    )  # fmt: skip
    tokens = _tokens()
    logits, aux = model({"inputs": tokens}, train=True, rngs=nnx.Rngs(dropout=2))

    stream = nnx.Rngs(dropout=2).dropout
    drop = lambda v: nnx.Dropout(0.3)(v, rngs=stream)  # noqa: E731
    h = drop(model.embed(tokens))
    h = drop(model.rnn.layers[0](h))
    h = drop(model.rnn.layers[1](h))
    np.testing.assert_allclose(aux["hidden"], h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, model.decode(h), rtol=1e-5, atol=1e-6)


def test_the_language_model_draws_its_embedding_mask_first_from_the_stacks_stream():
    reg = Regularization(embedding_dropout=0.5, input_dropout=0.2, variational=True)
    model = LanguageModel(
        V, embed_features=6, hidden_features=H, num_layers=1, regularization=reg,
        rngs=nnx.Rngs(params=0),
    )  # fmt: skip
    tokens = _tokens(1)
    logits, _ = model({"inputs": tokens}, train=True, rngs=nnx.Rngs(dropout=4))

    stream = nnx.Rngs(dropout=4).dropout
    # Whole word types: one mask over the rows of the embedding matrix.
    table = nnx.Dropout(0.5, broadcast_dims=(1,))(model.embed.embedding[...], rngs=stream)
    h = nnx.Dropout(0.2, broadcast_dims=(1,))(table[tokens], rngs=stream)
    want = model.decode(model.rnn.layers[0](h))
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-6)
