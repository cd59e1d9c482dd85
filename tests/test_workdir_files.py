"""What rnnlab writes in a workdir cannot be turned against its user, and a failed write
says where: a symlink planted at ``run.lock`` or ``metrics.jsonl`` is refused (its target
keeps its bytes), a full disk names the file and leaves no temporary file, and a bad line
in ``metrics.jsonl`` is named with its file and line.

The references are the bytes of the files before the command and the directory listing,
never rnnlab's own output."""

import errno
import os
from pathlib import Path

import pytest

from rnnlab.train import files, metric_log
from rnnlab.train import lock as lock_lib


def test_a_symlinked_run_lock_is_refused_and_its_target_keeps_its_bytes(tmp_path):
    victim = tmp_path / "private.txt"
    victim.write_text("do not touch\n")
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "run.lock").symlink_to(victim)
    lock = lock_lib.WorkdirLock(str(workdir), note=lambda text: None)
    with pytest.raises(files.SymlinkError, match=r"run\.lock is a symbolic link"):
        lock.acquire()
    assert victim.read_text() == "do not touch\n"


def test_a_dangling_metrics_symlink_is_refused_and_creates_nothing(tmp_path):
    target = tmp_path / "elsewhere" / "stolen.jsonl"
    target.parent.mkdir()
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "metrics.jsonl").symlink_to(target)
    writer = metric_log.MetricWriter(str(workdir), tensorboard=False)
    with pytest.raises(files.SymlinkError, match=r"metrics\.jsonl is a symbolic link"):
        writer.write(5, "train", {"loss": 1.0})
    assert not target.exists()


def test_an_atomic_write_replaces_a_planted_link_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "private.txt"
    victim.write_text("secret\n")
    link = tmp_path / "summary.json"
    link.symlink_to(victim)
    files.write_json(str(link), {"steps": 1})
    assert victim.read_text() == "secret\n"
    assert not link.is_symlink() and link.read_text() == '{\n  "steps": 1\n}\n'


def test_a_full_disk_names_the_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fd, mode):
            self.f = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", Full)
    target = tmp_path / "config.json"
    with pytest.raises(OSError) as info:
        files.write_json(str(target), {"a": 1})
    assert info.value.errno == errno.ENOSPC
    assert str(target) in str(info.value)
    assert os.listdir(tmp_path) == []


def test_a_bad_metrics_line_is_named_with_its_file_and_line(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    path = workdir / "metrics.jsonl"
    path.write_text('{"step": 5, "split": "train", "loss": 1}\n{"step": "x", "split": "train"}\n')
    with pytest.raises(ValueError) as info:
        metric_log.MetricWriter(str(workdir), tensorboard=False, start_step=5)
    assert f"{path} line 2" in str(info.value)


def test_a_line_cut_short_by_a_kill_is_still_skipped(tmp_path):
    path = Path(tmp_path) / "metrics.jsonl"
    path.write_text('{"step": 5, "split": "train", "loss": 1}\n{"step": 10, "spl')
    assert [r["step"] for r in metric_log.read(str(path))] == [5]


def test_nested_pybind11_reprs_leave_nothing_behind():
    from rnnlab import cli
    from rnnlab.train.checkpoint import describe_error

    raw = (
        "Error reading 'a': <bound method pybind11_detail_function_record_v1_abi.<lambda> of "
        "<tensorstore.Future object at 0x7f00>> failed; see <function f at 0x1>. done"
    )
    want = "Error reading 'a': failed; see . done"
    assert cli.one_line(ValueError(raw)) == want
    assert describe_error(ValueError(raw)) == f"ValueError: {want}"
