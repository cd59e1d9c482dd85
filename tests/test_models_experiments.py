"""The task-model experiments' ``small`` variants, trained end to end through the command
line, each held to the bound its docstring states."""

import json
from pathlib import Path

import pytest

from rnnlab import cli
from rnnlab.train import config as cfg_lib

REPO = Path(__file__).resolve().parents[1]


def train(name: str, tmp_path: Path) -> dict:
    workdir = tmp_path / name
    spec = str(REPO / "experiments" / f"{name}.py") + ":small"
    assert cli.main(["train", "--config", spec, "--workdir", str(workdir)]) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["stop_reason"] == "completed"
    assert (workdir / "plots" / "loss.png").exists()
    return summary


VARIANTS = [
    "translation.py",
    "translation.py:luong",
    "translation.py:beam",
    "translation.py:wmt",
    "ctc_digits.py",
    "ctc_digits.py:librispeech",
    "forecast.py:co2",
    "forecast.py:sunspots,ar",
    "forecast.py:co2,gaussian",
    "forecast.py:sunspots,point",
    "forecast.py:macrodata",
    "forecast.py:macrodata,small",
    "video.py",
    "video.py:large",
    "classify.py:mnist1d,last",
    "classify.py:japanese_vowels,max,bi",
]


@pytest.mark.parametrize("spec", VARIANTS)
def test_every_variant_loads(spec):
    config = cfg_lib.load(str(REPO / "experiments" / spec))
    assert config.train.steps > 0 and config.data.name


@pytest.mark.parametrize(
    "spec",
    [
        "translation.py:big",
        "forecast.py:co2,lstm",
        "forecast.py:macrodata,ar",
        "classify.py:x",
    ],
)
def test_unknown_variants_are_errors(spec):
    with pytest.raises(ValueError, match="variant"):
        cfg_lib.load(str(REPO / "experiments" / spec))


@pytest.mark.slow
def test_translation_small_learns_to_reverse(tmp_path):
    summary = train("translation", tmp_path)
    final = summary["final"]["validation"]
    assert final["exact_match"] > 0.5 and final["bleu"] > 50, final
    assert summary["report"]["test"]["exact_match"] > 0.5
    assert len(summary["report"]["examples"]) == 5


@pytest.mark.slow
def test_ctc_digits_small_leaves_the_initial_loss(tmp_path):
    summary = train("ctc_digits", tmp_path)
    # About 30 nats per utterance at initialisation.
    assert summary["final"]["validation"]["loss"] < 6.0, summary["final"]
    report = summary["report"]
    assert 0 <= report["beam_error_rate"] <= 1.5 and report["examples"] > 0


@pytest.mark.slow
def test_forecast_small_and_its_baselines(tmp_path):
    summary = train("forecast", tmp_path)
    assert summary["best"]["metrics"]["mae"] < 1.0, summary["best"]
    report = summary["report"]
    assert {"model", "seasonal_naive", "arima", "ets"} <= set(report)
    assert all(report[k]["mase"] > 0 for k in ("model", "seasonal_naive", "arima", "ets"))
    assert Path(report["figure"]).exists()


@pytest.mark.slow
def test_forecast_with_covariates_small_reports_the_var(tmp_path):
    workdir = tmp_path / "macrodata"
    spec = str(REPO / "experiments" / "forecast.py") + ":macrodata,small"
    assert cli.main(["train", "--config", spec, "--workdir", str(workdir)]) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["best"]["metrics"]["mae"] < 1.0, summary["best"]
    report = summary["report"]
    assert {"model", "seasonal_naive", "arima", "ets", "theta", "var"} <= set(report)
    assert report["windows"] == 37 and report["strongest"] in report
    assert Path(report["figure"]).exists()


@pytest.mark.slow
def test_video_small_beats_copying_the_last_frame(tmp_path):
    summary = train("video", tmp_path)
    final = summary["final"]["validation"]
    assert final["mse"] < final["copy_last_mse"], final
    assert Path(summary["report"]["figure"]).exists()


@pytest.mark.slow
def test_classify_small_per_class_report(tmp_path):
    summary = train("classify", tmp_path)
    report = summary["report"]
    # Nine speakers: chance is 11 %.
    assert report["accuracy"] > 0.5, report
    assert len(report["f1"]) == 9 and len(report["confusion"]) == 9
