"""Your own data for every task: a classifier, regressor, tagger, translator or recogniser.

Data: ``sequence_classification`` or ``sequence_regression`` (docs/data.md, "Your own
data"): ``--config.data.path=FILE`` names the training file (``.npz``/``.npy`` arrays or a
long ``.csv``/``.parquet`` table); ``data.validation_path`` and ``data.test_path`` the other
splits, which are otherwise carved from it (10 % each).

Commands::

    rnnlab train --config experiments/own_data.py:classification --workdir workdirs/mine \\
        --config.data.path=train.npz
    rnnlab eval --workdir workdirs/mine --split test
    rnnlab predict --workdir workdirs/mine --input new.npz --output predictions.csv

Variants: ``classification`` (default), ``regression``, ``tagging`` (a label per time step:
``sequence_tagging``, the same model without pooling), ``translation`` (``sentence_pairs``
from a ``.tsv``/``.jsonl`` file of pairs, an LSTM encoder-decoder with attention), ``speech``
(``audio_folder``: a manifest of audio files and transcripts, a CTC recogniser);
``,small`` after any (e.g. ``classification,small``): 30 steps of a small model, the CI
smoke run.

Model: a one-layer bidirectional GRU (64 units per direction), mean over the valid steps,
a linear head; Adam 3e-3 with a cosine decay, clipping at 1, batch 32, 1,000 steps.

Hardware: any; a few minutes on 2 CPU cores for a few thousand sequences of ~100 steps.
Expected result: depends on your data; the test split's accuracy (or MSE) is in
``summary.json`` and ``rnnlab eval``.
"""

from __future__ import annotations

import ml_collections

from experiments import settings
from rnnlab.train.config import base_config, lock

TASKS = ("classification", "regression", "tagging", "translation", "speech")


def get_config(arg: str = "classification") -> ml_collections.ConfigDict:
    """``"<task>"`` or ``"<task>,small"``, task one of ``classification``, ``regression``,
    ``tagging``, ``translation``, ``speech``."""
    parts = (arg or "classification").split(",")
    if parts[0] not in TASKS or parts[1:] not in ([], ["small"]):
        raise ValueError(
            f"own_data variant must be '<task>[,small]' with task in {TASKS}, got {arg!r}"
        )
    c = base_config()
    c.seed = 0
    if parts[0] == "translation":
        _translator(c)
    elif parts[0] == "speech":
        _recognizer(c)
    else:
        c.data.name = f"sequence_{parts[0]}"
        c.model.name = "classifier"
        c.model.cell = "gru"
        c.model.hidden_features = 64
        c.model.num_layers = 1
        c.model.bidirectional = True
        c.model.pooling = "none" if parts[0] == "tagging" else "mean"

    settings.adam_cosine(c, warmup_steps=50)
    settings.train_steps(c, 1000, batch_size=32, log_every=50, eval_every=250, checkpoint_every=250)
    c.train.stateful = False
    c.eval.split = "validation"
    if parts[1:] == ["small"]:
        c.model.hidden_features = 32 if parts[0] in ("translation", "speech") else 16
        if parts[0] in ("translation", "speech"):
            c.optim.lr = 1e-2  # a few steps must already emit words or characters
        c.optim.warmup_steps = 5
        settings.train_steps(c, 30, batch_size=16, log_every=10, eval_every=30, checkpoint_every=30)
    return lock(c)


def _translator(c: ml_collections.ConfigDict) -> None:
    """``sentence_pairs`` (``data.path`` a .tsv or .jsonl file, word vocabularies) and an
    attention encoder-decoder evaluated with greedy decoding."""
    c.data.name = "sentence_pairs"
    c.model.name = "translator"
    c.model.cell = "lstm"
    c.model.embed_features = 64
    c.model.hidden_features = 128
    c.model.encoder_layers = 1
    c.model.attention = "additive"
    c.model.attention_features = 64
    c.model.eval_beam_size = 1
    c.train.early_stopping.metric = "exact_match"
    c.train.early_stopping.mode = "max"


def _recognizer(c: ml_collections.ConfigDict) -> None:
    """``audio_folder`` (``data.path`` a manifest of audio files and transcripts, 40 log-mel
    bands) and a bidirectional LSTM trained with CTC over pairs of stacked frames."""
    c.data.name = "audio_folder"
    c.model.name = "speech_recognizer"
    c.model.cell = "lstm"
    c.model.hidden_features = 128
    c.model.num_layers = 2
    c.model.frame_stack = 2
