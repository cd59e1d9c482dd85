"""Sequence classification data: JapaneseVowels and BasicMotions (UEA), MNIST-1D, and
sequential / permuted MNIST under mock data; padding, bucketing, length errors."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import rnnlab.data as data
from rnnlab.data import builders


def _cfg(data_root, name, **options):
    return {"name": name, "data_dir": str(data_root), **options}


def test_japanese_vowels_builder_has_the_documented_sizes_and_values(data_root):
    builder = builders.make(builders.UeaArchive, str(data_root / "tfds"), "japanese_vowels")
    src = builder.as_data_source()
    assert len(src["train"]) == 270 and len(src["test"]) == 370
    lengths = [int(src[s][i]["length"]) for s in ("train", "test") for i in range(len(src[s]))]
    assert min(lengths) == 7 and max(lengths) == 29
    assert builder.info.features["label"].num_classes == 9
    # Independent reference: sktime's own loader of the same archive file.
    from sktime.datasets import load_japanese_vowels

    frame, labels = load_japanese_vowels(split="train", return_type="nested_univ")
    first = np.stack([frame.iloc[0, c].to_numpy() for c in range(12)], axis=1)
    np.testing.assert_allclose(src["train"][0]["sequence"], first, rtol=1e-6)
    names = builder.info.features["label"].names
    assert [names[int(src["train"][i]["label"])] for i in range(270)] == list(labels)


def test_mnist1d_builder_reproduces_the_package_dataset(data_root):
    from mnist1d.data import get_dataset_args, make_dataset

    reference = make_dataset(get_dataset_args())
    src = builders.make(builders.Mnist1d, str(data_root / "tfds")).as_data_source()
    assert len(src["train"]) == 4000 and len(src["test"]) == 1000
    for i in (0, 1234, 3999):
        np.testing.assert_allclose(src["train"][i]["sequence"], reference["x"][i], rtol=1e-6)
        assert int(src["train"][i]["label"]) == reference["y"][i]
    spec = data.info(_cfg(data_root, "mnist1d"))
    assert spec["seq_len"] == 40 and spec["input_features"] == 1 and spec["num_classes"] == 10


def test_basic_motions_shapes(data_root):
    spec = data.info(_cfg(data_root, "basic_motions"))
    assert spec["input_features"] == 6 and spec["seq_len"] == 100 and spec["num_classes"] == 4
    assert spec["num_examples"]["train"] + spec["num_examples"]["validation"] == 40
    assert spec["num_examples"]["test"] == 40


def test_padding_gives_lengths_zero_tails_and_standardised_values(data_root):
    cfg = _cfg(data_root, "japanese_vowels")
    spec = data.info(cfg)
    builder = builders.make(builders.UeaArchive, str(data_root / "tfds"), "japanese_vowels")
    test_src = builder.as_data_source(split="test")
    mean, std = np.array(spec["mean"]), np.array(spec["std"])
    cfg["bucket_window"] = 0
    it = data.load(cfg, split="test", batch_size=16, seed=0, repeat=False)
    seen = 0
    for batch in it:
        for b in range(16):
            if batch["weights"][b] == 0:
                assert batch["seq_lengths"][b] == 1 and not batch["inputs"][b].any()
                continue
            ex = test_src[seen]
            n = int(ex["length"])
            assert batch["seq_lengths"][b] == n and batch["labels"][b] == int(ex["label"])
            np.testing.assert_allclose(
                batch["inputs"][b, :n], (ex["sequence"] - mean) / std, rtol=1e-5, atol=1e-6
            )
            assert not batch["inputs"][b, n:].any()
            seen += 1
    assert seen == 370


def test_training_channel_statistics_come_from_train_split_only(data_root):
    spec = data.info(_cfg(data_root, "japanese_vowels"))
    builder = builders.make(builders.UeaArchive, str(data_root / "tfds"), "japanese_vowels")
    train = builder.as_data_source(split="train")
    # Validation holds 3 of each speaker's 30 utterances, the middles of its thirds.
    seen: dict[int, int] = {}
    kept = []
    for i in range(len(train)):
        label = int(train[i]["label"])
        seen[label] = seen.get(label, -1) + 1
        if seen[label] not in (5, 15, 25):
            kept.append(train[i]["sequence"])
    assert len(kept) == 243
    frames = np.concatenate(kept)
    np.testing.assert_allclose(spec["mean"], frames.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(spec["std"], frames.std(axis=0), rtol=1e-4)


def _padding_fraction(cfg, **options):
    it = data.load({**cfg, **options}, split="test", batch_size=16, seed=0, repeat=False)
    real = padded = 0
    for batch in it:
        w = batch["weights"] > 0
        real += int(batch["seq_lengths"][w].sum())
        padded += int(w.sum()) * batch["inputs"].shape[1]
    return 1.0 - real / padded


def test_bucketing_reduces_padding_on_japanese_vowels(data_root):
    cfg = _cfg(data_root, "japanese_vowels", pad_multiple=1)
    to_max = _padding_fraction(cfg, pad_to="max", bucket_window=0)
    to_batch = _padding_fraction(cfg, bucket_window=0)
    bucketed = _padding_fraction(cfg, bucket_window=8)
    assert bucketed < 0.5 * to_batch < to_max


def test_bucketed_training_is_resumable_and_sees_every_example(data_root):
    cfg = _cfg(data_root, "japanese_vowels")
    it = data.load(cfg, split="train", batch_size=9, seed=1)
    first_epoch = [next(it) for _ in range(27)]  # 243 training examples = 27 batches
    state = it.get_state()
    following = next(it)
    again = data.load(cfg, split="train", batch_size=9, seed=1)
    again.set_state(state)
    np.testing.assert_array_equal(next(again)["inputs"], following["inputs"])
    labels = np.concatenate([b["labels"] for b in first_epoch])
    assert (
        np.bincount(labels).tolist()
        == np.bincount([b for b in np.concatenate([x["labels"] for x in first_epoch])]).tolist()
    )
    lengths = np.concatenate([b["seq_lengths"] for b in first_epoch])
    spread = [np.ptp(b["seq_lengths"]) for b in first_epoch]
    assert len(lengths) == 243 and np.mean(spread) < 6


def test_too_long_sequence_is_an_error(data_root):
    with pytest.raises(ValueError, match="max_len is 20"):
        data.info(_cfg(data_root, "japanese_vowels", max_len=20))


def test_sequential_and_permuted_mnist_under_mock_data(tmp_path):
    base = {"name": "mnist", "data_dir": str(tmp_path)}
    with tfds.testing.mock_data(num_examples=12):
        pixel = next(data.load(base, split="train", batch_size=4, seed=0))
        perm = next(data.load({**base, "permuted": True}, split="train", batch_size=4, seed=0))
        row = next(data.load({**base, "mode": "row"}, split="train", batch_size=4, seed=0))
        spec = data.info({**base, "mode": "row"})
    assert pixel["inputs"].shape == (4, 784, 1) and row["inputs"].shape == (4, 28, 28)
    assert spec["seq_len"] == 28 and spec["input_features"] == 28
    np.testing.assert_array_equal(pixel["inputs"].reshape(4, 28, 28), row["inputs"])
    order = np.random.default_rng(0).permutation(784)
    np.testing.assert_array_equal(perm["inputs"][:, :, 0], pixel["inputs"][:, order, 0])
    assert (pixel["seq_lengths"] == 784).all() and pixel["labels"].max() < 10
