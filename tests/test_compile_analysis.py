"""The parts of ``rnnlab compile`` that need no libtpu: the reading of a compiled program
(memory, collectives, roofline), the slice table, the per-host batch layout of a TPU
slice's device order and the target platform of per-backend choices. The compiles
themselves run under ``make tpu-compile`` (tests_tpu/)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from rnnlab import parallel, target
from rnnlab.layers import dispatch, fused_path
from rnnlab.parallel import compiled, topology

HLO = """
ENTRY %main {
  %p = f32[1024,4096]{1,0} parameter(0)
  %all-reduce.1 = f32[1024,4096]{1,0} all-reduce(f32[1024,4096]{1,0} %p), replica_groups={}
  %all-reduce.2 = (f32[82]{0}, bf16[256,82]{1,0}) all-reduce(%a, %b), replica_groups={}
  %ags = (f32[4,8]{1,0}, f32[16,8]{1,0}) all-gather-start(f32[4,8]{1,0} %x), dimensions={0}
  %agd = f32[16,8]{1,0} all-gather-done(%ags)
  %rs = f32[2,8]{1,0} reduce-scatter(f32[16,8]{1,0} %y), dimensions={0}
  %dot = f32[8,8]{1,0} dot(%q, %r)
}
"""


def test_collectives_counts_and_bytes_of_each_kind():
    got = compiled.collectives(HLO)
    # Sizes by hand: 1024 * 4096 * 4; 82 * 4 + 256 * 82 * 2; the gathered 16 x 8 f32; 2 x 8.
    assert got == {
        "all-reduce": {"count": 2, "bytes": 1024 * 4096 * 4 + 82 * 4 + 256 * 82 * 2},
        "all-gather": {"count": 1, "bytes": 16 * 8 * 4},
        "reduce-scatter": {"count": 1, "bytes": 2 * 8 * 4},
    }


def test_memory_total_counts_donated_buffers_once():
    stub = types.SimpleNamespace(
        memory_analysis=lambda: types.SimpleNamespace(
            argument_size_in_bytes=100,
            output_size_in_bytes=90,
            alias_size_in_bytes=80,
            temp_size_in_bytes=500,
            generated_code_size_in_bytes=7,
        )
    )
    assert compiled.memory(stub)["total"] == 100 + 90 - 80 + 500 + 7


def test_verdict_counts_headroom_against_hbm():
    hbm = 16 * 2**30
    assert compiled.verdict(int(0.99 * hbm), hbm)["fits"]
    tight = compiled.verdict(int(0.99 * hbm), hbm, headroom=0.05)
    assert not tight["fits"] and tight["headroom_bytes"] == hbm - int(0.99 * hbm)
    over = compiled.verdict(hbm + 1, hbm)
    assert not over["fits"] and over["headroom_bytes"] == -1


def test_roofline_names_the_larger_term():
    # v5e: 197e12 FLOP/s, 819e9 B/s. 394 GFLOP take 2 ms; 8.19 GB take 10 ms.
    r = compiled.roofline(394e9, 8.19e9, 197e12, 819e9, tokens=1000, model_flops=197e9)
    assert r["bound"] == "memory"
    assert r["compute_s"] == pytest.approx(2e-3) and r["step_time_s"] == pytest.approx(10e-3)
    assert r["tokens_per_s"] == pytest.approx(1000 / 10e-3)
    assert r["mfu"] == pytest.approx(197e9 / (197e12 * 10e-3))
    r = compiled.roofline(394e9, 0.819e9, 197e12, 819e9, tokens=1, model_flops=394e9)
    assert r["bound"] == "compute" and r["mfu"] == pytest.approx(1.0)


def test_model_flops_are_six_n_t_without_embedding_tables():
    params = {
        "embed": {"embedding": np.zeros((82, 16))},
        "lstm": {"kernel_ih": np.zeros((16, 64)), "kernel_hh": np.zeros((16, 64))},
        "bias": np.zeros(64),
        "head": {"kernel": np.zeros((16, 82))},
    }
    n = 16 * 64 * 2 + 16 * 82
    assert compiled.model_flops(params, tokens_per_chip=10) == 6 * n * 10


def test_unknown_topology_is_one_line_listing_the_known_ones():
    with pytest.raises(ValueError) as e:
        topology.get("v5e-17")
    text = str(e.value)
    assert "\n" not in text and "v5e-16" in text and "v4-32" in text and "v6e-8" in text
    assert topology.get("v5litepod-16") is topology.get("v5e-16")
    assert topology.get("v5e-16").hosts == 4 and topology.get("v6e-8").hosts == 1


def _mesh(processes: list[int]) -> types.SimpleNamespace:
    """A one-axis data mesh whose device at position k belongs to ``processes[k]``."""
    devices = np.array([types.SimpleNamespace(process_index=p) for p in processes])
    return types.SimpleNamespace(
        axis_names=("data",), shape={"data": len(processes)}, devices=devices
    )


# The host of each device along jax.make_mesh's data axis on a v5e 4x4 slice (torus order)
# and on a v5p 2x2x4 slice, as libtpu lays them out.
V5E_16 = [0, 0, 1, 1, 1, 1, 0, 2, 3, 3, 3, 3, 2, 2, 2, 0]
V5P_32 = [0, 1, 2, 3] * 4


@pytest.mark.parametrize("processes", [V5E_16, V5P_32], ids=["v5e-16", "v5p-32"])
def test_every_host_gets_a_distinct_complete_share_in_torus_order(processes):
    mesh, batch = _mesh(processes), 64
    per_device = batch // len(processes)
    # Reference from first principles: device k holds rows [k * per_device, (k+1) * ...).
    want = {p: [] for p in set(processes)}
    for k, p in enumerate(processes):
        want[p].extend(range(k * per_device, (k + 1) * per_device))
    shards = [parallel.process_data_shard(mesh, process=p) for p in sorted(want)]
    assert sorted(s[0] for s in shards) == list(range(4)) and {s[1] for s in shards} == {4}
    rows = {p: parallel.process_rows(mesh, batch, process=p).tolist() for p in want}
    assert rows == want
    assert sorted(r for p in rows for r in rows[p]) == list(range(batch))


def test_overlapping_unequal_shares_are_refused():
    with pytest.raises(ValueError, match="process 1 holds batch shards"):
        parallel.process_data_shard(_mesh([0, 0, 0, 1]), process=0)


def test_per_backend_choices_follow_the_target_platform():
    cell = types.SimpleNamespace(compute_dtype=np.float32)
    assert target.platform() == "cpu" and not dispatch.default_hoist()
    with target.compiling_for("tpu"):
        assert target.platform() == "tpu" and dispatch.default_hoist()
        options = fused_path.default_options(cell)
        assert options.hoist and not options.prefetch
    assert fused_path.default_options(cell).prefetch
    with pytest.raises(ValueError, match="platform must be one of"):
        with target.compiling_for("tpu-v5e"):
            pass


def test_shapes_without_the_data_come_from_the_declared_features(tmp_path, monkeypatch):
    import json

    from rnnlab.cli import compile_shapes
    from rnnlab.train import config as cfg_lib

    monkeypatch.setenv("RNNLAB_DATA_DIR", str(tmp_path / "empty"))
    config = cfg_lib.load("experiments/wordlm.py:tpu")
    shapes = compile_shapes.source(config)
    assert "declared features" in shapes.origin
    # lm1b's vocabulary is built from the text; its size is the one the options declare.
    assert shapes.info(None)["vocab_size"] == 32768 and shapes.info(None)["task"] == "lm"
    # The packed language-model batch of rnnlab/data/lm.py, 35 tokens a row.
    assert shapes.layout(4) == {
        "inputs": ((4, 35), np.dtype(np.int32)),
        "targets": ((4, 35), np.dtype(np.int32)),
        "weights": ((4, 35), np.dtype(np.float32)),
        "resets": ((4, 35), np.dtype(bool)),
    }
    given = tmp_path / "dataset_info.json"
    given.write_text(json.dumps({"name": "lm1b", "task": "lm", "vocab_size": 1000}))
    assert compile_shapes.source(config, str(given)).info(None)["vocab_size"] == 1000
    given.write_text(json.dumps({"name": "mnist", "task": "classification"}))
    with pytest.raises(cfg_lib.ConfigError, match="describes dataset 'mnist'"):
        compile_shapes.source(config, str(given))
