"""The copy-memory task across recurrent cells (Arjovsky, Shah & Bengio 2016).

Ten symbols from an alphabet of 8, then ``T - 1`` blanks and a delimiter, then 10 blanks in
which the model must output the ten symbols in order. Guessing blanks and then uniform
symbols scores a cross-entropy of ``10 log 8 / (T + 20)`` nats per step (0.173 at
T = 100), the baseline; a run **solves** the task when the validation loss falls below a
tenth of it (0.017 at T = 100).

Command, one variant (``<cell>[,T=<delay>][,noclip]``, see experiments/gradient_variants.py)::

    rnnlab train --config experiments/copy.py:orthogonal --workdir workdirs/copy/orthogonal
    rnnlab diagnose --config experiments/copy.py:orthogonal --workdir workdirs/copy/orthogonal

Cells as in experiments/adding.py; ``T`` defaults to 100; gradient clipping by global norm 1
unless ``noclip``. ``experiments/copy.py:small`` (alias ``ci``) is the
smoke test (LSTM, T = 10).

Model: the language model of ``rnnlab.models`` (a 16-wide embedding of the 10 tokens, the
cells of gradient_variants.CELLS at width 128, logits at every step), not carried across
batches; batch 64, Adam at each cell's learning rate.

Hardware and budget: 2 cores of an Intel Xeon (Sapphire Rapids), one JAX CPU device;
``train.steps = 4000`` updates, evaluated every 500 steps on 1,000 validation sequences;
10 to 30 minutes of wall time per variant at T = 100.

Expected result (literature): the orthogonal cell solves it (an orthogonal recurrence
keeps the memory of the symbols over the delay), the LSTM and GRU plateau at the baseline
for a long time before (sometimes) solving it, the Elman RNN does not.
"""

from __future__ import annotations

import math

import ml_collections

from experiments import gradient_variants as gv
from rnnlab.train.config import base_config, lock

NUM_SYMBOLS, COPY_LEN = 8, 10


def baseline_loss(delay: int) -> float:
    """``10 log 8 / (T + 20)``: blanks, then uniform guesses over the symbols."""
    return COPY_LEN * math.log(NUM_SYMBOLS) / (delay + 2 * COPY_LEN)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """``"<cell>[,T=<delay>][,noclip]"`` (default ``lstm,T=100``) or ``"small"``
    (alias ``"ci"``).
    """
    v = gv.parse(arg, default_t=100)
    if v["ci"]:
        v["T"] = 10
    v["horizon"] = v["T"] + 2 * COPY_LEN
    cell = gv.cell_settings(v["cell"], v["horizon"])

    c = base_config()
    c.seed = 0
    c.data.name = "copy"
    c.data.seq_len = v["T"]
    c.data.num_symbols = NUM_SYMBOLS
    c.data.copy_len = COPY_LEN

    c.model.name = "language_model"
    c.model.embed_features = 16
    gv.set_training(c, v, cell, steps=4000)
    return lock(c)
