"""A workdir is a faithful record of its run: one run owns it (the lock), a refused command
leaves it as it was, every accepted config change is in its history, a run extended on
purpose re-derives (or keeps) its schedule, a workdir that had checkpoints never restarts
from zero unasked, a summary lost to a late kill is rebuilt, and a diverged run stops with
a message that names only checkpoints that exist.

Every test drives ``rnnlab train`` (in process, or as a subprocess for the lock) on the
fault suite's tiny experiment, experiments/faults.py, and compares the workdir with what it
held before the command or with an uninterrupted run."""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rnnlab import cli
from rnnlab.train import lock as lock_lib
from rnnlab.train import metric_log, record

# Every test here trains: make test hands this file out first (tests/conftest.py).
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
FAULTS = str(REPO / "experiments" / "faults.py")


@pytest.fixture(autouse=True)
def data_env(monkeypatch):
    root = Path(os.environ.get("RNNLAB_DATA_DIR") or REPO / "data").absolute()
    from rnnlab.data import fetch

    fetch.fetch_austen(root)
    monkeypatch.setenv("RNNLAB_DATA_DIR", str(root))


def train(workdir, *args, config=True):
    base = ["train", "--workdir", str(workdir)]
    # The tests simulate 8 devices: the global batch must split over them. A cosine schedule
    # to zero for every run, so that one finished run serves the schedule tests too (the
    # other properties here do not depend on the schedule).
    spec = ["--config", FAULTS, "--config.train.batch_size=8", "--config.optim.schedule=cosine"]
    spec = spec if config else []
    return cli.main(base + spec + list(args))


def snapshot(workdir: Path) -> dict[str, bytes]:
    """Every file of the workdir except checkpoints and TensorBoard, by relative path."""
    out = {}
    for p in sorted(Path(workdir).rglob("*")):
        rel = p.relative_to(workdir)
        if p.is_file() and rel.parts[0] not in ("checkpoints", "tensorboard"):
            out[str(rel)] = p.read_bytes()
    return out


def steps_of(workdir: Path) -> list[int]:
    d = Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("rnnlab: ")]
    errors = [line for line in lines if "error" in line.split(":")[1]]
    assert len(errors) == 1, err
    assert "Traceback" not in err, err
    return errors[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 10-step run (checkpoints 5 and 10) on a cosine schedule to zero."""
    root = Path(os.environ.get("RNNLAB_DATA_DIR") or REPO / "data").absolute()
    os.environ.setdefault("RNNLAB_DATA_DIR", str(root))
    workdir = tmp_path_factory.mktemp("finished") / "run"
    assert train(workdir, "--config.train.steps=10") == 0
    return workdir


def copy_of(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# -- a refused command leaves the workdir as it was --------------------------------------------


def test_refused_resume_leaves_config_json_as_it_was(finished, tmp_path, capsys):
    workdir = copy_of(finished, tmp_path / "run")
    before = snapshot(workdir)
    capsys.readouterr()
    code = train(workdir, "--config.train.steps=10", "--config.model.hidden_features=32")
    line = one_error_line(capsys.readouterr().err)
    assert code == 2, line  # another model: bad input
    assert "another model" in line
    assert snapshot(workdir) == before
    # The run is still usable with its own config.
    assert train(workdir, config=False) == 0
    assert cli.main(["eval", "--workdir", str(workdir), "--config.eval.max_batches=1"]) == 0


def test_finished_run_asked_for_another_lr_reports_and_keeps_its_config(finished, tmp_path, capsys):
    workdir = copy_of(finished, tmp_path / "run")
    before = snapshot(workdir)
    capsys.readouterr()
    assert train(workdir, "--config.optim.lr=0.05", config=False) == 0
    captured = capsys.readouterr()
    assert "not applied: optim.lr 0.01 -> 0.05" in captured.err
    assert "already finished" in captured.out and "step 10 (completed)" in captured.out
    assert snapshot(workdir) == before


# -- history, extension ----------------------------------------------------------------------


def test_each_accepted_change_is_a_history_record(finished, tmp_path, capsys):
    workdir = copy_of(finished, tmp_path / "run")
    assert train(workdir, "--config.train.steps=15", config=False) == 0
    history = record.read_history(str(workdir))
    assert [(h["event"], h["step"]) for h in history] == [("start", 0), ("resume", 10)]
    assert history[1]["changes"] == {"train.steps": [10, 15]}
    assert json.loads((workdir / "config.json").read_text())["train"]["steps"] == 15


def lrs(workdir):
    records = metric_log.read(str(Path(workdir) / "metrics.jsonl"))
    return {r["step"]: r["lr"] for r in records if r["split"] == "train"}


def test_raising_train_steps_alone_warns_that_the_schedule_has_ended(finished, tmp_path, capsys):
    workdir = copy_of(finished, tmp_path / "run")
    capsys.readouterr()
    assert train(workdir, "--config.train.steps=15", config=False) == 0
    err = capsys.readouterr().err
    assert "schedule still ends at optim.total_steps = 10" in err and "--extend" in err
    assert lrs(workdir)[15] == 0.0  # what the warning says: the new steps train at the floor


def test_extend_stretches_the_schedule_or_keeps_it_as_asked(finished, tmp_path, capsys):
    stretched = copy_of(finished, tmp_path / "stretch")
    kept = copy_of(finished, tmp_path / "keep")
    assert train(stretched, "--extend", "5", config=False) == 0
    assert train(kept, "--extend", "5", "--extend-schedule", "keep", config=False) == 0
    assert "optim.total_steps re-derived: 10 -> 15" in capsys.readouterr().err
    saved = json.loads((stretched / "config.json").read_text())
    assert (saved["train"]["steps"], saved["optim"]["total_steps"]) == (15, 15)
    saved = json.loads((kept / "config.json").read_text())
    assert (saved["train"]["steps"], saved["optim"]["total_steps"]) == (15, 10)
    # Steps 11-15 on the stretched cosine (the mean of lr(t) = 0.005 (1 + cos(pi t / 15)),
    # t = 10..14, with the applied rate lagging one step) against the floor.
    import math

    want = sum(0.005 * (1 + math.cos(math.pi * t / 15)) for t in range(10, 15)) / 5
    assert lrs(stretched)[15] == pytest.approx(want, rel=1e-4)
    assert lrs(kept)[15] == 0.0
    history = record.read_history(str(stretched))
    assert history[-1]["changes"] == {"optim.total_steps": [10, 15], "train.steps": [10, 15]}


# -- no silent restart -----------------------------------------------------------------------


def flip_all(workdir: Path) -> None:
    for step in steps_of(workdir):
        for p in (workdir / "checkpoints" / str(step) / "state").rglob("*"):
            if p.is_file() and p.parent.name == "d" and p.stat().st_size:
                data = bytearray(p.read_bytes())
                data[len(data) // 2] ^= 0x10
                p.write_bytes(bytes(data))


def test_total_corruption_keeps_refusing_until_restart(finished, tmp_path, capsys):
    workdir = copy_of(finished, tmp_path / "run")
    old_metrics = (workdir / "metrics.jsonl").read_bytes()
    flip_all(workdir)
    capsys.readouterr()
    assert train(workdir, "--config.train.steps=10") == 1
    assert "reads back intact" in one_error_line(capsys.readouterr().err)
    corrupt = sorted(p.name for p in (workdir / "corrupt_checkpoints").iterdir())
    assert [c.split("-")[0] for c in corrupt] == ["10", "5"]
    before = snapshot(workdir)
    # The second rerun used to start from step 0 with exit 0 and drop the old records.
    assert train(workdir, "--config.train.steps=10") == 1
    assert "--restart" in one_error_line(capsys.readouterr().err)
    assert snapshot(workdir) == before and steps_of(workdir) == []
    assert train(workdir, "--config.train.steps=10", "--restart") == 0
    assert sorted(p.name for p in (workdir / "corrupt_checkpoints").iterdir()) == corrupt
    previous = list((workdir / "previous").iterdir())
    assert len(previous) == 1 and (previous[0] / "metrics.jsonl").read_bytes() == old_metrics
    assert steps_of(workdir) == [5, 10]
    history = record.read_history(str(workdir))
    assert history[-1]["event"] == "restart"


# -- late kill -------------------------------------------------------------------------------


def test_summary_lost_to_a_late_kill_is_rebuilt_from_the_newest_checkpoint(
    finished, tmp_path, capsys
):
    """The state a kill between the last checkpoint and summary.json leaves behind."""
    workdir = copy_of(finished, tmp_path / "run")
    want = json.loads((workdir / "summary.json").read_text())
    (workdir / "summary.json").unlink()
    capsys.readouterr()
    assert train(workdir, "--config.train.steps=10") == 0
    out = capsys.readouterr().out
    assert "no evaluation" not in out and "validation bpc" in out
    got = json.loads((workdir / "summary.json").read_text())
    assert got["rebuilt_from_checkpoint"] == 10 and got["steps"] == 10
    assert got["final"]["validation"] == pytest.approx(want["final"]["validation"])
    assert got["final"]["train"]["loss"] == pytest.approx(want["final"]["train"]["loss"])
    assert got["stop_reason"] == "completed"


# -- divergence ------------------------------------------------------------------------------


def named_checkpoints(text: str) -> set[int]:
    return {int(s) for s in re.findall(r"checkpoint (\d+)", text)}


def test_a_diverged_run_stops_naming_only_checkpoints_that_exist(tmp_path, capsys):
    """Adam at lr 1000 without clipping used to complete with exit 0 and a validation loss
    of thousands of nats."""
    workdir = tmp_path / "run"
    code = train(workdir, "--config.optim.lr=1000", "--config.optim.clip_norm=0")
    err = capsys.readouterr().err
    line = one_error_line(err)
    assert code == 1 and "diverged" in line, err
    assert named_checkpoints(line) <= set(steps_of(workdir)), (line, steps_of(workdir))
    assert not (workdir / "summary.json").exists()


def test_a_run_diverged_from_its_first_window_has_nothing_to_restore_and_says_so(tmp_path, capsys):
    """With ``nonfinite_action='restore'`` the run rolls back to the newest checkpoint before
    the first off window; at lr 1000 the first window is already off, so it must say that
    no checkpoint is left instead of naming one (tests/test_train_loop.py restores one)."""
    workdir = tmp_path / "run"
    over = ["--config.optim.lr=1000", "--config.optim.clip_norm=0"]
    code = train(workdir, *over, "--config.train.nonfinite_action=restore")
    err = capsys.readouterr().err
    line = one_error_line(err)
    assert code == 1 and "diverged" in line, err
    assert "no checkpoint before step 1 is left to restore" in line, line
    assert named_checkpoints(line) <= set(steps_of(workdir))


# -- the lock --------------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time
    from rnnlab.train.lock import WorkdirLock
    lock = WorkdirLock(sys.argv[1]).acquire()
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    """
)


def test_a_live_lock_is_refused_in_one_line_naming_host_and_pid(tmp_path, capsys):
    workdir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workdir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(workdir)
        capsys.readouterr()
        assert train(workdir) == 1
        line = one_error_line(capsys.readouterr().err)
        assert f"pid {holder.pid} on host {socket.gethostname()}" in line, line
        assert snapshot(workdir) == before and not (workdir / "checkpoints").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path, capsys):
    workdir = tmp_path / "run"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    workdir.mkdir()
    stale = {"host": socket.gethostname(), "pid": dead.pid, "started": 0}
    (workdir / lock_lib.LOCK_FILE).write_text(json.dumps(stale))
    assert train(workdir, "--config.train.steps=10") == 0  # the program of `finished`
    err = capsys.readouterr().err
    assert "took over the lock of an earlier run" in err and f"pid {dead.pid}" in err
    assert not (workdir / lock_lib.LOCK_FILE).exists()  # released at the end


def test_remote_lock_is_exclusive_and_takes_over_only_dead_local_holders():
    """On object stores (fsspec's in-memory filesystem stands in for gs://) the lock is an
    object created only if absent."""
    notes = []
    first = lock_lib.WorkdirLock("memory://bucket/run", note=notes.append).acquire()
    with pytest.raises(lock_lib.WorkdirLockedError, match=f"pid {os.getpid()} on host"):
        lock_lib.WorkdirLock("memory://bucket/run").acquire()
    first.release()
    import fsspec

    fs = fsspec.filesystem("memory")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    fs.pipe_file(
        "/bucket/run/run.lock", json.dumps({"host": socket.gethostname(), "pid": dead.pid}).encode()
    )
    lock_lib.WorkdirLock("memory://bucket/run", note=notes.append).acquire().release()
    assert notes and f"pid {dead.pid}" in notes[0]
    fs.pipe_file("/bucket/run/run.lock", json.dumps({"host": "other-vm", "pid": 1}).encode())
    with pytest.raises(lock_lib.WorkdirLockedError, match="pid 1 on host other-vm.*delete it"):
        lock_lib.WorkdirLock("memory://bucket/run").acquire()
