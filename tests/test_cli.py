"""The ``rnnlab`` command end to end: the small character-LM experiment on the real corpus
through ``train``, ``eval``, ``sample`` and ``plot``, and configuration errors."""

import json
import math
import os
from pathlib import Path

import pytest

from rnnlab import cli

REPO = Path(__file__).resolve().parents[1]
CHARLM_SMALL = str(REPO / "experiments" / "charlm.py") + ":small"
# A unigram model of the corpus scores about 4.5 bits per character (log2 82 = 6.36 is
# uniform); the small run must have learnt more than letter frequencies.
BPC_BOUND = 4.0


@pytest.fixture(scope="module")
def data_dir():
    root = Path(os.environ.get("RNNLAB_DATA_DIR") or REPO / "data").absolute()
    from rnnlab.data import fetch

    fetch.fetch_austen(root)
    return root


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """One small training run shared by the tests of the other subcommands."""
    workdir = tmp_path_factory.mktemp("charlm") / "run"
    old = os.environ.get("RNNLAB_DATA_DIR")
    os.environ["RNNLAB_DATA_DIR"] = str(data_dir)
    try:
        code = cli.main(["train", "--config", CHARLM_SMALL, "--workdir", str(workdir)])
    finally:
        if old is None:
            os.environ.pop("RNNLAB_DATA_DIR")
        else:
            os.environ["RNNLAB_DATA_DIR"] = old
    assert code == 0
    return workdir


@pytest.fixture
def env(data_dir, monkeypatch):
    monkeypatch.setenv("RNNLAB_DATA_DIR", str(data_dir))


def test_train_learns_and_fills_the_workdir(trained, capsys):
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["stop_reason"] == "completed" and summary["steps"] == 120
    bpc = summary["final"]["validation"]["bpc"]
    assert bpc < BPC_BOUND, bpc
    assert summary["final"]["validation"]["loss"] == pytest.approx(bpc * math.log(2))
    names = set(os.listdir(trained))
    expected = {"config.json", "metrics.jsonl", "tensorboard", "checkpoints", "plots"}
    assert expected | {"summary.json", "samples.txt"} <= names
    assert {"loss.png", "grad_norm.png", "lr.png", "bpc.png"} <= set(os.listdir(trained / "plots"))
    assert sorted(int(s) for s in os.listdir(trained / "checkpoints") if s.isdigit()) == [60, 120]
    sample = (trained / "samples.txt").read_text()
    assert sample.startswith("It is a truth universally acknowledged") and len(sample) > 100
    config = json.loads((trained / "config.json").read_text())
    assert config["train"]["steps"] == 120 and config["data"]["name"] == "austen"


def test_eval_uses_the_best_checkpoint(trained, env, capsys):
    assert cli.main(["eval", "--workdir", str(trained), "--split", "test"]) == 0
    result = json.loads((trained / "eval_test.json").read_text())
    summary = json.loads((trained / "summary.json").read_text())
    assert result["step"] == summary["best"]["step"]
    assert result["bpc"] < BPC_BOUND + 0.2
    assert json.loads(capsys.readouterr().out)["split"] == "test"


def test_sample_continues_the_prompt(trained, env, capsys):
    args = ["sample", "--workdir", str(trained), "--prompt", "Emma", "--length", "30"]
    assert cli.main(args + ["--temperature", "0"]) == 0
    greedy = capsys.readouterr().out.rstrip("\n")
    assert greedy.startswith("Emma") and len(greedy) >= 30
    assert cli.main(args + ["--temperature", "0"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == greedy  # greedy decoding is deterministic
    assert cli.main(args + ["--top-k", "5", "--num", "2"]) == 0
    assert capsys.readouterr().out.count("Emma") >= 2


def test_plot_rewrites_the_figures(trained, capsys):
    (trained / "plots" / "loss.png").unlink()
    assert cli.main(["plot", "--workdir", str(trained)]) == 0
    assert (trained / "plots" / "loss.png").stat().st_size > 1000
    assert "loss.png" in capsys.readouterr().out


def test_rerun_of_a_finished_run_resumes_and_trains_no_more(trained, env, capsys):
    before = (trained / "metrics.jsonl").read_text()
    assert cli.main(["train", "--workdir", str(trained)]) == 0  # config from the workdir
    assert "completed: 120 steps" in capsys.readouterr().out
    assert (trained / "metrics.jsonl").read_text() == before


def test_config_errors_exit_with_status_2_naming_the_key(tmp_path, env, capsys):
    workdir = str(tmp_path / "run")
    base = ["train", "--config", CHARLM_SMALL, "--workdir", workdir]
    assert cli.main(base + ["--config.optim.lr=-0.1"]) == 2
    assert "'optim.lr'" in capsys.readouterr().err
    assert cli.main(base + ["--config.optim.lrr=0.1"]) == 2
    assert "did you mean 'optim.lr'" in capsys.readouterr().err
    assert cli.main(base + ["--config.data.name=nope"]) == 2
    assert "'data.name'" in capsys.readouterr().err
    assert not os.path.exists(workdir)
    with pytest.raises(SystemExit):
        cli.main(["frobnicate"])
