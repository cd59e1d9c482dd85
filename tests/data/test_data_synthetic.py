"""Synthetic tasks: adding problem, copy memory, selective copying, sequence reversal."""

import math

import numpy as np
import pytest
import tensorflow_datasets as tfds

import rnnlab.data as data


def test_adding_problem_targets_are_the_marked_sums_and_baseline_is_one_sixth():
    cfg = {"name": "adding", "seq_len": 30}
    spec = data.info(cfg)
    assert spec["task"] == "regression" and spec["input_features"] == 2
    it = data.load(cfg, split="train", batch_size=256, seed=0)
    targets = []
    for _ in range(8):
        batch = next(it)
        x = batch["inputs"]
        assert x.shape == (256, 30, 2) and batch["targets"].shape == (256, 1)
        marks = x[..., 1]
        assert (marks.sum(axis=1) == 2).all()
        assert (marks[:, :15].sum(axis=1) == 1).all() and (marks[:, 15:].sum(axis=1) == 1).all()
        np.testing.assert_allclose(
            (x[..., 0] * marks).sum(axis=1), batch["targets"][:, 0], rtol=1e-6
        )
        targets.append(batch["targets"][:, 0])
    mse_of_mean_one = float(np.mean((np.concatenate(targets) - 1.0) ** 2))
    assert abs(mse_of_mean_one - spec["baseline_mse"]) < 0.015  # 2048 draws of Var(u1 + u2)


def test_copy_task_layout_matches_arjovsky_et_al():
    cfg = {"name": "copy", "seq_len": 12, "num_symbols": 8, "copy_len": 10}
    spec = data.info(cfg)
    assert spec["seq_len"] == 32 and spec["vocab_size"] == 10
    assert math.isclose(spec["baseline_loss"], 10 * math.log(8) / (12 + 20))
    batch = next(data.load(cfg, split="train", batch_size=5, seed=1))
    x, y = batch["inputs"], batch["targets"]
    for b in range(5):
        assert set(x[b, :10]) <= set(range(1, 9))
        np.testing.assert_array_equal(x[b, 10:21], 0)
        assert x[b, 21] == 9 and (x[b, 22:] == 0).all()
        np.testing.assert_array_equal(y[b, :22], 0)
        np.testing.assert_array_equal(y[b, 22:], x[b, :10])
    assert batch["weights"].shape == (5, 32) and batch["weights"].min() == 1.0


def test_selective_copy_matches_the_s4_generator_written_in_numpy():
    L, M, A = 35, 5, 8  # noise steps, symbols to copy, tokens (Gu & Dao: 4096, 16, 16)
    cfg = {"name": "selective_copy", "seq_len": L + M, "num_symbols": A - 2, "copy_len": M}
    spec = data.info(cfg)
    assert spec["task"] == "copy" and spec["seq_len"] == L + 2 * M and spec["vocab_size"] == A
    assert math.isclose(spec["baseline_loss"], math.log(A - 2))
    batch = next(data.load(cfg, split="train", batch_size=6, seed=3))
    x, y, w = batch["inputs"], batch["targets"], batch["weights"]
    assert x.shape == y.shape == w.shape == (6, L + 2 * M)
    for b in range(6):
        # The S4 repository's torch_copying_data(L, M, A, variable=True) with NumPy's draws:
        # example b of the training stream of seed 3 is drawn from default_rng([3, 0, b]).
        rng = np.random.default_rng([3, 0, b])
        tokens = rng.integers(1, A - 1, M)
        inds = np.sort(rng.choice(L + M, M, replace=False))
        zeros_x = np.zeros(L + M, np.int64)
        np.put(zeros_x, inds, tokens)
        np.testing.assert_array_equal(x[b], np.concatenate([zeros_x, np.full(M, A - 1)]))
        np.testing.assert_array_equal(y[b, L + M :], tokens)
        # Read back without the draws: the non-noise inputs, in order, are the targets.
        context = x[b, : L + M]
        np.testing.assert_array_equal(context[context != 0], y[b, L + M :])
        assert (y[b, : L + M] == 0).all() and (x[b, L + M :] == A - 1).all()
        np.testing.assert_array_equal(w[b], np.arange(L + 2 * M) >= L + M)
    # The spacing changes from example to example (what an LTI recurrence cannot follow).
    assert len({tuple(np.flatnonzero(x[b, : L + M])) for b in range(6)}) == 6
    with pytest.raises(ValueError, match="copy_len must be at most"):
        data.info({**cfg, "copy_len": L + M + 1})


def test_reverse_targets_are_reversed_sources_with_eos():
    cfg = {"name": "reverse", "seq_len": 9, "vocab_size": 20}
    spec = data.info(cfg)
    batch = next(data.load(cfg, split="train", batch_size=16, seed=2))
    assert batch["inputs"].shape == (16, 9) and batch["targets"].shape == (16, 10)
    for b in range(16):
        n = batch["input_lengths"][b]
        src = batch["inputs"][b, :n]
        assert (src >= 4).all() and (batch["inputs"][b, n:] == 0).all()
        assert batch["target_lengths"][b] == n + 1
        np.testing.assert_array_equal(batch["targets"][b, :n], src[::-1])
        assert batch["targets"][b, n] == spec["eos_id"]
        np.testing.assert_array_equal(batch["weights"][b], np.arange(10) <= n)


def test_evaluation_sets_do_not_depend_on_the_training_seed():
    cfg = {"name": "adding", "seq_len": 10, "eval_examples": 20}
    a = list(data.load(cfg, split="validation", batch_size=8, seed=0, repeat=False))
    b = list(data.load(cfg, split="validation", batch_size=8, seed=99, repeat=False))
    assert len(a) == 3 and a[-1]["weights"].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["inputs"], y["inputs"])
    test = next(data.load(cfg, split="test", batch_size=8, seed=0, repeat=False))
    assert not np.array_equal(test["inputs"], a[0]["inputs"])


def test_wmt_pair_under_mock_data(tmp_path):
    cfg = {"name": "wmt", "data_dir": str(tmp_path), "max_len": 12}
    with tfds.testing.mock_data(num_examples=24):
        spec = data.info(cfg)
        batches = list(data.load(cfg, split="validation", batch_size=5, seed=0, repeat=False))
    assert spec["languages"] == ["de", "en"] and spec["task"] == "seq2seq"
    assert len(batches) == 5
    for batch in batches:
        real = batch["weights"].sum(axis=1) > 0
        n = batch["target_lengths"][real]
        assert (batch["targets"][real, n - 1] == spec["eos_id"]).all()
        np.testing.assert_array_equal(batch["weights"].sum(axis=1)[real], n)
        assert batch["inputs"].shape[1] <= 12 and batch["targets"].shape[1] <= 12
