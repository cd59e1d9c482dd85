"""The overfitting study (experiments/overfitting.py): its CI variant through the ``rnnlab``
command, and the table its driver builds, checked against numbers worked out by hand."""

import json
import math
import os
from pathlib import Path

import pytest

from rnnlab import cli

REPO = Path(__file__).resolve().parents[1]
SMALL = str(REPO / "experiments" / "overfitting.py") + ":small"


@pytest.fixture
def overfitting(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    from experiments import overfitting

    return overfitting


@pytest.fixture
def data_dir(monkeypatch):
    root = Path(os.environ.get("RNNLAB_DATA_DIR") or REPO / "data").absolute()
    from rnnlab.data import fetch

    fetch.fetch_austen(root)
    monkeypatch.setenv("RNNLAB_DATA_DIR", str(root))
    return root


def test_small_variant_trains_and_evaluates_through_the_command(overfitting, data_dir, tmp_path):
    workdir = tmp_path / "small"
    assert cli.main(["train", "--config", SMALL, "--workdir", str(workdir)]) == 0
    args = ["eval", "--workdir", str(workdir), "--split", "train", "--checkpoint", "latest"]
    assert cli.main(args) == 0
    first = json.loads((workdir / "eval_train.json").read_text())
    # Evaluation mode is deterministic although the run trained under dropout and weight drop.
    assert cli.main(args) == 0
    assert json.loads((workdir / "eval_train.json").read_text()) == first

    summary = json.loads((workdir / "summary.json").read_text())
    config = json.loads((workdir / "config.json").read_text())
    assert summary["stop_reason"] == "completed" and summary["steps"] == 10
    assert config["model"]["regularization"]["weight_drop"] == 0.5
    assert config["optim"]["optimizer"] == "adamw"

    row = overfitting.study_row(workdir)
    vocab = 75  # characters of the training split
    assert row["validation"] < math.log2(vocab)  # better than a uniform guess
    assert row["train"] == pytest.approx(first["bpc"])
    last_eval = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    last_eval = [r for r in last_eval if r["split"] == "validation"][-1]
    assert row["validation"] == pytest.approx(last_eval["bpc"])
    assert row["gap"] == pytest.approx(last_eval["bpc"] - first["bpc"])


def _write_run(workdir: Path, *, eval_train: bool) -> None:
    workdir.mkdir()
    records = [
        {"step": 50, "split": "train", "loss": 2.5},
        {"step": 50, "split": "validation", "loss": 2.0},
        {"step": 100, "split": "train", "loss": 1.6},
        {"step": 100, "split": "validation", "loss": 1.8},
        {"step": 150, "split": "train", "loss": 1.4},
        {"step": 150, "split": "validation", "loss": 1.8},  # a tie: the first step is best
        {"step": 200, "split": "train", "loss": 1.2},
        {"step": 200, "split": "validation", "loss": 1.9},
    ]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (workdir / "summary.json").write_text(json.dumps({"wall_time_s": 90.0}))
    if eval_train:
        (workdir / "eval_train.json").write_text(json.dumps({"split": "train", "loss": 1.0}))


def test_table_row_from_a_fixture_run(overfitting, tmp_path):
    # Worked by hand, bits = nats / ln 2 (ln 2 = 0.693147...):
    # validation at the end 1.9 / ln 2 = 2.741121, train in evaluation mode 1.0 / ln 2 =
    # 1.442695, gap 0.9 / ln 2 = 1.298426, best validation 1.8 / ln 2 = 2.596851 at step
    # 100; logged training loss 1.2 / ln 2 = 1.731234.
    _write_run(tmp_path / "recipe", eval_train=True)
    row = overfitting.study_row(tmp_path / "recipe")
    assert row["variant"] == "recipe" and row["steps"] == 200
    assert row["validation"] == pytest.approx(2.741121, abs=1e-6)
    assert row["train"] == pytest.approx(1.442695, abs=1e-6)
    assert row["gap"] == pytest.approx(1.298426, abs=1e-6)
    assert row["best_step"] == 100
    assert row["best"] == pytest.approx(2.596851, abs=1e-6)
    assert row["train_logged"] == pytest.approx(1.731234, abs=1e-6)
    assert row["curve"][0] == (50, pytest.approx(2.0 / 0.693147, abs=1e-5))

    # Without the evaluation-mode file the logged loss stands in: gap 0.7 / ln 2 = 1.009887.
    _write_run(tmp_path / "none", eval_train=False)
    plain = overfitting.study_row(tmp_path / "none")
    assert plain["gap"] == pytest.approx(1.009887, abs=1e-6)
    assert not plain["train_eval_mode"]

    table = overfitting.markdown_table([row, plain], steps_per_epoch=25.0)
    lines = table.splitlines()
    assert len(lines) == 4
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells == ["`recipe`", "1.443", "2.741", "+1.298", "2.597", "100 (4)", "1.731", "1.5 min"]
    assert "1.731 (logged)" in lines[3] and "+1.010" in lines[3]


def test_table_is_written_between_the_markers(overfitting, tmp_path):
    doc = tmp_path / "doc.md"
    begin, end = overfitting.TABLE_BEGIN, overfitting.TABLE_END
    doc.write_text(f"# Title\n\n{begin}\nold table\n{end}\n\nAfter.\n")
    overfitting.write_table(doc, "| new |\n")
    assert doc.read_text() == f"# Title\n\n{begin}\n| new |\n{end}\n\nAfter.\n"
    (tmp_path / "bare.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="markers"):
        overfitting.write_table(tmp_path / "bare.md", "| new |\n")


def test_missing_records_and_bad_variants_are_refused(overfitting, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="metrics.jsonl"):
        overfitting.study_row(tmp_path / "empty")
    with pytest.raises(ValueError, match="variant must be one of"):
        overfitting.get_config("zoneout")
    with pytest.raises(ValueError, match="jobs"):
        overfitting.run_all(tmp_path, ["none"], jobs=3)
