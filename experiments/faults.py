"""A tiny character-level LSTM language model for the fault-injection suite.

Command (what ``make faults`` runs, many times, killing and corrupting it)::

    python -m tools.faults            # full form
    python -m tools.faults --short    # the CI form

or a single run::

    rnnlab train --config experiments/faults.py --workdir workdirs/faults

Hardware: any CPU; one JAX device. Expected result: the run completes 40 steps of a
3,650-parameter model on Jane Austen's *Persuasion* in a few seconds after start-up, with
a checkpoint every 5 steps (asynchronous writes, the last 3 kept) and the training loss
falling from ln(82) = 4.4 to about 3 nats. The numbers do not matter: the suite compares
interrupted runs against an uninterrupted one, bit for bit.
"""

from __future__ import annotations

import ml_collections

from rnnlab.train.config import base_config, lock


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """``""``: the run every fault scenario interrupts."""
    if arg:
        raise ValueError(f"faults variant must be '', got {arg!r}")
    c = base_config()
    c.seed = 0
    c.data.name = "austen"
    c.data.seq_len = 16
    c.data.novels = ("persuasion",)
    # The suite points a resumed run at another corpus (data.name=text_dir, data.path=...)
    # to check that the vocabulary mismatch is refused: text_dir's options come with its name.
    c.model.name = "language_model"
    c.model.cell = "lstm"
    c.model.embed_features = 8
    c.model.hidden_features = 16
    c.model.num_layers = 1
    c.optim.optimizer = "adam"
    c.optim.lr = 1e-2
    c.optim.clip_norm = 1.0
    c.train.steps = 40
    c.train.batch_size = 4
    c.train.log_every = 5
    c.train.eval_every = 0  # one evaluation, at the end
    c.train.checkpoint_every = 5
    c.train.keep_checkpoints = 3
    c.train.max_nonfinite = 3
    c.eval.max_batches = 2
    return lock(c)
