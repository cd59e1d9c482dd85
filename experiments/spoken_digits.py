"""Speech recognition from audio: spoken digit strings, log-mel frames, a BiLSTM with CTC.

Data (``spoken_digits``, rnnlab.data.spoken_digits): 1 to 7 digits read by espeak-ng in
English accents and voice variants at random rates (130-210 words per minute) and pitches,
with white, pink or babble noise at an SNR drawn from {clean, 20, 10, 5, 0} dB; the test
speakers' accents and variants are never heard in training. librosa computes 40 log-mel
bands every 10 ms. 2,000 training, 200 validation and 400 test utterances (seed 0).

Commands::

    rnnlab train --config experiments/spoken_digits.py --workdir workdirs/spoken_digits
    rnnlab train --config experiments/spoken_digits.py:gru --workdir workdirs/sd_gru

Variants (comma-separated): ``""`` (the BiLSTM), ``gru`` and ``lnlstm`` (the same stack with
GRU or layer-normalised LSTM cells, Ba et al. 2016: same widths and depth, same budget),
``clean`` (trained and validated without noise, tested on the same noisy test split), and
``small`` (the CI run: 240 training utterances, a 1 x 32 BiLSTM, 150 steps; ``ci`` is an
alias).

Model: a 2-layer bidirectional LSTM, 96 per direction, over three stacked 10 ms frames
(30 ms per step: a digit lasts 250-450 ms), a linear layer to the 10 digits and the blank;
CTC loss (Graves et al. 2006); Adam 3e-3, cosine schedule, clipping at 1; 1,500 steps of 32
utterances. The end-of-run report decodes the test split by best path and by prefix beam
search (width 8) and gives the digit error rate (edit distance over reference digits: the
word error rate in TIDIGITS terms) and the string error rate (utterances with any error).

Expected result, stated before the first full run: a test digit error rate below 0.10 (the
bound of the results row); no published number exists for these synthetic voices.

Measured (2026-12-02, 2 cores, one run each, about 4.5 min of CPU for the LSTMs): test digit
error rate by best path / beam search: BiLSTM 0.172 / 0.167 (string error rate 0.375), BiGRU
0.162 / 0.161, layer-norm BiLSTM 0.167 / 0.163, and the BiLSTM trained on clean audio 0.397
/ 0.398 on the same noisy test split. All miss the 0.10 bound; the row says so. Training
with noise is what matters most here (0.17 against 0.40); the three cells of the same size
are within 0.01 of each other. The budget (1,500 steps of 32) was fixed before the run and
is not tuned on the test split.

Measured, ``small`` size only (240 training utterances, 1 x 32, 150 steps; 34 s of CPU per
run, on 2 shared cores at a load average of about 25): validation CTC loss 7.99; test
digit error rate 0.763 by best path, 0.641 by beam search, string error rate 0.917 / 0.900;
the same run repeated gave identical digits. Same size and budget, test digit error rate
best path / beam: GRU 0.840 / 0.752 (validation loss 7.81), layer-norm LSTM 0.912 / 0.733
(7.61); LSTM trained on the clean audio 0.805 / 0.779 on the noisy test split, while it
reached 0.51 on its clean validation split. At this size the models have only begun to
recognise digits: these numbers test the plumbing, not the recipe.
"""

from __future__ import annotations

import ml_collections

from experiments import settings
from rnnlab.train.config import base_config, lock

CELLS = {"lstm": "lstm", "gru": "gru", "lnlstm": "layernorm_lstm"}
FLAGS = ("small", "clean", "gru", "lnlstm")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """Comma-separated flags from :data:`FLAGS` (at most one of gru, lnlstm)."""
    # "ci": the smoke run's earlier name, kept as an alias of "small".
    flags = ["small" if p == "ci" else p for p in arg.split(",") if p]
    cells = [f for f in flags if f in ("gru", "lnlstm")]
    if any(f not in FLAGS for f in flags) or len(cells) > 1 or len(set(flags)) < len(flags):
        raise ValueError(
            f"spoken_digits variant must be comma-separated flags from {FLAGS} with at most "
            f"one of gru, lnlstm; got {arg!r}"
        )
    c = base_config()
    c.seed = 0
    c.data = ml_collections.ConfigDict(
        {
            "name": "spoken_digits",
            "synthesis_seed": 0,
            "train_examples": 2000,
            "validation_examples": 200,
            "test_examples": 400,
            "noisy_train": "clean" not in flags,
            "num_mels": 40,
            "normalize": True,
            "pad_multiple": 64,  # few distinct batch shapes: few compilations
            "pad_to": "batch",
            "bucket_window": 8,
            "data_dir": "",
            "tfds_data_dir": "",
        }
    )
    c.model.name = "speech_recognizer"
    c.model.cell = CELLS[cells[0] if cells else "lstm"]
    c.model.hidden_features = 96
    c.model.num_layers = 2
    c.model.frame_stack = 3
    c.model.dropout = 0.0

    settings.adam_cosine(c, warmup_steps=100)

    settings.train_steps(c, 1500, batch_size=32, log_every=50, eval_every=250, checkpoint_every=250)
    c.train.stateful = False
    c.eval.batch_size = 125
    # Read by the end-of-run report (rnnlab.tasks.ctc): best path and prefix beam search.
    c.report = ml_collections.ConfigDict({"split": "test", "max_examples": 400})

    if "small" in flags:
        c.data.train_examples = 240
        c.data.validation_examples = 40
        c.data.test_examples = 60
        # One padded length (the longest utterance): two compilations instead of about ten.
        c.data.pad_to = "max"
        c.model.hidden_features = 32
        c.model.num_layers = 1
        c.optim.lr = 1e-2
        c.optim.warmup_steps = 20
        settings.train_steps(
            c, 150, batch_size=16, log_every=25, eval_every=150, checkpoint_every=150
        )
        c.eval.batch_size = 40
        c.report.max_examples = 60
    return lock(c)
