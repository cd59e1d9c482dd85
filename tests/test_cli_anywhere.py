"""The command line behaves the same from any folder, and a run outlives its terminal."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnlab import cli
from rnnlab.cli import commands
from rnnlab.train import config as cfg_lib

REPO = Path(__file__).resolve().parents[1]


def _without_cwd(monkeypatch, folder: Path) -> None:
    """``folder`` as the current folder, and off sys.path, as for the installed script."""
    monkeypatch.chdir(folder)
    keep = [p for p in sys.path if p not in ("", ".", str(folder), os.getcwd())]
    monkeypatch.setattr(sys, "path", keep)


def test_a_shipped_experiment_by_name_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    by_name = cfg_lib.to_dict(cfg_lib.load("charlm:small"))
    by_path = cfg_lib.to_dict(cfg_lib.load(str(REPO / "experiments" / "charlm.py") + ":small"))
    assert by_name == by_path and by_name["data"]["name"] == "austen"
    with pytest.raises(cfg_lib.ConfigError, match="the shipped one is --config charlm"):
        cfg_lib.load("experiments/charlm.py:small")  # a path stays a path
    with pytest.raises(cfg_lib.ConfigError, match="no experiment file at 'nosuch'"):
        cfg_lib.load("nosuch")


def test_the_current_folder_holds_loggers_and_experiment_helpers(tmp_path, monkeypatch):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "tracking.py").write_text("def log(step, split, metrics):\n    pass\n")
    (tmp_path / "myhelpers.py").write_text("STEPS = 7\n")
    (tmp_path / "mine.py").write_text(
        "from myhelpers import STEPS\n"
        "from rnnlab.train.config import base_config, lock\n"
        "def get_config(arg=''):\n"
        "    c = base_config()\n"
        "    c.train.steps = STEPS\n"
        "    return lock(c)\n"
    )
    _without_cwd(monkeypatch, tmp_path)
    for name in ("mypkg", "mypkg.tracking", "myhelpers"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert commands.load_logger("mypkg.tracking:log").__name__ == "log"
    assert cfg_lib.load("mine.py").train.steps == 7


def test_eval_of_a_workdir_without_a_run_does_not_ask_for_config(tmp_path, capsys):
    assert cli.main(["eval", "--workdir", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "no run in" in err and "--config" not in err


def test_list_prints_plain_text_and_names_every_flag(capsys):
    assert cli.main(["list", "--dir", str(REPO / "experiments")]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":data:" not in out
    line = next(x for x in out.splitlines() if x.startswith("spoken_digits"))
    variants = out.splitlines()[out.splitlines().index(line) + 1]
    assert all(f'"{flag}"' in variants for flag in ("small", "clean", "gru", "lnlstm"))
    assert "--config <name>[:variant]" in out


@pytest.mark.parametrize("experiment", ["adding", "copy", "spoken_digits"])
def test_small_is_the_smoke_variant_everywhere_and_ci_its_alias(experiment):
    small = cfg_lib.to_dict(cfg_lib.load(f"{experiment}:small"))
    assert small == cfg_lib.to_dict(cfg_lib.load(f"{experiment}:ci"))
    assert small != cfg_lib.to_dict(cfg_lib.load(experiment))


def test_a_closed_pipe_does_not_end_training(tmp_path):
    """`rnnlab train ... | head -2`, run from a folder that holds no experiments/."""
    workdir = tmp_path / "run"
    command = [
        sys.executable, "-m", "rnnlab.cli", "train", "--config", "charlm:small",
        "--workdir", str(workdir), "--config.train.steps=6", "--config.train.log_every=1",
        "--config.train.eval_every=3", "--config.sample.length=0", "--config.optim.warmup_steps=2",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    first = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()  # the reader goes, as `head -2` does
    assert proc.wait(timeout=600) == 0 and all(first)
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["stop_reason"] == "completed" and summary["steps"] == 6
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [
        "3",
        "6",
    ]
    records = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_dry_run_prepares_no_dataset_in_the_data_dir(tmp_path, monkeypatch, capsys):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    monkeypatch.setenv("RNNLAB_DATA_DIR", str(data_dir))
    args = ["train", "--config", "classify:small", "--workdir", str(tmp_path / "run")]
    assert cli.main(args + ["--dry-run"]) == 0
    assert "dry run: nothing trained" in capsys.readouterr().out
    assert list(data_dir.iterdir()) == []


def test_a_hung_up_terminal_is_detached_too():
    import errno
    import signal

    from rnnlab.cli import streams

    class HungUp:
        def write(self, text):
            raise OSError(errno.EIO, "Input/output error")

        def flush(self):
            raise OSError(errno.EIO, "Input/output error")

        def fileno(self):
            raise ValueError("no descriptor")

    stream = streams.DetachableStream(HungUp())
    assert stream.write("step 1") == 6 and stream.gone
    stream.flush()  # nothing raised once detached
    before = signal.getsignal(signal.SIGHUP)
    with streams.detachable():
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGHUP) == before
