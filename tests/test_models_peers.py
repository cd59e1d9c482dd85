"""The results table's models: Flax's stock cells in the classifier, and the language model
under the regularisation toolkit, each against an independent reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import benchmarks.flax_peer  # noqa: F401  (registers flax_classifier)
from rnnlab import models
from rnnlab.regularizers import Regularization, sample_layer_masks

V = 11
CLS_INFO = {"task": "classification", "num_classes": 5, "input_features": 3}
LM_INFO = {"task": "lm", "vocab_size": V}


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_flax_classifier_equals_stepping_flax_cells_by_hand(cell):
    """Two stacked stock cells stepped in a Python loop, the state read at each sequence's
    last valid step, then the head: what ``flax_classifier`` must compute."""
    model = models.build(
        "flax_classifier", CLS_INFO, nnx.Rngs(0), cell=cell, hidden_features=6, num_layers=2
    )
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 7, 3)), jnp.float32)
    lengths = jnp.asarray([7, 4, 1], jnp.int32)
    out, aux = model({"inputs": x, "seq_lengths": lengths})

    expected = []
    for b in range(3):
        h = x[b : b + 1, : int(lengths[b])]
        for layer in model.layers:
            zero = jnp.zeros((1, 6), jnp.float32)
            carry = (zero, zero) if cell == "lstm" else zero
            ys = []
            for t in range(h.shape[1]):
                carry, y = layer.cell(carry, h[:, t])
                ys.append(y)
            h = jnp.stack(ys, axis=1)
        expected.append(model.head(h[:, -1])[0])
    np.testing.assert_allclose(out, np.stack(expected), rtol=1e-5, atol=1e-6)
    assert aux["pooled"].shape == (3, 6)


def test_flax_classifier_rejects_unknown_cells_and_tasks():
    with pytest.raises(ValueError, match="cell must be one of"):
        models.build("flax_classifier", CLS_INFO, nnx.Rngs(0), cell="rnn")
    with pytest.raises(ValueError, match="task 'classification' or 'regression'"):
        models.build("flax_classifier", LM_INFO, nnx.Rngs(0))


def _pair(**reg):
    # Built as the trainer builds models (a params stream only): a stack that can drop
    # forks no dropout stream from it, so both models get the same parameters.
    kw = {"embed_features": 8, "hidden_features": 12, "num_layers": 2}
    plain = models.build("language_model", LM_INFO, nnx.Rngs(params=0), **kw)
    regd = models.build(
        "regularized_language_model", LM_INFO, nnx.Rngs(params=0), regularization=reg or None, **kw
    )
    return plain, regd


def _tokens(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(V, size=shape), jnp.int32)


def test_switched_off_it_is_the_plain_language_model_bit_for_bit():
    plain, regd = _pair()
    x = _tokens((3, 9))
    resets = jnp.zeros((3, 9), bool).at[1, 4].set(True)
    carry = plain({"inputs": _tokens((3, 5), seed=1)})[1]["carry"]
    a, aux_a = plain({"inputs": x, "resets": resets}, carry=carry, train=True, rngs=nnx.Rngs(1))
    b, aux_b = regd({"inputs": x, "resets": resets}, carry=carry, train=True, rngs=nnx.Rngs(1))
    np.testing.assert_array_equal(a, b)
    for ca, cb in zip(
        jax.tree.leaves(aux_a["carry"]), jax.tree.leaves(aux_b["carry"]), strict=True
    ):
        np.testing.assert_array_equal(ca, cb)
    assert not aux_b.get("losses")


def test_evaluation_is_deterministic_and_plain():
    plain, regd = _pair(**Regularization.awd_lstm(embedding_dropout=0.1).to_dict())
    x = _tokens((2, 6), seed=2)
    evaluate = lambda m: m({"inputs": x}, train=False)
    np.testing.assert_array_equal(evaluate(plain)[0], evaluate(regd)[0])
    assert "losses" not in evaluate(regd)[1]


def test_weight_drop_is_the_plain_model_with_a_masked_recurrent_kernel():
    """Training with weight drop only: the plain model whose ``W_hh`` in every layer is
    multiplied by the layer's mask, drawn from the key the model derives for that layer."""
    reg = Regularization(weight_drop=0.5)
    plain, regd = _pair(**reg.to_dict())
    x = _tokens((2, 6), seed=3)
    out, _ = regd({"inputs": x}, train=True, rngs=nnx.Rngs(7))
    # One stream, one key per mask in order (as nnx.Dropout draws): no embedding, input
    # or hidden dropout here, so layer i's masks come from the stream's key i.
    stream = nnx.Rngs(7)["dropout"]
    keys = [stream() for _ in plain.rnn.layers]
    for i, layer in enumerate(plain.rnn.layers):
        mask = sample_layer_masks(keys[i], layer, reg, (2,), 6).kernel
        assert 0.2 < float(jnp.mean(mask == 0)) < 0.8  # whole weights are dropped
        layer.cell.kernel_hh[...] = layer.cell.kernel_hh[...] * mask
    ref, _ = plain({"inputs": x})
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_ar_and_tar_are_the_textbook_penalties_of_the_top_layer():
    """AR = alpha mean(h^2), TAR = beta mean_t sum_d (h_t - h_{t-1})^2 / D (Merity et al.
    2017), from NumPy on the top layer's output."""
    plain, regd = _pair(ar=2.0, tar=1.0)
    x = _tokens((2, 7), seed=4)
    _, aux = regd({"inputs": x}, train=True, rngs=nnx.Rngs(0))
    h = np.asarray(plain({"inputs": x})[1]["hidden"], np.float64)
    np.testing.assert_allclose(aux["losses"]["ar"], 2.0 * np.mean(h**2), rtol=1e-5)
    tar = np.mean(np.sum(np.diff(h, axis=1) ** 2, axis=-1)) / h.shape[-1]
    np.testing.assert_allclose(aux["losses"]["tar"], tar, rtol=1e-5)


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="dropout must be 0 when regularization"):
        models.build(
            "regularized_language_model",
            LM_INFO,
            nnx.Rngs(0),
            dropout=0.2,
            regularization={"weight_drop": 0.5},
        )
    with pytest.raises(ValueError, match="rngs must be given"):
        _pair(weight_drop=0.5)[1]({"inputs": _tokens((1, 3))}, train=True)
