"""Sequence and classification metrics against sacrebleu, scikit-learn and plain Python."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sacrebleu
from sklearn.metrics import precision_recall_fscore_support

from rnnlab.tasks.classification import per_class_derive, per_class_sums
from rnnlab.tasks.scores import (
    bleu,
    bleu_from_stats,
    bleu_stats,
    confusion_matrix,
    edit_distance,
    edit_distances,
    error_rate,
    exact_match,
    per_class_metrics,
)
from rnnlab.tasks.seq2seq import seq2seq_metrics


def levenshtein(a, b):
    """The recursive definition, memoised."""

    @functools.cache
    def d(i, j):
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


def random_pairs(seed, n=40, width=10, vocab=5):
    r = np.random.default_rng(seed)
    hyp, ref = r.integers(4, 4 + vocab, (n, width)), r.integers(4, 4 + vocab, (n, width + 3))
    return hyp, r.integers(0, width + 1, n), ref, r.integers(1, width + 4, n)


def test_edit_distances_match_the_recursive_definition():
    hyp, hl, ref, rl = random_pairs(0)
    got = np.asarray(edit_distances(*(jnp.asarray(a) for a in (hyp, hl, ref, rl))))
    for i in range(len(hyp)):
        h, r = tuple(hyp[i, : hl[i]]), tuple(ref[i, : rl[i]])
        assert got[i] == levenshtein(h, r) == edit_distance(h, r)
    assert error_rate(["abc", "xy"], ["abd", "x"]) == pytest.approx(2 / 4)


def test_bleu_statistics_reproduce_sacrebleu():
    for seed in range(3):
        hyp, hl, ref, rl = random_pairs(seed, vocab=4)
        stats = bleu_stats(*(jnp.asarray(a) for a in (hyp, hl, ref, rl)))
        sums = {k: float(np.sum(v)) for k, v in stats.items()}
        hyps = [" ".join(map(str, h[:n])) for h, n in zip(hyp, hl, strict=True)]
        refs = [" ".join(map(str, r[:n])) for r, n in zip(ref, rl, strict=True)]
        ref_score = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", smooth_method="none")
        assert ref_score.score > 0
        np.testing.assert_allclose(bleu_from_stats(sums), ref_score.score, rtol=1e-9)
        assert [int(sums[f"correct_{n}"]) for n in range(1, 5)] == ref_score.counts
        # Means over any common weight give the same score (how the engine aggregates).
        np.testing.assert_allclose(
            bleu_from_stats({k: v / 7.0 for k, v in sums.items()}), ref_score.score, rtol=1e-9
        )
        ids = [list(h[:n]) for h, n in zip(hyp, hl, strict=True)]
        refs_ids = [list(r[:n]) for r, n in zip(ref, rl, strict=True)]
        assert bleu(ids, refs_ids, smooth_method="none") == pytest.approx(ref_score.score)


def test_exact_match_compares_up_to_the_end_token():
    targets = jnp.array([[5, 6, 3, 0], [5, 6, 3, 0], [7, 3, 0, 0], [7, 3, 0, 0]])
    lengths = jnp.array([3, 3, 2, 2])
    preds = jnp.array([[5, 6, 3, 0], [5, 6, 6, 3], [7, 3, 0, 0], [7, 4, 0, 0]])
    np.testing.assert_array_equal(
        np.asarray(exact_match(preds, targets, lengths)), [True, False, True, False]
    )


def test_seq2seq_metrics_on_decoded_predictions():
    targets = jnp.array([[5, 6, 3, 0], [7, 3, 0, 0], [4, 3, 0, 0]])
    logits = jnp.zeros((3, 4, 8))
    aux = {
        "predictions": jnp.array([[5, 6, 3, 0], [7, 7, 3, 0], [4, 3, 0, 0]]),
        "prediction_lengths": jnp.array([3, 3, 2]),
        "eos_id": 3,
    }
    weights = jnp.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], jnp.float32)
    batch = {"targets": targets, "target_lengths": jnp.array([3, 2, 2]), "weights": weights}
    sums = jax.jit(seq2seq_metrics)(logits, aux, batch)
    np.testing.assert_allclose(float(sums["loss"][0]) / float(sums["loss"][1]), np.log(8))
    assert float(sums["exact_match"][0]) == 1.0 and float(sums["exact_match"][1]) == 2.0
    # BLEU statistics exclude </s>: hypothesis (7, 7) against reference (7,).
    assert float(sums["bleu_hyp_len"][0]) == 2 + 2 and float(sums["bleu_ref_len"][0]) == 2 + 1


def test_per_class_metrics_match_scikit_learn():
    r = np.random.default_rng(0)
    labels, preds = r.integers(0, 5, 200), r.integers(0, 5, 200)
    preds[labels == 4] = 4  # one class always right
    preds[preds == 3] = 2  # one class never predicted
    conf = confusion_matrix(jnp.asarray(labels), jnp.asarray(preds), 5)
    p, rc, f, _ = precision_recall_fscore_support(labels, preds, labels=range(5), zero_division=0)
    got = per_class_metrics(conf)
    np.testing.assert_allclose(np.asarray(got["precision"]), p, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got["recall"]), rc, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got["f1"]), f, atol=1e-6)
    logits = np.eye(5)[preds]
    weights = np.ones(200, np.float32)
    weights[:50] = 0.0  # padding rows do not count
    sums = per_class_sums(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights))
    derived = per_class_derive({k: float(s) / float(w) for k, (s, w) in sums.items()})
    _, _, f_tail, _ = precision_recall_fscore_support(
        labels[50:], preds[50:], labels=range(5), zero_division=0
    )
    np.testing.assert_allclose([derived[f"f1_{c}"] for c in range(5)], f_tail, atol=1e-6)
    np.testing.assert_allclose(derived["macro_f1"], f_tail.mean(), atol=1e-6)
