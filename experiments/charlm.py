"""Character-level LSTM language model on Jane Austen's six novels (the main job).

Command (what ``make run`` does)::

    rnnlab train --config experiments/charlm.py --workdir workdirs/charlm

Variants: ``experiments/charlm.py`` (default, the main job) and ``experiments/charlm.py:small``
(CI smoke test).

Hardware: 2 cores of an Intel Xeon (Sapphire Rapids), no accelerator, one JAX CPU device.

Expected result (default): validation 1.91 bits per character (loss 1.322 nats, accuracy
60.3 %) after 3,000 steps (12.3 M characters, 3.4 epochs), then the plots path and a
400-character sample. Measured on the development machine: 17 min 42 s of wall time while
other jobs kept its 2 cores busy (load average 11 to 18; this run got 37 % of one core),
6 min 43 s of CPU time (user + system), which bounds the wall time on 2 idle cores: about
7 minutes, start-up, evaluations and checkpoints included. The uniform baseline is
log2(82) = 6.36 bits, a unigram model about 4.5. The ``small`` variant (120 steps of a
64-unit LSTM) runs in under a minute and reaches about 3.6 bits per character.
"""

from __future__ import annotations

import ml_collections

from rnnlab.train.config import base_config, lock


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """``""``: the main job; ``"small"``: a CI-sized run of the same model."""
    c = base_config()
    c.seed = 0
    c.data.name = "austen"
    c.data.seq_len = 128

    c.model.name = "language_model"
    c.model.cell = "lstm"
    c.model.embed_features = 64
    c.model.hidden_features = 256
    c.model.num_layers = 1
    c.model.tie_embeddings = False
    c.model.dropout = 0.0
    c.model.dtype = "float32"  # "bfloat16" for mixed precision on accelerators

    c.optim.optimizer = "adam"
    c.optim.lr = 3e-3
    c.optim.clip_norm = 1.0
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 50
    c.optim.final_lr_fraction = 0.05

    c.train.steps = 3000
    c.train.batch_size = 32
    c.train.log_every = 50
    c.train.eval_every = 500
    c.train.checkpoint_every = 500
    c.train.early_stopping.patience = 0

    c.sample.length = 400
    c.sample.temperature = 0.7
    c.sample.prompt = "It is a truth universally acknowledged"

    if arg == "small":
        c.data.seq_len = 32
        c.model.embed_features = 16
        c.model.hidden_features = 64
        c.optim.lr = 1e-2
        c.optim.warmup_steps = 10
        c.train.steps = 120
        c.train.batch_size = 16
        c.train.log_every = 20
        c.train.eval_every = 60
        c.train.checkpoint_every = 60
        c.eval.max_batches = 10
        c.sample.length = 80
    elif arg:
        raise ValueError(f"charlm variant must be '' or 'small', got {arg!r}")
    return lock(c)
