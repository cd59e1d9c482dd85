"""Character and word language-model data: Austen through its TFDS builder, TBPTT streams,
text directories, packed sentences, catalog corpora under mock data."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

import rnnlab.data as data
from rnnlab.data import lm


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _austen(data_root, **options):
    return {"name": "austen", "data_dir": str(data_root), **options}


def test_austen_builder_splits_every_novel_90_5_5(data_root):
    spec = data.info(_austen(data_root))
    raw = {p.stem: p.read_text(encoding="utf-8") for p in (data_root / "austen").glob("*.txt")}
    total = sum(len(t) for t in raw.values())
    assert sum(spec["num_tokens"].values()) == total
    assert spec["num_documents"] == {"train": 6, "validation": 6, "test": 6}
    expected_valid = sum(round(len(t) * 0.95) - round(len(t) * 0.9) for t in raw.values())
    assert spec["num_tokens"]["validation"] == expected_valid
    train_chars = set("".join(t[: round(len(t) * 0.9)] for t in raw.values()))
    assert spec["vocab"] == ["<pad>", "<unk>"] + sorted(train_chars)
    assert spec["task"] == "lm" and spec["vocab_size"] == len(spec["vocab"])


def test_austen_builder_is_array_record_in_data_dir(data_root):
    data.info(_austen(data_root))
    prepared = list((data_root / "tfds" / "rnnlab_text").glob("austen-*/1.0.0/*.array_record*"))
    assert prepared, "the Austen builder should have written array_record files"
    meta = json.loads(
        next(
            (data_root / "tfds" / "rnnlab_text").glob("austen-90-*/1.0.0/metadata.json")
        ).read_text()
    )
    assert meta["documents"][0] == "emma"


def test_austen_single_novel_stream_is_the_text(data_root):
    cfg = _austen(data_root, novels=["persuasion"], seq_len=32)
    spec = data.info(cfg)
    text = (data_root / "austen" / "persuasion.txt").read_text(encoding="utf-8")
    cut = round(len(text) * 0.9), round(len(text) * 0.95)
    it = data.load(cfg, split="validation", batch_size=1, seed=0, repeat=False)
    chars = []
    for batch in it:
        keep = batch["weights"][0] > 0
        chars.extend(spec["vocab"][i] for i in batch["targets"][0][keep])
    assert "".join(chars) == text[cut[0] + 1 : cut[1]]


def _stream_reference(tokens, starts, T, rows_total, span, offset, row, k):
    """Naive slice for one row of one training batch."""
    s = offset + row * span + k * T
    inputs, targets = tokens[s : s + T], tokens[s + 1 : s + T + 1]
    resets = starts[s : s + T].copy()
    if k == 0:
        resets[0] = True
    return inputs, targets, resets, ~starts[s + 1 : s + T + 1]


def test_stream_rows_continue_across_batches_and_match_reference():
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, 50, 1000).astype(np.int32)
    starts = np.zeros(1000, bool)
    starts[[0, 333, 700]] = True
    T, B, n = 7, 3, 2
    span = (1000 - T) // (B * n)
    steps = span // T
    for shard in range(n):
        ds, _ = lm.stream_batches(
            tokens,
            starts,
            seq_len=T,
            batch_size=B,
            seed=5,
            shard_index=shard,
            shard_count=n,
            repeat=True,
        )
        batches = [ds[i] for i in range(steps + 2)]
        for i, batch in enumerate(batches):
            epoch, k = divmod(i, steps)
            offset = int(np.random.default_rng([5, epoch]).integers(T))
            for b in range(B):
                ref = _stream_reference(tokens, starts, T, B * n, span, offset, shard * B + b, k)
                np.testing.assert_array_equal(batch["inputs"][b], ref[0])
                np.testing.assert_array_equal(batch["targets"][b], ref[1])
                np.testing.assert_array_equal(batch["resets"][b], ref[2])
                np.testing.assert_array_equal(batch["weights"][b] > 0, ref[3])
        # Within an epoch, row b of batch k+1 starts where row b of batch k stopped.
        for k in range(steps - 1):
            np.testing.assert_array_equal(
                batches[k]["targets"][:, -1], batches[k + 1]["inputs"][:, 0]
            )


def test_stream_eval_scores_every_target_once_across_shards():
    tokens = np.arange(2, 2 + 101, dtype=np.int32)
    starts = np.zeros(101, bool)
    starts[0] = True
    seen, counts = [], set()
    for shard in range(3):
        ds, steps = lm.stream_batches(
            tokens,
            starts,
            seq_len=4,
            batch_size=2,
            seed=0,
            shard_index=shard,
            shard_count=3,
            repeat=False,
        )
        counts.add(steps)
        for k in range(steps):
            batch = ds[k]
            seen.extend(batch["targets"][batch["weights"] > 0].tolist())
    assert len(counts) == 1
    assert sorted(seen) == tokens[1:].tolist()


def test_text_dir_documents_reset_state_and_vocab_from_train(tmp_path):
    docs = tmp_path / "corpus"
    docs.mkdir()
    (docs / "a.txt").write_text("abcdefghij" * 20)
    (docs / "b.txt").write_text("klmnopqrst" * 20)
    cfg = {"name": "text_dir", "path": str(docs), "data_dir": str(tmp_path), "seq_len": 5}
    spec = data.info(cfg)
    assert spec["vocab"] == ["<pad>", "<unk>"] + list("abcdefghijklmnopqrst")
    assert spec["num_tokens"] == {"train": 360, "validation": 20, "test": 20}
    it = data.load(cfg, split="train", batch_size=1, seed=0, repeat=False)
    batches = list(it)
    inputs = np.concatenate([b["inputs"][0] for b in batches])
    resets = np.concatenate([b["resets"][0] for b in batches])
    text = "".join(spec["vocab"][i] for i in inputs[:359])
    assert text == ("abcdefghij" * 18 + "klmnopqrst" * 18)[:359]
    assert resets[0] and resets[180] and resets.sum() == 2


def test_text_dir_errors(tmp_path):
    with pytest.raises(ValueError, match="path"):
        data.info({"name": "text_dir", "data_dir": str(tmp_path)})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no files matching"):
        data.info({"name": "text_dir", "path": str(tmp_path / "empty"), "data_dir": str(tmp_path)})
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    (tiny / "t.txt").write_text("x" * 40)
    cfg = {"name": "text_dir", "path": str(tiny), "data_dir": str(tmp_path), "seq_len": 8}
    with pytest.raises(ValueError, match="too few|expected at least"):
        data.load(cfg, split="train", batch_size=4, seed=0)


def _naive_pack(segments, T, B):
    """Reference next-fit packing: a plain list-of-lists loop."""
    rows, row = [], []
    for inputs, targets in segments:
        seg = list(zip(inputs[:T], targets[:T], strict=True))
        if row and len(row) + len(seg) > T:
            rows.append(row)
            row = []
        row = row + [(a, b, j == 0) for j, (a, b) in enumerate(seg)]
        if len(row) == T:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    while len(rows) % B:
        rows.append([])
    return rows


def test_packing_matches_naive_reference():
    rng = np.random.default_rng(1)
    segments = []
    for _ in range(40):
        n = int(rng.integers(1, 14))
        ids = rng.integers(4, 90, n)
        segments.append((np.r_[2, ids].astype(np.int32), np.r_[ids, 3].astype(np.int32)))
    T, B = 10, 3
    ref = _naive_pack(segments, T, B)
    position, got = 0, []
    while position < len(segments):
        rows, position = lm.pack_rows(
            segments.__getitem__, position, seq_len=T, batch_size=B, limit=len(segments)
        )
        batch = lm.collate_packed(rows, T)
        for b in range(B):
            got.append(batch)
            row = ref[len(got) - 1]
            m = len(row)
            np.testing.assert_array_equal(batch["inputs"][b][:m], [r[0] for r in row])
            np.testing.assert_array_equal(batch["targets"][b][:m], [r[1] for r in row])
            np.testing.assert_array_equal(batch["resets"][b][:m], [r[2] for r in row])
            assert batch["weights"][b].sum() == m and not batch["resets"][b][m:].any()
    assert len(got) == len(ref)
    assert lm.count_packed_rows([len(s[0]) for s in segments], T) == len([r for r in ref if r])


def test_lm1b_packed_under_mock_data_resumes_and_shards(tmp_path):
    cfg = {"name": "lm1b", "data_dir": str(tmp_path), "seq_len": 16}
    with tfds.testing.mock_data(num_examples=40):
        spec = data.info(cfg)
        assert spec["vocab"][:4] == ["<pad>", "<unk>", "<s>", "</s>"]
        it = data.load(cfg, split="train", batch_size=4, seed=3)
        take(it, 2)
        state = json.loads(json.dumps(it.get_state()))
        expected = take(it, 3)
        again = data.load(cfg, split="train", batch_size=4, seed=3)
        again.set_state(state)
        for a, b in zip(take(again, 3), expected, strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
        counts = []
        total_words = 0
        for shard in range(2):
            ev = data.load(
                cfg,
                split="test",
                batch_size=2,
                seed=0,
                shard_index=shard,
                shard_count=2,
                repeat=False,
            )
            batches = list(ev)
            counts.append(len(batches))
            total_words += sum(int((b["targets"] == 3).sum()) for b in batches)
        assert counts[0] == counts[1] and total_words == 40  # every sentence's </s> once


def test_tiny_shakespeare_under_mock_data(tmp_path):
    cfg = {"name": "tiny_shakespeare", "data_dir": str(tmp_path), "seq_len": 8}
    with tfds.testing.mock_data(num_examples=30):
        spec = data.info(cfg)
        batch = next(data.load(cfg, split="train", batch_size=2, seed=0))
    assert spec["level"] == "char"
    assert batch["inputs"].shape == (2, 8) and batch["inputs"].dtype == np.int32
    assert batch["resets"].dtype == bool and batch["weights"].dtype == np.float32
    assert batch["inputs"].max() < spec["vocab_size"]
