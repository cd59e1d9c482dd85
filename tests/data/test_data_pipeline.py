"""Pipeline guarantees: determinism, disjoint covering shards, exact resume, equal eval
batch counts across processes, clear errors, no TensorFlow import, global arrays."""

import json
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

import rnnlab.data as data
from rnnlab.data import pipeline


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def _configs(root):
    return [
        {"name": "austen", "data_dir": str(root), "seq_len": 16, "novels": ["emma"]},
        {"name": "japanese_vowels", "data_dir": str(root)},
        {"name": "mnist1d", "data_dir": str(root)},
        {"name": "co2", "data_dir": str(root)},
        {"name": "copy", "seq_len": 10},
        {"name": "reverse"},
    ]


@pytest.mark.parametrize("index", range(6))
def test_same_seed_same_batches_and_exact_resume_after_json_round_trip(data_root, index):
    cfg = _configs(data_root)[index]
    first = data.load(cfg, split="train", batch_size=4, seed=11)
    second = data.load(cfg, split="train", batch_size=4, seed=11)
    for _ in range(3):
        _same(next(first), next(second))
    state = json.loads(json.dumps(first.get_state()))
    expected = [next(first) for _ in range(4)]
    restored = data.load(cfg, split="train", batch_size=4, seed=11)
    restored.set_state(state)
    for batch in expected:
        _same(next(restored), batch)
    other = next(data.load(cfg, split="train", batch_size=4, seed=12))
    assert not np.array_equal(other["inputs"], expected[0]["inputs"])


def test_locked_config_dict_works_like_a_dict(data_root):
    import ml_collections

    cfg = ml_collections.ConfigDict({"name": "sunspots", "data_dir": str(data_root), "seq_len": 20})
    cfg.lock()
    plain = {"name": "sunspots", "data_dir": str(data_root), "seq_len": 20}
    assert data.info(cfg) == data.info(plain)
    _same(
        next(data.load(cfg, split="train", batch_size=4, seed=0)),
        next(data.load(plain, split="train", batch_size=4, seed=0)),
    )


def test_a_finished_pass_can_be_restored_and_read_again():
    cfg = {"name": "adding", "seq_len": 5, "eval_examples": 10}
    it = data.load(cfg, split="test", batch_size=4, seed=0, repeat=False)
    start = it.get_state()
    first = list(it)
    assert len(first) == it.num_batches == 3 and list(it) == []
    it.set_state(start)
    for a, b in zip(list(it), first, strict=True):
        _same(a, b)


def test_restoring_into_a_different_pipeline_is_an_error(data_root):
    cfg = {"name": "copy", "seq_len": 10}
    state = data.load(cfg, split="train", batch_size=4, seed=0).get_state()
    other = data.load(cfg, split="train", batch_size=8, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        other.set_state(state)


def test_example_order_shards_are_disjoint_and_cover_each_epoch():
    n, shards, epochs = 23, 3, 2
    streams = []
    for h in range(shards):
        order, _ = pipeline.example_order(
            n, batch_size=1, seed=4, shuffle=True, shard_index=h, shard_count=shards, repeat=True
        )
        streams.append([int(order[i]) for i in range(epochs * n // shards + 2)])
    merged = [streams[j % shards][j // shards] for j in range(epochs * n)]
    for e in range(epochs):
        assert sorted(merged[e * n : (e + 1) * n]) == list(range(n))
    assert merged[:n] != merged[n:]  # each epoch reshuffled


def test_finite_passes_are_disjoint_cover_the_split_and_have_equal_lengths(data_root):
    cfg = {"name": "co2", "data_dir": str(data_root), "seq_len": 30, "horizon": 5}
    spec = data.info(cfg)
    seen, lengths = [], set()
    for h in range(3):
        it = data.load(
            cfg, split="test", batch_size=16, seed=0, shard_index=h, shard_count=3, repeat=False
        )
        batches = list(it)
        lengths.add((len(batches), it.num_batches))
        for batch in batches:
            real = batch["weights"] > 0
            seen.extend(map(tuple, batch["targets"][real, :, 0].round(5).tolist()))
    assert len(lengths) == 1
    assert len(seen) == spec["num_examples"]["test"] == len(set(seen))


def test_disjoint_training_shards_on_real_data(data_root):
    cfg = {"name": "mnist1d", "data_dir": str(data_root), "validation_fraction": 0.1}
    rows = []
    for h in range(2):
        it = data.load(cfg, split="train", batch_size=20, seed=3, shard_index=h, shard_count=2)
        rows.append(
            {
                tuple(r)
                for b in (next(it) for _ in range(90))
                for r in b["inputs"][..., 0].round(4).tolist()
            }
        )
    assert not rows[0] & rows[1]
    assert len(rows[0] | rows[1]) == 3600


def test_bad_arguments_and_names():
    with pytest.raises(ValueError, match="name must be one of .*austen.*wmt"):
        data.info({"name": "austin"})
    with pytest.raises(ValueError, match="batch_size"):
        data.load({"name": "copy"}, split="train", batch_size=0, seed=0)
    with pytest.raises(ValueError, match="shard_index"):
        data.load(
            {"name": "copy"}, split="train", batch_size=2, seed=0, shard_index=2, shard_count=2
        )
    with pytest.raises(ValueError, match="split"):
        data.load({"name": "copy"}, split="dev", batch_size=2, seed=0)
    with pytest.raises(ValueError, match="empty"):
        pipeline.example_order(
            0, batch_size=2, seed=0, shuffle=True, shard_index=0, shard_count=1, repeat=False
        )
    assert set(data.names()) >= {
        "austen",
        "text_dir",
        "tiny_shakespeare",
        "lm1b",
        "wmt",
        "mnist",
        "mnist1d",
        "japanese_vowels",
        "basic_motions",
        "co2",
        "sunspots",
        "csv_series",
        "adding",
        "copy",
        "mackey_glass",
        "reverse",
    }


def test_catalog_dataset_offline_fails_fast_with_data_dir_advice(tmp_path):
    with pytest.raises(ValueError, match="pass data_dir=DIR"):
        data.info({"name": "mnist", "data_dir": str(tmp_path)})


def test_nothing_imports_tensorflow(data_root):
    code = textwrap.dedent(
        f"""
        import sys
        import rnnlab
        assert "rnnlab.data" not in sys.modules and "grain" not in sys.modules
        import rnnlab.data as data
        for name in ("austen", "japanese_vowels", "co2"):
            next(data.load({{"name": name, "data_dir": {str(data_root)!r}}}, split="train",
                           batch_size=2, seed=0))
        assert "tensorflow" not in sys.modules, "tensorflow was imported"
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_global_batch_of_local_batches_on_eight_devices():
    from rnnlab import parallel  # the engine's one path from local batches to global arrays

    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    batch = next(data.load({"name": "copy", "seq_len": 6}, split="train", batch_size=16, seed=0))
    arrays = parallel.global_batch(batch, mesh)
    assert arrays["inputs"].shape == (16, 26)
    assert len(arrays["inputs"].addressable_shards) == 8
    assert arrays["inputs"].addressable_shards[0].data.shape == (2, 26)
    np.testing.assert_array_equal(np.asarray(arrays["targets"]), batch["targets"])
