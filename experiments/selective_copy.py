"""Selective copying (Gu & Dao 2023, "Mamba", section 3.1 and table 1), scaled to a CPU.

``copy_len`` = 16 symbols from an alphabet of 14 lie at random positions among noise in the
first ``seq_len`` = 128 steps; 16 markers follow, at which the model must output the
symbols in order (``rnnlab.data`` "selective_copy"). The loss and the accuracy count the
marker steps only; guessing scores 1/14 = 7.1 %.

Published expectation (stated before these runs; Gu & Dao 2023, table 1: 2-layer models,
sequences of 4,096 steps, 16 symbols of a 16-token vocabulary): the selective state space
S6 solves it (97.0 % without the Mamba block's gate, 99.8 % in it), a linear
time-invariant recurrence does not (S4: 18.3 %; 57.0 % inside the gated H3 block). The
reason: an LTI recurrence applies the same decay at every step, so it cannot skip the noise
that separates the symbols, whose spacing changes from example to example; S6 chooses its
step ``Delta_t`` from the input, and can hold its state through the noise. rnnlab's LTI
cell is the LRU (Orvieto et al. 2023: a diagonal complex recurrence of the S4D/S5 kind). The
LSTM's gates are input-dependent too (Gu & Dao's theorem 1: a gated RNN is the selection
mechanism's discretisation), so nothing forbids it the task; on the related copy-memory
task it sits at the memoryless baseline for long stretches of training (Arjovsky et al.
2016), so no figure is expected of it at this budget.

Commands (train, then score the checkpoint best on validation on the test split)::

    rnnlab train --config experiments/selective_copy.py:s6 --workdir workdirs/selcopy-s6
    rnnlab eval --workdir workdirs/selcopy-s6 --split test

Variants: ``s6`` (default), ``lru``, ``lstm``, ``hawk``, ``mlstm``; ``<cell>,small`` is the
CI smoke run (``seq_len`` 24, 4 symbols, a few steps).

Model: the language model of ``rnnlab.models`` (a 16-wide embedding of the 16 tokens, two
recurrent layers of width 32, logits at every step), not carried across batches. S6 with
16 states per channel; the LRU with 32 complex states, its eigenvalues on the
0.9..0.999 ring and a GLU readout (the settings of experiments/gradient_variants.py).

Budget: Adam 2e-3 with 100 warm-up steps and a cosine decay to 5 %, clipping at global norm
1, batch 32, :data:`STEPS` = 600 steps, evaluated every 200 steps on 1,000 validation
sequences. Gu & Dao train for 400 K steps at 32 times this length: this is a CPU-sized probe
of the same contrast, not their setting.

Hardware: 2 CPU cores (AMD EPYC), shared; one JAX CPU device. Measured accuracies are in
experiments/README.md (rows ``selcopy-*``).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from experiments import settings
from rnnlab.train.config import base_config, lock

CONTEXT, COPY_LEN, NUM_SYMBOLS = 128, 16, 14
WIDTH, LAYERS, STEPS = 32, 2, 600
CELLS: dict[str, dict[str, Any]] = {
    "s6": {"cell": "s6", "kwargs": {"state_size": 16}},
    "lru": {
        "cell": "lru",
        "kwargs": {"r_min": 0.9, "r_max": 0.999, "max_phase": 0.314, "glu": True},
    },
    "lstm": {"cell": "lstm", "kwargs": {"forget_bias": 1.0}},
    "hawk": {"cell": "hawk", "kwargs": {"num_heads": 4}},
    "mlstm": {"cell": "mlstm", "kwargs": {"num_heads": 4}},
}

VARIANTS = (*CELLS, "s6,small")


def get_config(arg: str = "s6") -> ml_collections.ConfigDict:
    """``"<cell>[,small]"``, a cell of :data:`CELLS` (``""`` is ``s6``)."""
    name, small = settings.named_variant("selective_copy", arg, tuple(CELLS), "s6")
    c = base_config()
    c.seed = 0
    c.data.name = "selective_copy"
    c.data.seq_len = CONTEXT
    c.data.copy_len = COPY_LEN
    c.data.num_symbols = NUM_SYMBOLS

    c.model.name = "language_model"
    c.model.cell = CELLS[name]["cell"]
    c.model.cell_kwargs = dict(CELLS[name]["kwargs"])
    c.model.embed_features = 16
    c.model.hidden_features = WIDTH
    c.model.num_layers = LAYERS

    settings.adam_cosine(c, warmup_steps=100, lr=2e-3)
    settings.train_steps(
        c, STEPS, batch_size=32, log_every=50, eval_every=200, checkpoint_every=200
    )
    c.train.stateful = False
    c.train.early_stopping.patience = 0
    c.eval.split = "validation"

    if small:
        c.data.seq_len, c.data.copy_len, c.data.num_symbols = 24, 4, 6
        c.model.hidden_features = 16
        c.optim.warmup_steps = 5
        settings.train_steps(c, 20, batch_size=16, log_every=10, eval_every=10, checkpoint_every=10)
        c.eval.max_batches = 2
    return lock(c)
