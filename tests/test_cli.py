"""The ``rnnlab`` command end to end: the small character-LM experiment on the real corpus
through ``train``, ``eval``, ``sample`` and ``plot``, and configuration errors."""

import json
import math
import os
from pathlib import Path

import jax
import numpy as np
import pytest

from rnnlab import cli

# Every test here trains: make test hands this file out first (tests/conftest.py).
pytestmark = pytest.mark.slow
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
def logged_run(data_dir, tmp_path_factory):
    """One small training run shared by the tests of the other subcommands, and what a
    logger given with ``--logger`` (a module written here) received during it: the logger
    test only reads that, and a run of its own would compile and train the model again.
    ``(workdir, records)``."""
    root = tmp_path_factory.mktemp("charlm")
    workdir = root / "run"
    (root / "my_tracker.py").write_text(
        "RECORDS = []\ndef log(step, split, metrics):\n    RECORDS.append((step, split))\n"
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("RNNLAB_DATA_DIR", str(data_dir))
        monkeypatch.syspath_prepend(str(root))
        args = ["train", "--config", CHARLM_SMALL, "--workdir", str(workdir)]
        assert cli.main(args + ["--logger", "my_tracker:log"]) == 0
        import my_tracker

    return workdir, my_tracker.RECORDS


@pytest.fixture(scope="module")
def trained(logged_run):
    return logged_run[0]


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
    assert "already finished: the run in" in capsys.readouterr().out
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


# -- clean errors, exit codes ----------------------------------------------------------------


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("rnnlab") and "error" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_bad_checkpoint_argument_is_a_usage_error(trained, env, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["eval", "--workdir", str(trained), "--checkpoint", "abc"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "expected best, latest or a step number, got 'abc'" in err
    assert "invalid literal" not in err
    assert cli.main(["eval", "--workdir", str(trained), "--checkpoint", "7"]) == 1
    line = _error_line(capsys.readouterr().err)
    assert "no checkpoint 7" in line and "[60, 120]" in line


def test_a_broken_config_json_is_named_with_what_to_do(tmp_path, env, capsys):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text('{"train": {"steps": 3,}}')
    assert cli.main(["eval", "--workdir", str(workdir)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert str(workdir / "config.json") in line and "line 1, column" in line
    assert "--config" in line


@pytest.mark.parametrize("what", ["one array file", "the array folder"])
def test_missing_array_files_are_one_clean_line(trained, env, tmp_path, capfd, what):
    """Used to embed ``<bound method pybind11_detail_function_record_v1 ...>``, or print 30
    "Event loop is closed" tracebacks (a deleted state/d) before the useful line. capfd:
    background threads and logging handlers write to the process's stderr itself."""
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    folder = workdir / "checkpoints" / "60" / "state" / "d"
    if what == "one array file":
        sorted(folder.iterdir())[0].unlink()
    else:
        shutil.rmtree(folder)
    capfd.readouterr()
    assert cli.main(["eval", "--workdir", str(workdir), "--checkpoint", "60"]) == 1
    err = capfd.readouterr().err
    assert "Event loop is closed" not in err
    line = _error_line(err)
    assert "checkpoint 60 is corrupt" in line
    assert "bound method" not in err and "tensorstore_spec" not in err and len(line) < 900


def test_eval_takes_config_overrides_and_hides_the_tfds_warning(trained, env, capsys):
    args = ["eval", "--workdir", str(trained), "--checkpoint", "latest"]
    assert cli.main(args + ["--config.eval.max_batches=1", "--config.eval.batch_size=8"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert cli.main(args + ["--config.eval.max_batches=2", "--config.eval.batch_size=8"]) == 0
    captured = capsys.readouterr()
    two = json.loads(captured.out)
    assert one["step"] == two["step"] == 120 and one["loss"] != two["loss"]
    assert "absl" not in captured.err and "custom data configuration" not in captured.err


def test_sample_takes_config_overrides(trained, env, capsys):
    args = ["sample", "--workdir", str(trained), "--prompt", "Emma"]
    assert cli.main(args + ["--config.sample.length=12", "--config.sample.temperature=0"]) == 0
    assert len(capsys.readouterr().out.rstrip("\n")) == len("Emma") + 12


def test_list_shows_experiments_and_their_variants(capsys):
    assert cli.main(["list", "--dir", str(REPO / "experiments")]) == 0
    out = capsys.readouterr().out
    assert "charlm  " in out or "charlm " in out
    assert "Character-level LSTM language model on Jane Austen" in out
    assert '"small": a CI-sized run of the same model' in out and "``" not in out
    assert "faults" in out and "rows" not in out.split()  # helpers without get_config
    ctc = next(line for line in out.splitlines()[1:] if '"librispeech"' in line)
    assert '"small"' in ctc  # "One of :data:`VARIANTS`" is spelt out


def test_dry_run_prints_config_and_parameters_per_layer_without_training(tmp_path, env, capsys):
    workdir = tmp_path / "run"
    assert (
        cli.main(["train", "--config", CHARLM_SMALL, "--workdir", str(workdir), "--dry-run"]) == 0
    )
    out = capsys.readouterr().out
    config = json.loads(out[: out.index("\n}\n") + 2])
    assert config["optim"]["total_steps"] == config["train"]["steps"] == 120  # resolved
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[-1].replace(",", "").isdigit() and "(" in line:
            rows[parts[0]] = int(parts[-1].replace(",", ""))
    total = int(
        next(ln for ln in out.splitlines() if ln.startswith("total")).split()[-1].replace(",", "")
    )
    assert rows and sum(rows.values()) == total
    from rnnlab.train import config as cfg_lib
    from rnnlab.train import inputs
    from rnnlab.train import state as state_lib

    c = cfg_lib.resolved(cfg_lib.load(CHARLM_SMALL))
    model = state_lib.abstract_model(c, inputs.dataset_info(inputs.default_source(), c))
    from flax import nnx

    want = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert total == want
    assert not workdir.exists() or not any(workdir.iterdir())


def test_a_logger_given_on_the_command_line_receives_each_record(logged_run):
    workdir, logged = logged_run
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert logged == [(r["step"], r["split"]) for r in records] and records
