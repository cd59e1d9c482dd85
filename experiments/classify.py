"""Pooling study for the sequence classifier: last state, mean, max or attention, one- or
two-directional, on JapaneseVowels and MNIST-1D.

The reference runs for these datasets are experiments/japanese_vowels.py and
experiments/mnist1d.py; this file varies only how the classifier turns the recurrent
states into one vector, on otherwise fixed settings, so the variants compare like for like.
Every run ends with a per-class report on the test split (precision, recall, F1, confusion
matrix) in ``summary.json`` under ``report``.

Command (``<dataset>,<pooling>[,bi]``)::

    rnnlab train --config experiments/classify.py:japanese_vowels,attention,bi \\
        --workdir workdirs/classify/jv-attention-bi

Datasets: ``japanese_vowels`` (9 speakers, 12 channels, 7 to 29 frames), ``mnist1d``
(10 digits, 40 steps, one channel). Poolings: ``last``, ``mean``, ``max``, ``attention``
(additive attention over the valid steps, weights in the model's ``aux["attention"]``).
``bi``: a bidirectional stack. ``small``: the CI smoke run.

Model: a one-layer GRU (64 units, or 64 per direction), the pooling, a linear head; Adam
3e-3 with a cosine decay, clipping at 1, batch 32; 1,500 steps (JapaneseVowels) or 6,000
(MNIST-1D).

Hardware: 2 cores of an Intel Xeon (Sapphire Rapids), one JAX CPU device; about two
minutes (JapaneseVowels) or ten (MNIST-1D) per variant.

Expected result: on JapaneseVowels every pooling reaches about 95 % test accuracy or more
(the UEA 1-NN DTW baseline is 95.9 %, Bagnall et al. 2018), mean and attention pooling a
little steadier than the last state; on MNIST-1D the last state of a one-directional GRU
is the weakest (the published GRU figure is 91 %, Greydanus 2020) and pooling over all
steps or reading both directions helps. ``small`` (JapaneseVowels, attention,
bidirectional, 60 steps) must reach a test accuracy above 50 % in CI (chance: 11 %).
Measured numbers go to experiments/README.md.
"""

from __future__ import annotations

import ml_collections

from experiments import settings
from rnnlab.train.config import base_config, lock

DATASETS = {"japanese_vowels": 1500, "mnist1d": 6000}
POOLINGS = ("last", "mean", "max", "attention")


def get_config(arg: str = "japanese_vowels,attention") -> ml_collections.ConfigDict:
    """``"<dataset>,<pooling>[,bi]"`` or ``"small"``."""
    parts = [p for p in (arg or "japanese_vowels,attention").split(",") if p]
    small = parts == ["small"]
    if small:
        parts = ["japanese_vowels", "attention", "bi"]
    ok = (
        len(parts) in (2, 3)
        and parts[0] in DATASETS
        and parts[1] in POOLINGS
        and parts[2:] in ([], ["bi"])
    )
    if not ok:
        raise ValueError(
            f"classify variant must be '<dataset>,<pooling>[,bi]' with dataset in "
            f"{sorted(DATASETS)} and pooling in {POOLINGS}, or 'small'; got {arg!r}"
        )
    dataset, pooling, bidirectional = parts[0], parts[1], parts[2:] == ["bi"]
    c = base_config()
    c.seed = 0
    c.data.name = dataset

    c.model.name = "classifier"
    c.model.cell = "gru"
    c.model.hidden_features = 64
    c.model.num_layers = 1
    c.model.bidirectional = bidirectional
    c.model.pooling = pooling
    c.model.attention_features = 64

    settings.adam_cosine(c, warmup_steps=50)

    settings.train_steps(
        c, DATASETS[dataset], batch_size=32, log_every=100, eval_every=250, checkpoint_every=250
    )
    c.train.stateful = False

    # Read by the end-of-run report (rnnlab.tasks).
    c.report = ml_collections.ConfigDict({"split": "test"})

    if small:
        c.model.hidden_features = 16
        c.model.attention_features = 16
        c.optim.warmup_steps = 5
        settings.train_steps(c, 60, log_every=20, eval_every=60, checkpoint_every=60)
    return lock(c)
