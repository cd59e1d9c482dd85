"""experiments/spoken_digits.py: its variants, and the ``ci`` run through the command line
held to the bound its docstring states."""

import json
from pathlib import Path

import pytest

from rnnlab import cli
from rnnlab.train import config as cfg_lib

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "experiments" / "spoken_digits.py")


@pytest.mark.parametrize(
    "variant, cell, noisy",
    [
        ("", "lstm", True),
        ("gru", "gru", True),
        ("lnlstm", "layernorm_lstm", True),
        ("clean", "lstm", False),
        ("ci,gru", "gru", True),
    ],
)
def test_variants(variant, cell, noisy):
    config = cfg_lib.load(f"{CONFIG}:{variant}")
    assert config.model.cell == cell and config.data.noisy_train is noisy
    assert config.data.name == "spoken_digits" and config.report.split == "test"


def test_same_size_baselines():
    # The GRU, layer-norm LSTM and clean-trained baselines change one thing each.
    base = cfg_lib.load(CONFIG).to_dict()
    for variant, key in (("gru", "cell"), ("lnlstm", "cell"), ("clean", None)):
        other = cfg_lib.load(f"{CONFIG}:{variant}").to_dict()
        if key:
            assert {k for k in base["model"] if base["model"][k] != other["model"][k]} == {key}
        assert base["train"] == other["train"] and base["optim"] == other["optim"]


@pytest.mark.parametrize("variant", ["big", "gru,lnlstm", "ci,ci"])
def test_unknown_variants_are_errors(variant):
    with pytest.raises(ValueError, match="variant"):
        cfg_lib.load(f"{CONFIG}:{variant}")


@pytest.mark.slow
def test_ci_variant_learns_from_audio(tmp_path):
    workdir = tmp_path / "spoken_digits"
    args = ["train", "--config", f"{CONFIG}:small", "--workdir", str(workdir)]
    assert cli.main(args) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["stop_reason"] == "completed"
    assert (workdir / "plots" / "loss.png").exists()
    # The stated bound (experiments/spoken_digits.py): below 10 nats per utterance on
    # validation, from about 40 at initialisation.
    assert summary["final"]["validation"]["loss"] < 10.0, summary["final"]
    report = summary["report"]
    assert report["split"] == "test" and report["examples"] == 60
    for decoder in ("greedy", "beam"):
        assert 0 <= report[f"{decoder}_error_rate"] <= 1.5
        assert 0 <= report[f"{decoder}_sequence_error_rate"] <= 1


def test_sequence_error_rate_counts_utterances_with_any_error():
    from rnnlab.tasks.ctc import sequence_error_rate

    refs = [(1, 2, 3), (4,), (5, 6), ()]
    hyps = [(1, 2, 3), (4, 4), (6, 5), ()]  # right, an insertion, two substitutions, right
    assert sequence_error_rate(hyps, refs) == 0.5
    with pytest.raises(ValueError, match="same length"):
        sequence_error_rate(hyps[:2], refs)
