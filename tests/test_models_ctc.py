"""CTC loss and decoding against brute force over all alignments; the recogniser's plumbing."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rnnlab.models.ctc import (
    SpeechRecognizer,
    ctc_greedy_decode,
    ctc_loss,
    prefix_beam_decode,
    prefix_beam_search,
    strip,
)

BLANK = 0
forward = nnx.jit(lambda model, batch: model(batch, train=False))  # evaluation mode


def collapse(path):
    """CTC's many-to-one map B: merge repeats, then drop blanks."""
    out, prev = [], None
    for s in path:
        if s != prev and s != BLANK:
            out.append(s)
        prev = s
    return tuple(out)


def labelling_probs(log_probs):
    """Brute force: p(l | x) for every labelling l, summing over all |V|^T paths."""
    probs = np.exp(np.asarray(log_probs, np.float64))
    table = {}
    for path in itertools.product(range(probs.shape[1]), repeat=probs.shape[0]):
        p = np.prod([probs[t, s] for t, s in enumerate(path)])
        table[collapse(path)] = table.get(collapse(path), 0.0) + p
    return table


def random_log_probs(seed, t, v):
    z = np.random.default_rng(seed).normal(size=(t, v)) * 1.5
    return z - np.logaddexp.reduce(z, axis=1, keepdims=True)


def test_ctc_loss_matches_the_sum_over_alignments():
    T, V = 5, 3
    labels = [(1,), (1, 2), (1, 1), (2, 2, 1), (2,)]
    frames = [5, 5, 4, 5, 3]  # with padded frames and labels
    logits = np.stack([random_log_probs(i, T, V) for i in range(len(labels))]).astype(np.float32)
    lab = np.zeros((len(labels), 3), np.int32)
    for i, seq in enumerate(labels):
        lab[i, : len(seq)] = seq
    loss = ctc_loss(
        jnp.asarray(logits),
        jnp.asarray(frames, jnp.int32),
        jnp.asarray(lab),
        jnp.asarray([len(seq) for seq in labels], jnp.int32),
    )
    for i, seq in enumerate(labels):
        ref = -np.log(labelling_probs(logits[i, : frames[i]]).get(seq, 0.0))
        np.testing.assert_allclose(float(loss[i]), ref, rtol=1e-4)


def test_greedy_decoding_collapses_the_most_probable_path():
    T, V = 6, 4
    logits = np.stack([random_log_probs(10 + i, T, V) for i in range(4)]).astype(np.float32)
    logits[0, 1:3, 2] += 10.0  # a repeated symbol that must merge
    logits[1, 2, :] = [5.0, -5.0, -5.0, -5.0]  # a blank separating repeats
    logits[1, [1, 3], 1] += 10.0
    lengths = np.array([6, 6, 4, 1])
    out, n = ctc_greedy_decode(jnp.asarray(logits), jnp.asarray(lengths))
    for b in range(4):
        lp = logits[b, : lengths[b]]
        best = max(
            itertools.product(range(V), repeat=int(lengths[b])),
            key=lambda path: sum(lp[t, s] for t, s in enumerate(path)),
        )
        assert strip(out, n)[b] == collapse(best)
        assert np.all(np.asarray(out[b, int(n[b]) :]) == 0)
    assert strip(out, n)[1][:2] == (1, 1)


def test_prefix_beam_search_is_exact_with_a_wide_beam():
    for seed, (T, V) in enumerate([(4, 3), (5, 3), (4, 4)]):
        lp = random_log_probs(seed, T, V)
        table = labelling_probs(lp)
        beams = prefix_beam_search(lp, beam_width=500)
        best = max(table, key=table.get)
        assert beams[0][0] == best
        for prefix, logp in beams:
            np.testing.assert_allclose(np.exp(logp), table[prefix], rtol=1e-9)
        assert len(beams) == len(table)  # every reachable labelling is scored


def test_prefix_beam_decode_reads_valid_frames_only():
    lps = np.stack([random_log_probs(20 + i, 5, 3) for i in range(3)]).astype(np.float32)
    lengths = np.array([5, 3, 4])
    padded = lps.copy()
    padded[1, 3:] = 7.0 * np.eye(3)[1]  # junk past the length must not matter
    decoded = prefix_beam_decode(jnp.asarray(padded), jnp.asarray(lengths), beam_width=64)
    for b in range(3):
        table = labelling_probs(lps[b, : lengths[b]])
        assert decoded[b] == max(table, key=table.get)


def test_recogniser_stacks_frames_and_ignores_padding():
    model = SpeechRecognizer(2, 5, hidden_features=8, num_layers=2, frame_stack=2, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(2, 9, 2)).astype(np.float32)
    lengths = np.array([9, 5], np.int32)
    junk = x.copy()
    junk[1, 5:] = 100.0
    out, aux = forward(model, {"inputs": jnp.asarray(x), "input_lengths": jnp.asarray(lengths)})
    out2, _ = forward(model, {"inputs": jnp.asarray(junk), "input_lengths": jnp.asarray(lengths)})
    assert out.shape == (2, 5, 5)
    np.testing.assert_array_equal(np.asarray(aux["logit_lengths"]), [5, 3])
    np.testing.assert_allclose(np.asarray(out[1, :3]), np.asarray(out2[1, :3]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out[0]), np.asarray(out2[0]), rtol=1e-6)
    with pytest.raises(ValueError, match="inputs"):
        model({"inputs": jnp.zeros((2, 9, 3))})
    with pytest.raises(ValueError, match="blank_id"):
        SpeechRecognizer(2, 5, blank_id=5, rngs=nnx.Rngs(0))


def test_recogniser_decodes_with_both_decoders():
    model = SpeechRecognizer(1, 4, hidden_features=6, num_layers=1, rngs=nnx.Rngs(1))
    batch = {
        "inputs": jax.random.normal(jax.random.key(0), (2, 6, 1)),
        "input_lengths": jnp.array([6, 4], jnp.int32),
    }
    greedy = model.decode(batch)
    beam = model.decode(batch, beam_width=16)
    logits, aux = forward(model, batch)
    lp = np.asarray(jax.nn.log_softmax(logits), np.float64)
    for b in range(2):
        n = int(aux["logit_lengths"][b])
        table = labelling_probs(lp[b, :n])
        assert beam[b] == max(table, key=table.get)
        assert greedy[b] == collapse(np.argmax(lp[b, :n], axis=1))
