"""Character-level LSTM language model on Jane Austen's six novels (the main job).

Command (what ``make run`` does)::

    rnnlab train --config experiments/charlm.py --workdir workdirs/charlm

Variants: ``experiments/charlm.py`` (default, the main job), ``experiments/charlm.py:small``
(CI smoke test) and ``experiments/charlm.py:tpu`` / ``tpu,v6e`` (a TPU pod slice, below).

Hardware: 2 cores of an Intel Xeon (Sapphire Rapids), no accelerator, one JAX CPU device.

Expected result (default): validation 1.91 bits per character (loss 1.322 nats, accuracy
60.3 %) after 3,000 steps (12.3 M characters, 3.4 epochs), then the plots path and a
400-character sample. Measured on the development machine: 17 min 42 s of wall time while
other jobs kept its 2 cores busy (load average 11 to 18; this run got 37 % of one core),
6 min 43 s of CPU time (user + system), which bounds the wall time on 2 idle cores: about
7 minutes, start-up, evaluations and checkpoints included. The uniform baseline is
log2(82) = 6.36 bits, a unigram model about 4.5. The ``small`` variant (120 steps of a
64-unit LSTM) runs in under a minute and reaches about 3.6 bits per character.

TPU (``tpu`` for a v5e slice, ``tpu,v6e`` for v6e; see docs/tpu.md and
experiments/tpu_slices.py)::

    tpu/run.sh experiments/charlm.py:tpu

Two LSTM layers of 1024 units over 256-character windows, the size of the larger models of
Karpathy, Johnson & Fei-Fei (2015, "Visualizing and understanding recurrent networks"),
bfloat16 compute with float32 parameters and carries, 20,000 steps. Global batch: 32 per
chip on v5e (``v5litepod-16``: 512), 64 per chip on v6e (``v6e-8``: 512); mesh
``data=-1`` over every chip.

Compile-time estimates (``rnnlab compile --config experiments/charlm.py:tpu --topology
v5litepod-16``, and ``:tpu,v6e --topology v6e-8``; libtpu 0.0.42.1's compiler on a CPU, not
a measured run; docs/tpu.md): the train step needs 931 MiB per v5e chip of its 16 GiB (1,789
MiB per v6e chip of 32 GiB); its roofline floor is 6.7 ms per step on v5e (4.8 ms on v6e),
bound by HBM bandwidth, so at most 19.6 M characters/s (27.2 M on v6e), a model FLOP
utilisation of 51 % (31 %) at that bound. Measured step time and result: none recorded yet.
"""

from __future__ import annotations

import ml_collections

from experiments import settings, tpu_slices
from rnnlab.train.config import base_config, lock

TPU_BATCH_PER_CHIP = {"v5e": 32, "v6e": 64}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """``""``: the main job; ``"small"``: a CI-sized run of the same model; ``"tpu"``,
    ``"tpu,v5e"``, ``"tpu,v6e"``: the TPU recipe for one slice of that generation."""
    parts = [p for p in arg.split(",") if p]
    generation = tpu_slices.parse(parts, "charlm")
    if generation is not None and parts:
        raise ValueError(f"charlm variant must be 'tpu[,v5e|v6e]', got {arg!r}")
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

    settings.adam_cosine(c, warmup_steps=50)

    settings.train_steps(c, 3000, batch_size=32, log_every=50, eval_every=500, checkpoint_every=500)
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
        settings.train_steps(
            c, 120, batch_size=16, log_every=20, eval_every=60, checkpoint_every=60
        )
        c.eval.max_batches = 10
        c.sample.length = 80
    elif generation is not None:
        c.data.seq_len = 256
        c.model.embed_features = 256
        c.model.hidden_features = 1024
        c.model.num_layers = 2
        c.optim.lr = 2e-3
        c.optim.warmup_steps = 500
        settings.train_steps(c, 20_000, log_every=100, eval_every=1000, checkpoint_every=1000)
        c.eval.max_batches = 50
        tpu_slices.apply(c, generation, TPU_BATCH_PER_CHIP)
    elif arg:
        raise ValueError(f"charlm variant must be '', 'small' or 'tpu[,v5e|v6e]', got {arg!r}")
    return lock(c)
