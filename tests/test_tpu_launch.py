"""The real ``rnnlab train`` through the tpu/ scripts, on a stand-in slice of two workers
(tests/tpu_world.py): two local processes, one per worker, joined by ``jax.distributed``
on localhost exactly as the scale-out tests join them.

Two slices run one small experiment (experiments/faults.py, longer) at the same time:

- ``reference``: ``tpu/run.sh`` on a slice that stays up, the uninterrupted run;
- ``spot``: ``tpu/launch.sh`` on spot capacity from nothing. The stand-in preempts the slice
  once the run has written its checkpoint of step ``PREEMPT_AFTER``: every process gets
  SIGTERM, the workers and their disks disappear, the queued resource shows ``SUSPENDED``.
  The loop must re-queue, set up the new slice, fetch the data already prepared and resume.

The resumed run must end with exactly the losses and parameters of the uninterrupted one;
the data must have been prepared once, on worker 0 of the first slice, and reused after the
new slice's sync; the worker logs of both slices must be in the workdir.
"""

import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from tpu_world import World, long_lived_dir

from rnnlab import parallel
from rnnlab.data.config import data_dir
from rnnlab.train import config as cfg_lib
from rnnlab.train import loop
from rnnlab.train import metric_log as metrics_lib

EXPERIMENT = "experiments/faults.py"
STEPS, PREEMPT_AFTER = 60, 10
TRAIN_ARGS = [f"--config.train.steps={STEPS}", "--config.train.log_every=1"]
# A bound, not an expectation: the whole module took 5 to 7 minutes on 2 cores at a load
# average near 28.
TIMEOUT = 900


def _world(tmp: Path, **kw) -> World:
    world = World(tmp, workers=2, trainer="real", **kw)
    # The raw novels are in the bucket already (fetching them needs apt-get and a network);
    # preparing the TFDS corpus from them is the work that must happen once.
    raw = data_dir({}) / "austen"
    shutil.copytree(raw, world.gcs / "my-bucket" / "rnnlab-data" / "austen")
    return world


def _preempt_after_checkpoint(world: World, checkpoints: Path, done: threading.Event):
    """Preempts the slice as soon as a checkpoint of step >= PREEMPT_AFTER exists."""
    while not done.is_set():
        steps = [int(p.name) for p in checkpoints.glob("*") if p.name.isdigit()]
        if steps and max(steps) >= PREEMPT_AFTER:
            world.preempt()
            return
        time.sleep(0.02)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def runs():
    with long_lived_dir("rnnlab-tpu-launch-") as tmp:
        (tmp / "reference").mkdir()
        (tmp / "spot").mkdir()
        yield _run_both(_world(tmp / "reference"), _world(tmp / "spot", active=False))


def _run_both(ref: World, spot: World) -> dict:
    roots = {"ref": ref.tmp / "workdirs", "spot": spot.tmp / "workdirs"}
    common = {"POLL_SECONDS": "1", "LOG_COPY_EVERY": "0", "STOP_TIMEOUT": "60"}
    try:
        ref.script("sync.sh", **common)
        ref.script(
            "run.sh", "--name", "run", EXPERIMENT, *TRAIN_ARGS,
            WORKDIR_ROOT=str(roots["ref"]), **common,
        )  # fmt: skip
        launch = subprocess.Popen(
            ["bash", "tpu/launch.sh", "--name", "run", "--keep", EXPERIMENT, *TRAIN_ARGS],
            cwd=Path(__file__).resolve().parents[1],
            env={
                **spot.env, **common, "SPOT": "1", "WORKDIR_ROOT": str(roots["spot"]),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        done = threading.Event()
        watcher = threading.Thread(
            target=_preempt_after_checkpoint,
            args=(spot, roots["spot"] / "run" / "checkpoints", done),
            daemon=True,
        )
        watcher.start()
        try:
            out, err = launch.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            launch.kill()
            out, err = launch.communicate()
            pytest.fail(f"tpu/launch.sh did not finish in {TIMEOUT} s:\n{err[-6000:]}")
        finally:
            done.set()
            launch.kill()
        ref.wait_sessions(TIMEOUT)
        assert launch.returncode == 0, err[-6000:]
        data_after = _files(spot.home(1) / "rnnlab-data")
        spot.script("sync.sh")
        data_after_sync = _files(spot.home(1) / "rnnlab-data")
    finally:
        ref.close()
        spot.close()
    return {
        "ref": ref, "spot": spot, "roots": roots, "out": out, "err": err,
        "data_after": data_after, "data_after_sync": data_after_sync,
    }  # fmt: skip


def _train_records(workdir: Path):
    return [r for r in metrics_lib.read(str(workdir / "metrics.jsonl")) if r["split"] == "train"]


def _params(workdir: Path):
    config = cfg_lib.override(cfg_lib.load(EXPERIMENT), [a[2:] for a in TRAIN_ARGS])
    run = loop.Run(config, str(workdir), devices=jax.devices()[:1])
    assert run.checkpoints.latest_step() == STEPS
    state, _ = run.restore(STEPS)
    return parallel.to_host(state).params


def _untimed(record: dict) -> dict:
    """A metrics record without its wall-clock fields (time, step time, throughput)."""
    return {k: v for k, v in record.items() if "time" not in k and "per_second" not in k}


@pytest.mark.slow
def test_the_spot_run_was_preempted_requeued_and_finished(runs):
    spot = runs["spot"]
    assert spot.history() == {"creates": 2, "preempted": 1}
    # The round's number depends on how many polls the preemption took to be seen.
    assert re.search(r"round \d+: slice is SUSPENDED; requesting it", runs["err"]), runs["err"]
    assert "finished" in runs["err"]
    verbs = [c[3:5] for c in spot.calls("gcloud") if c[1:3] == ["compute", "tpus"]]
    creates = [v for v in verbs if v == ["queued-resources", "create"]]
    assert len(creates) == 2 and ["queued-resources", "delete"] in verbs
    # What the stand-in received, against the documented form (queued-resources create).
    received = [c for c in spot.calls("gcloud") if c[3:5] == ["queued-resources", "create"]]
    assert received == 2 * [
        ["gcloud", "compute", "tpus", "queued-resources", "create", "test-tpu-qr",
         "--project=my-project", "--zone=us-central2-b", "--node-id=test-tpu",
         "--accelerator-type=v4-32", "--runtime-version=tpu-ubuntu2204-base", "--spot"]
    ]  # fmt: skip
    deletes = [c for c in spot.calls("gcloud") if c[3:5] == ["queued-resources", "delete"]]
    assert deletes == [
        ["gcloud", "compute", "tpus", "queued-resources", "delete", "test-tpu-qr",
         "--project=my-project", "--zone=us-central2-b", "--force", "--quiet"]
    ]  # fmt: skip
    # Both slices' worker logs are in the workdir: the first leg stopped with a checkpoint
    # on SIGTERM, the second resumed from it and completed.
    logs = sorted((runs["roots"]["spot"] / "run" / "logs").iterdir())
    assert len(logs) == 4, logs
    first, second = [p.read_text() for p in logs if p.name.startswith("t1v-n-fake-w-0-")]
    stopped = int(first.split("preempted at step ")[1].split(":")[0])
    assert PREEMPT_AFTER <= stopped < STEPS
    assert f"resuming from step {stopped} of {STEPS}" in second and "completed" in second
    assert "2 device(s)" in second and "2 process(es)" in second


@pytest.mark.slow
def test_the_resumed_run_ends_bit_identical_to_the_uninterrupted_one(runs):
    ref, spot = runs["roots"]["ref"] / "run", runs["roots"]["spot"] / "run"
    a, b = _train_records(ref), _train_records(spot)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, STEPS + 1))
    assert [_untimed(r) for r in b] == [_untimed(r) for r in a]
    assert a[-1]["loss"] < a[0]["loss"]
    pa, pb = jax.tree.leaves(_params(ref)), jax.tree.leaves(_params(spot))
    assert len(pa) == len(pb) >= 4
    for x, y in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(np.asarray(y), np.asarray(x))
    sa = json.loads((ref / "summary.json").read_text())
    sb = json.loads((spot / "summary.json").read_text())
    for split in sa["final"]:
        assert _untimed(sb["final"][split]) == _untimed(sa["final"][split])
    assert sb["final"]["validation"]


@pytest.mark.slow
def test_data_were_prepared_once_and_survive_a_sync(runs):
    spot = runs["spot"]
    # prepare_data ran on worker 0 of each slice, never on worker 1; only the first built.
    assert runs["out"].count("prepared (") == 1 and "already prepared" in runs["out"]
    assert not any("prepare_data" in c for c in spot.worker_commands(1))
    assert any("prepare_data" in c for c in spot.worker_commands(0))
    for worker in (0, 1):
        home = spot.home(worker)
        assert any((home / "rnnlab-data" / "tfds").rglob("*.array_record*"))
        assert not (home / "rnnlab" / "data").exists()  # nothing prepared in ./data
    assert runs["data_after"] and runs["data_after_sync"] == runs["data_after"]
    stored = _files(spot.gcs / "my-bucket" / "rnnlab-data")
    assert stored == runs["data_after"]
