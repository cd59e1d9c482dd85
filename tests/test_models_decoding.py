"""Greedy, beam-search and sampling decoders against enumeration and NumPy references."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.layers.decoding import (
    beam_search,
    filter_logits,
    greedy_decode,
    length_penalty,
    nucleus_mask,
    sample_decode,
    sample_logits,
    top_k_mask,
)

V, EOS, DIM = 4, 1, 6


def toy(seed):
    """A random recurrent scorer whose next-token logits depend on the whole prefix."""
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(V, DIM)).astype(np.float32)
    W = (0.9 * rng.normal(size=(DIM, DIM))).astype(np.float32)
    U = (2.0 * rng.normal(size=(DIM, V))).astype(np.float32)
    h0 = rng.normal(size=(2, DIM)).astype(np.float32)

    def step(h, tok):
        h = jnp.tanh(h @ jnp.asarray(W) + jnp.asarray(E)[tok])
        return h, h @ jnp.asarray(U)

    def np_logp(h, tok):
        h = np.tanh(h @ W + E[tok])
        z = (h @ U).astype(np.float64)
        return h, z - np.logaddexp.reduce(z)

    return step, np_logp, h0


def enumerate_best(np_logp, h0, start, max_len, alpha):
    """Best normalised score over all sequences ending in EOS (or cut at max_len)."""
    best = (-np.inf, None)
    for n in range(1, max_len + 1):
        for body in itertools.product([t for t in range(V) if t != EOS], repeat=n - 1):
            for last in range(V):
                if n < max_len and last != EOS:
                    continue  # not finished yet: counted at its full length
                seq = (*body, last)
                h, tok, total = h0, start, 0.0
                for t in seq:
                    h, lp = np_logp(h, tok)
                    total += lp[t]
                    tok = t
                score = total / ((5.0 + n) / 6.0) ** alpha
                if score > best[0]:
                    best = (score, seq)
    return best


@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_beam_search_finds_the_enumerated_optimum(alpha):
    step, np_logp, h0 = toy(0)
    max_len = 4
    seqs, scores, lengths = beam_search(
        step,
        jnp.asarray(h0),
        jnp.zeros(2, jnp.int32),
        beam_size=40,
        max_length=max_len,
        eos_id=EOS,
        alpha=alpha,
    )
    for b in range(2):
        score, seq = enumerate_best(np_logp, h0[b], 0, max_len, alpha)
        n = int(lengths[b, 0])
        assert tuple(int(t) for t in seqs[b, 0, :n]) == seq
        np.testing.assert_allclose(float(scores[b, 0]), score, rtol=1e-4, atol=1e-6)
        assert np.all(np.asarray(seqs[b, 0, n:]) == 0)
        assert np.all(np.diff(np.asarray(scores[b])) <= 1e-6)  # best first


def numpy_greedy(np_logp, h0, start, max_len):
    h, tok, out, total = h0, start, [], 0.0
    for _ in range(max_len):
        h, lp = np_logp(h, tok)
        tok = int(np.argmax(lp))
        out.append(tok)
        total += lp[tok]
        if tok == EOS:
            break
    return out, total


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_greedy_matches_a_numpy_loop_and_beam_of_width_one(seed):
    step, np_logp, h0 = toy(seed)
    start = jnp.array([0, 2], jnp.int32)
    tokens, lengths, logp = greedy_decode(step, jnp.asarray(h0), start, max_length=6, eos_id=EOS)
    for b in range(2):
        ref, total = numpy_greedy(np_logp, h0[b], int(start[b]), 6)
        assert list(np.asarray(tokens[b, : len(ref)])) == ref
        assert int(lengths[b]) == len(ref)
        assert np.all(np.asarray(tokens[b, len(ref) :]) == 0)
        np.testing.assert_allclose(float(logp[b]), total, rtol=1e-4, atol=1e-6)
    for alpha in (0.0, 1.0):
        seqs, _, blen = beam_search(
            step, jnp.asarray(h0), start, beam_size=1, max_length=6, eos_id=EOS, alpha=alpha
        )
        np.testing.assert_array_equal(np.asarray(seqs[:, 0]), np.asarray(tokens))
        np.testing.assert_array_equal(np.asarray(blen[:, 0]), np.asarray(lengths))


def test_length_penalty_is_gnmt():
    np.testing.assert_allclose(float(length_penalty(jnp.int32(7), 0.6)), (12 / 6) ** 0.6)
    assert float(length_penalty(jnp.int32(7), 0.0)) == 1.0


def test_top_k_and_nucleus_masks_match_sorting():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 9)).astype(np.float32)
    k_mask = np.asarray(top_k_mask(jnp.asarray(logits), 3))
    for row, m in zip(logits, k_mask, strict=True):
        assert set(np.flatnonzero(m)) == set(np.argsort(-row)[:3])
    for top_p in (0.3, 0.75, 0.99):
        mask = np.asarray(nucleus_mask(jnp.asarray(logits), top_p))
        for row, m in zip(logits, mask, strict=True):
            p = np.exp(row - row.max())
            p /= p.sum()
            order = np.argsort(-p)
            keep, mass = [], 0.0
            for i in order:  # smallest prefix of the sorted tokens reaching top_p
                keep.append(i)
                mass += p[i]
                if mass >= top_p:
                    break
            assert set(np.flatnonzero(m)) == set(keep)


def test_sampling_draws_from_the_filtered_distribution():
    logits = jnp.array([2.0, 1.5, 1.0, 0.2, -1.0, 0.8], jnp.float32)
    n = 20000
    draws = sample_logits(
        jax.random.key(0), jnp.tile(logits, (n, 1)), temperature=0.7, top_k=4, top_p=0.9
    )
    z = np.asarray(logits, np.float64) / 0.7
    p = np.exp(z - z.max())
    p /= p.sum()
    allowed = np.argsort(-p)[:4]
    q = np.zeros_like(p)
    q[allowed] = p[allowed]
    q /= q.sum()
    order, mass, nucleus = np.argsort(-q), 0.0, []
    for i in order:
        if mass >= 0.9:
            break
        nucleus.append(i)
        mass += q[i]
    ref = np.zeros_like(q)
    ref[nucleus] = q[nucleus]
    ref /= ref.sum()
    freq = np.bincount(np.asarray(draws), minlength=6) / n
    np.testing.assert_allclose(freq, ref, atol=0.015)
    filtered = np.asarray(filter_logits(logits, temperature=0.7, top_k=4, top_p=0.9))
    np.testing.assert_allclose(np.exp(filtered - np.logaddexp.reduce(filtered)), ref, atol=1e-5)


def test_sampled_decode_pads_after_eos_and_scores_its_tokens():
    step, np_logp, h0 = toy(4)
    tokens, lengths, logp = sample_decode(
        step,
        jnp.asarray(h0),
        jnp.zeros(2, jnp.int32),
        max_length=8,
        eos_id=EOS,
        key=jax.random.key(3),
        temperature=1.0,
    )
    for b in range(2):
        n = int(lengths[b])
        seq = [int(t) for t in tokens[b, :n]]
        assert EOS not in seq[:-1] and (seq[-1] == EOS or n == 8)
        assert np.all(np.asarray(tokens[b, n:]) == 0)
        h, tok, total = h0[b], 0, 0.0
        for t in seq:
            h, lp = np_logp(h, tok)
            total += lp[t]
            tok = t
        np.testing.assert_allclose(float(logp[b]), total, rtol=1e-4, atol=1e-6)


def test_decoders_reject_bad_arguments():
    step, _, h0 = toy(0)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(step, h0, jnp.zeros(2, jnp.int32), beam_size=0, max_length=3, eos_id=1)
    with pytest.raises(ValueError, match="max_length"):
        greedy_decode(step, h0, jnp.zeros(2, jnp.int32), max_length=0, eos_id=1)
    with pytest.raises(ValueError, match="start_tokens"):
        greedy_decode(step, h0, jnp.zeros((2, 1), jnp.int32), max_length=3, eos_id=1)
    with pytest.raises(ValueError, match="key"):
        sample_decode(step, h0, jnp.zeros(2, jnp.int32), max_length=3, eos_id=1, temperature=1.0)
