"""Bad own data: one line naming the file, the record or row and what is wrong, before the
workdir is touched; and in-memory sources that batch exactly like the same file."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from rnnlab import cli, data
from rnnlab.data.memory import ArraySource


def _good(n=20, t=6, f=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, t, f)).astype(np.float32)
    return x, (x[:, :, 0].mean(1) > 0).astype(np.int64)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _case(tmp_path, name):
    x, y = _good()
    if name == "wrong_shape":
        return _npz(tmp_path / "d.npz", inputs=x[..., None], labels=y), "shape [20, 6, 2, 1]"
    if name == "nan":
        x[7, 3, 1] = np.nan
        return _npz(
            tmp_path / "d.npz", inputs=x, labels=y
        ), "record 7: value nan at time 3, feature 1"
    if name == "inf":
        x[2, 0, 0] = np.inf
        return _npz(tmp_path / "d.npz", inputs=x, labels=y), "record 2: value inf at time 0"
    if name == "label_outside":
        y[11] = 5
        path = _npz(tmp_path / "d.npz", inputs=x, labels=y)
        return path, "record 11: label 5 is outside the classes ['0', '1']"
    if name == "mismatched_lengths":
        return _npz(tmp_path / "d.npz", inputs=x, labels=y[:-1]), "19 labels for 20 records"
    if name == "ragged_lengths":
        flat = x.reshape(-1, 2)
        lengths = np.full(20, 5)
        path = _npz(tmp_path / "d.npz", inputs=flat, lengths=lengths, labels=y)
        return path, "they sum to 100 but ragged inputs have 120 rows"
    if name == "csv_row":
        frame = pd.DataFrame({"id": [0, 0, 1, 1], "time": [0, 1, 0, 1], "a": [1.0, 2.0, 3.0, 4.0],
                              "label": [0, 1, 1, 1]})  # fmt: skip
        frame.to_csv(tmp_path / "d.csv", index=False)
        return tmp_path / "d.csv", "row 3: id 0 has label 1 but 0 on its earlier rows"
    if name == "csv_nan":
        frame = pd.DataFrame({"id": [0, 0, 1], "time": [0, 1, 0], "a": [1.0, np.inf, 3.0],
                              "label": [0, 0, 1]})  # fmt: skip
        frame.to_csv(tmp_path / "d.csv", index=False)
        return tmp_path / "d.csv", "row 3: column 'a' value inf is not finite"
    raise AssertionError(name)


CASES = ("wrong_shape", "nan", "inf", "label_outside", "mismatched_lengths", "ragged_lengths",
         "csv_row", "csv_nan")  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_bad_training_file_is_one_line_naming_file_record_and_problem(tmp_path, capsys, name):
    path, expected = _case(tmp_path, name)
    workdir = tmp_path / "run"
    extra = ["--config.data.classes=2"] if name == "label_outside" else []
    args = ["train", "--config", "experiments/own_data.py:classification,small",
            "--workdir", str(workdir), f"--config.data.path={path}", *extra]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(path) in err and expected in err, err
    assert not workdir.exists()


def test_an_empty_split_is_named(tmp_path, capsys):
    x, y = _good()
    train = _npz(tmp_path / "train.npz", inputs=x, labels=y)
    test = _npz(tmp_path / "test.npz", inputs=x[:0], labels=y[:0])
    workdir = tmp_path / "run"
    args = ["train", "--config", "experiments/own_data.py:classification,small",
            "--workdir", str(workdir), f"--config.data.path={train}",
            f"--config.data.test_path={test}"]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert f"{test}: split 'test' is empty" in err and len(err.splitlines()) == 1
    assert not workdir.exists()


def test_a_validation_label_unseen_in_training_is_named(tmp_path):
    x, y = _good()
    bad = {"inputs": x[:3], "labels": [0, 7, 1]}
    source = ArraySource({"inputs": x, "labels": y}, validation=bad, task="classification")
    with pytest.raises(ValueError, match=r"validation data: record 1: label 7 is outside"):
        source.info({"name": "mine"})


def _batches(it, n):
    return [next(it) for _ in range(n)]


def test_arrays_and_a_map_data_source_batch_exactly_like_the_file(tmp_path):
    rng = np.random.default_rng(3)
    lengths = rng.integers(3, 9, size=30)
    seqs = [rng.normal(size=(t, 2)) for t in lengths]
    labels = rng.integers(0, 3, size=30)
    path = _npz(tmp_path / "d.npz", inputs=np.concatenate(seqs), lengths=lengths, labels=labels)
    cfg = {"name": "sequence_classification", "path": str(path)}
    shard = {"batch_size": 4, "seed": 5, "shard_index": 1, "shard_count": 2}
    want = _batches(data.load(cfg, split="train", **shard), 6)
    arrays = ArraySource({"inputs": np.concatenate(seqs), "lengths": lengths, "labels": labels},
                         task="classification")  # fmt: skip
    mapped = ArraySource(
        _ListSource([{"inputs": s, "label": c} for s, c in zip(seqs, labels, strict=True)]),
        task="classification",
    )
    for src in (arrays, mapped):
        info = src.info({"name": "mine"})
        assert info["num_examples"] == data.info(cfg)["num_examples"]
        it = src.load({"name": "mine"}, split="train", **shard)
        got = _batches(it, 6)
        for a, b in zip(want, got, strict=True):
            assert a.keys() == b.keys()
            for k in a:
                np.testing.assert_array_equal(a[k], b[k])
        # Resumable: a restored iterator continues with the same batch.
        it2 = src.load({"name": "mine"}, split="train", **shard)
        _batches(it2, 2)
        state = it2.get_state()
        it3 = src.load({"name": "mine"}, split="train", **shard)
        it3.set_state(state)
        np.testing.assert_array_equal(next(it3)["inputs"], want[2]["inputs"])


class _ListSource:
    """A random-access source as grain's ``MapDataSource`` protocol defines it."""

    def __init__(self, records):
        self._records = records

    def __len__(self):
        return len(self._records)

    def __getitem__(self, i):
        return self._records[i]


def test_sentencepiece_pairs_encode_as_the_named_model_does(tmp_path):
    import sentencepiece as spm

    text = ["the cat sat on the mat", "a dog ran in the sun", "the sun is red", "cats and dogs"]
    (tmp_path / "corpus.txt").write_text("\n".join(text * 20))
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "corpus.txt"), model_prefix=str(tmp_path / "sp"), vocab_size=40,
        model_type="bpe", minloglevel=2,
    )  # fmt: skip
    (tmp_path / "pairs.tsv").write_text("".join(f"{t}\t{t[::-1]}\n" for t in text * 5))
    cfg = {"name": "sentence_pairs", "path": str(tmp_path / "pairs.tsv"), "bucket_window": 0,
           "tokenizer": "sentencepiece", "tokenizer_model": str(tmp_path / "sp.model")}  # fmt: skip
    info = data.info(cfg)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    assert info["vocab_size"] == sp.get_piece_size() + 4
    batch = next(data.load(cfg, split="train", batch_size=4, seed=0, repeat=False))
    for row in range(4):
        n = int(batch["input_lengths"][row])
        ids = [int(i) - 4 for i in batch["inputs"][row, :n]]
        assert sp.decode(ids) in text


@pytest.mark.parametrize(
    "content, expected",
    [
        ("a\tb\nc d\n", "line 2: expected 2 tab-separated fields (source, target), found 1"),
        ("a\tb\n\t b\n", "line 2: the source is empty or not text"),
    ],
)
def test_bad_pairs_name_the_line(tmp_path, capsys, content, expected):
    (tmp_path / "p.tsv").write_text(content)
    workdir = tmp_path / "run"
    args = ["train", "--config", "experiments/own_data.py:translation,small",
            "--workdir", str(workdir), f"--config.data.path={tmp_path / 'p.tsv'}"]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{tmp_path / 'p.tsv'}: {expected}" in err, err
    assert not workdir.exists()


def test_tagging_batches_carry_a_label_and_a_weight_per_valid_step(tmp_path):
    rng = np.random.default_rng(7)
    lengths = np.array([3, 5, 2, 4])
    flat = rng.normal(size=(lengths.sum(), 2))
    tags = (flat[:, 0] > 0).astype(int)
    path = _npz(tmp_path / "t.npz", inputs=flat, lengths=lengths, labels=tags)
    cfg = {"name": "sequence_tagging", "path": str(path), "validation_path": str(path),
           "test_path": str(path), "bucket_window": 0}  # fmt: skip
    assert data.info(cfg)["num_classes"] == 2
    batch = next(data.load(cfg, split="test", batch_size=4, seed=0, repeat=False))
    for row, (start, n) in enumerate(zip(np.r_[0, np.cumsum(lengths)[:-1]], lengths, strict=True)):
        np.testing.assert_array_equal(batch["labels"][row, :n], tags[start : start + n])
        np.testing.assert_array_equal(batch["weights"][row], np.arange(5) < n)  # T: longest 5
    # The same records from Python, as a MapDataSource of per-step labels.
    seqs = np.split(flat, np.cumsum(lengths)[:-1])
    records = _ListSource([{"inputs": s, "label": s[:, 0] > 0} for s in seqs])
    source = ArraySource(records, validation=records, test=records, task="tagging")
    got = next(source.load({"name": "t", "bucket_window": 0}, split="test", batch_size=4, seed=0,
                           repeat=False))  # fmt: skip
    np.testing.assert_array_equal(got["labels"], batch["labels"])


@pytest.mark.parametrize(
    "labels, expected",
    [
        (np.zeros(13, int), "per-step labels have shape [13], the inputs need [14]"),
        (np.r_[np.zeros(12, int), 3, 0], "record 3: label 3 at time 0 is outside the classes"),
    ],
)
def test_bad_tags_are_named(tmp_path, labels, expected):
    lengths = np.array([3, 5, 4, 2])
    x = np.random.default_rng(0).normal(size=(14, 2))
    path = _npz(tmp_path / "t.npz", inputs=x, lengths=lengths, labels=labels)
    with pytest.raises(ValueError, match=re.escape(f"{path}: ") + ".*" + re.escape(expected)):
        data.info({"name": "sequence_tagging", "path": str(path), "classes": 2,
                   "validation_path": str(path), "test_path": str(path)})  # fmt: skip
