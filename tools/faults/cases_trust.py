"""In-process fault cases for a workdir from someone else, a reader beside a writer, the
user's series files and inputs that used to end in a hang or a misleading message.

Same contract as :mod:`tools.faults.cases`: each call must raise ``error`` with a message
matching ``pattern``. None trains; the largest compiles nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from tools.faults.cases import Case, _abstract, _tiny_checkpoint


def _symlinked_lock(scratch: Path):
    from rnnlab.train.lock import WorkdirLock

    victim = scratch / "victim.txt"
    victim.write_text("keep")
    (scratch / "run").mkdir()
    (scratch / "run" / "run.lock").symlink_to(victim)
    try:
        WorkdirLock(str(scratch / "run"), note=lambda text: None).acquire()
    finally:
        if victim.read_text() != "keep":
            raise AssertionError("the lock wrote through the symlink")


def _dangling_metrics_link(scratch: Path):
    from rnnlab.train.metric_log import MetricWriter

    (scratch / "run").mkdir()
    (scratch / "run" / "metrics.jsonl").symlink_to(scratch / "elsewhere.jsonl")
    try:
        MetricWriter(str(scratch / "run"), tensorboard=False).write(1, "train", {"loss": 1.0})
    finally:
        if (scratch / "elsewhere.jsonl").exists():
            raise AssertionError("the metric log wrote through the symlink")


def _bad_metrics_line(scratch: Path):
    from rnnlab.train.metric_log import MetricWriter

    (scratch / "metrics.jsonl").write_text('{"step": 1, "split": "train"}\n{"step": null}\n')
    MetricWriter(str(scratch), tensorboard=False, start_step=1)


def _series(scratch: Path, text: str):
    from rnnlab.data import forecast

    path = scratch / "series.csv"
    path.write_text(text)
    return forecast.read_series_file(path)


def _rotated_while_read(scratch: Path):
    import shutil

    from rnnlab.train import readers

    ckpt, state = _tiny_checkpoint(scratch, {"task": "lm"})
    real = ckpt._read

    def read(step, **items):  # the trainer's rotation deletes the step being read
        shutil.rmtree(scratch / "checkpoints" / str(step), ignore_errors=True)
        return real(step, **items)

    ckpt._read = read
    try:
        readers.restore(ckpt, 1, lambda s: ckpt.restore(_abstract(state), s), note=print)
    finally:
        ckpt.close()


def _prepare_from_a_workdir(scratch: Path):
    from rnnlab import data
    from rnnlab.data import preparing

    private = scratch / "private"
    private.mkdir()
    (private / "diary.txt").write_text("secret " * 100)
    cfg = {"name": "text_dir", "path": str(private), "data_dir": str(scratch / "elsewhere")}
    try:
        with preparing.prepared_only("read only"):
            data.info({**cfg, "pattern": "**/*", "seq_len": 8})
    finally:
        if list((scratch / "elsewhere").rglob("*.array_record*")):
            raise AssertionError("the private file was prepared elsewhere")


def _too_large(scratch: Path):
    import jax

    from rnnlab.train import config as cfg_lib
    from rnnlab.train import memory
    from rnnlab.train.run import Run
    from tools.faults.process import CONFIG

    config = cfg_lib.override(cfg_lib.load(str(CONFIG)), ["model.hidden_features=200000"])
    run = Run(config, str(scratch / "run"), devices=jax.devices()[:1])
    memory.check(run.abstract, run.shardings)


def _not_utf8(scratch: Path):
    from rnnlab.train import files

    files.check_path(os.fsdecode(os.fsencode(str(scratch)) + b"/\xff"))


def _not_python(scratch: Path):
    from rnnlab.train import config as cfg_lib

    (scratch / "config.txt").write_text("lr = 1\n")
    cfg_lib.load(str(scratch / "config.txt"))


TRUST: list[Case] = [
    Case("run.lock is a symlink", _symlinked_lock, r"run\.lock is a symbolic link", OSError),
    Case(
        "metrics.jsonl is a dangling symlink",
        _dangling_metrics_link,
        r"metrics\.jsonl is a symbolic link",
        OSError,
    ),
    Case("bad metrics.jsonl line", _bad_metrics_line, r"metrics\.jsonl line 2"),
    Case(
        "infinite cell in a series file",
        lambda d: _series(d, "a,b\n1,2\n3,1e999\n"),
        r"series\.csv' line 3, column 'b': '1e999'",
    ),
    Case(
        "N/A in a numeric column",
        lambda d: _series(d, "a,b\n1,2\n3,N/A\n4,5\n"),
        r"line 3, column 'b': 'N/A'",
    ),
    Case("short row", lambda d: _series(d, "a,b\n1,2\n3\n"), r"line 3 has 1 cells, expected 2"),
    Case(
        "checkpoint rotated away while read",
        _rotated_while_read,
        r"checkpoint 1 .* was deleted while it was read",
        FileNotFoundError,
    ),
    Case(
        "workdir config names data to prepare",
        _prepare_from_a_workdir,
        r"dataset rnnlab_text in .*elsewhere.* is not prepared; read only",
    ),
    Case("model too large for memory", _too_large, r"does not fit in memory", RuntimeError),
    Case("workdir path not UTF-8", _not_utf8, r"is not valid UTF-8"),
    Case("config not a Python file", _not_python, r"config\.txt is not a Python file"),
]
