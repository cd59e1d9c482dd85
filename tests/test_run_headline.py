"""A run ends with its result against the task's reference on the last line; a finished
run rerun says so; the terminal shows the metrics a reader uses, not their counts."""

import json
import math

import pytest

from rnnlab import cli
from rnnlab.tasks.headline import headline
from rnnlab.train.loop_state import fmt


def test_headlines_state_the_result_against_the_reference():
    forecast = {
        "final": {"train": {}, "validation": {"mse": 0.04}},
        "report": {
            "split": "test",
            "model": {"mase": 0.80},
            "strongest": "AutoETS",
            "AutoETS": {"mase": 0.9},
        },
    }
    assert headline(forecast, "forecast", {}) == (
        "result: test MASE 0.8000 (beats the strongest baseline, AutoETS: 0.9000)"
    )
    classify = {"final": {"validation": {"accuracy": 0.0}}, "report": {"split": "test",
                "accuracy": 0.77, "examples": 370}}  # fmt: skip
    assert headline(classify, "classification", {"num_classes": 9}) == (
        "result: test accuracy 77.0 % on 370 examples (chance 1/9: 11.1 %)"
    )
    tagging = {"final": {"train": {}, "validation": {"accuracy": 0.5, "loss": 1.2}}}
    assert headline(tagging, "tagging", {"num_classes": 4}) == (
        "result: validation accuracy 50.0 % (chance 1/4: 25.0 %)"
    )
    lm = {"final": {"train": {}, "validation": {"bpc": 2.5, "bits_per_token": 2.5}}}
    assert headline(lm, "lm", {"vocab_size": 82}) == (
        f"result: validation bits per character 2.5000 (a uniform guess over 82 tokens: "
        f"{math.log2(82):.4f})"
    )
    ctc = {"report": {"split": "test", "beam_error_rate": 0.25, "greedy_error_rate": 0.3,
           "beam_sequence_error_rate": 0.5}}  # fmt: skip
    assert headline(ctc, "ctc", {}).startswith("result: test label error rate 0.2500 by beam")


def test_printed_metrics_leave_out_counts_and_restatements():
    line = fmt({"loss": 1.0, "bleu": 20.0, "bleu_correct_1": 5.0, "bleu_hyp_len": 9.0,
                 "accuracy": 0.5, "error": 0.5, "bpc": 1.0, "bits_per_token": 1.0})  # fmt: skip
    assert line == "accuracy 0.5000, bleu 20.0000, bpc 1.0000, loss 1.0000"


@pytest.fixture
def env(monkeypatch):
    import os
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("RNNLAB_DATA_DIR", os.environ.get("RNNLAB_DATA_DIR") or str(repo / "data"))


def test_the_last_line_is_the_result_and_a_rerun_says_it_was_finished(
    tmp_path, env, capsys, caplog
):
    args = ["train", "--config", "charlm:small", "--workdir", str(tmp_path / "run")]
    args += ["--config.train.steps=6", "--config.train.eval_every=3", "--config.sample.length=0"]
    args += ["--config.optim.warmup_steps=2", "--config.train.log_every=3"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    bpc = summary["final"]["validation"]["bpc"]
    assert out[-1] == summary["headline"] and out[-1].startswith(
        f"result: validation bits per character {bpc:.4f} (a uniform guess over"
    )
    assert cli.main(args) == 0
    again = capsys.readouterr().out.strip().splitlines()
    assert again[0].startswith("already finished:") and "--extend N" in again[0]
    assert again[-1] == out[-1]

    # The Python API is as quiet as the command: no absl chatter from orbax on load.
    import logging

    from rnnlab.train import export

    with caplog.at_level(logging.DEBUG, logger="absl"):
        export.load(str(tmp_path / "run"))
    assert not [r for r in caplog.records if r.name == "absl"], caplog.records[:3]

    # A prompt the vocabulary cannot spell is refused, not silently shortened.
    assert cli.main(["sample", "--workdir", str(tmp_path / "run"), "--prompt", "Emma\u20ac"]) == 1
    assert "outside the model's vocabulary: ['\u20ac']" in capsys.readouterr().err


def test_dataset_info_logs_nothing_through_absl(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    data_dir = os.environ.get("RNNLAB_DATA_DIR") or str(repo / "data")
    code = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "import rnnlab.data as d\n"
        f"d.info({{'name': 'austen', 'data_dir': {data_dir!r}}})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Using custom data configuration" not in proc.stderr


def test_sample_on_a_translator_names_the_commands_that_show_translations(
    tmp_path, monkeypatch, capsys
):
    import types

    from rnnlab.cli import commands

    fake = types.SimpleNamespace(task=types.SimpleNamespace(name="seq2seq"))
    monkeypatch.setattr(commands, "_run_and_state", lambda args: (fake, None, 0))
    assert cli.main(["sample", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "this run translates" in err and f"rnnlab train --workdir {tmp_path}" in err
    assert "report.examples" in err and "rnnlab eval" in err


def test_only_a_translators_examples_are_printed_as_translations():
    from rnnlab.cli.commands import _translations

    one = {"source": "a b", "prediction": "b a", "reference": "b a"}
    assert _translations({"report": {"examples": [one]}}) == [one]
    assert _translations({"report": {"examples": 400}}) == []  # CTC's count of examples
    assert _translations({}) == []
