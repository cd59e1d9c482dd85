"""Bad input is exit status 2 with one line that says what is wrong, before anything is
written: a non-Python ``--config``, a syntax error or an unknown variant in an experiment,
``--checkpoint none`` where only diagnose takes it, ``sample --length -5``, a batch larger
than the data and a workdir path that is not UTF-8."""

import os
from pathlib import Path

import pytest

from rnnlab import cli

REPO = Path(__file__).resolve().parents[1]
FAULTS = str(REPO / "experiments" / "faults.py")


@pytest.fixture(autouse=True)
def data_env(monkeypatch):
    root = Path(os.environ.get("RNNLAB_DATA_DIR") or REPO / "data").absolute()
    monkeypatch.setenv("RNNLAB_DATA_DIR", str(root))


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("rnnlab: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def train(workdir, config, *args):
    return cli.main(["train", "--workdir", str(workdir), "--config", config, *args])


def test_a_config_that_is_not_a_python_file_is_named(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("lr = 0.1\n")
    assert train(tmp_path / "run", str(notes)) == 2
    line = error_line(capsys.readouterr().err)
    assert "notes.txt is not a Python file" in line and "NoneType" not in line
    assert not (tmp_path / "run").exists()


def test_a_syntax_error_in_an_experiment_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "broken.py"
    bad.write_text("def get_config(arg=''):\n    return (\n")
    assert train(tmp_path / "run", str(bad)) == 2
    line = error_line(capsys.readouterr().err)
    assert f"{bad}:2" in line
    assert not (tmp_path / "run").exists()


def test_an_unknown_variant_is_bad_input(tmp_path, capsys):
    assert train(tmp_path / "run", FAULTS + ":nope") == 2
    line = error_line(capsys.readouterr().err)
    assert "'nope'" in line
    assert not (tmp_path / "run").exists()


def test_a_batch_larger_than_the_data_is_bad_input(tmp_path, capsys):
    assert train(tmp_path / "run", FAULTS, "--config.train.batch_size=100000") == 2
    line = error_line(capsys.readouterr().err)
    assert "420169 tokens" in line and "batch size" in line


def test_a_workdir_path_that_is_not_utf8_is_refused_before_training(tmp_path, capsys):
    workdir = os.fsdecode(os.fsencode(str(tmp_path)) + b"/run\xff")
    assert train(workdir, FAULTS) == 2
    line = error_line(capsys.readouterr().err)
    assert "not valid UTF-8" in line and "Free space" not in line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "argv, says",
    [
        (["sample", "--workdir", "w", "--length", "-5"], "expected a positive integer, got '-5'"),
        (["sample", "--workdir", "w", "--num", "0"], "expected a positive integer, got '0'"),
        (["eval", "--workdir", "w", "--checkpoint", "none"], "got 'none'"),
        ("predict --workdir w --input x.npz --output y.csv --batch-size -1".split(), "got '-1'"),
    ],
)
def test_bad_arguments_are_usage_errors(argv, says, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "invalid literal" not in err


def test_diagnose_still_takes_checkpoint_none():
    args = cli.build_parser().parse_args(["diagnose", "--checkpoint", "none"])
    assert args.checkpoint == "none"
