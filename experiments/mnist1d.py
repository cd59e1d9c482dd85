"""MNIST-1D classification (Greydanus 2020) with rnnlab's GRU and LSTM and Flax's stock cells.

Data (``mnist1d``, generated locally by the ``mnist1d`` package with the paper's default
arguments, identical to its published pickle): 4,000 training and 1,000 test signals of 40
steps, one channel, ten classes; 10 % of each class of the training set (399 signals,
stratified: rnnlab.data.splits) is the validation split that picks the best checkpoint,
3,601 train. The test split is scored once, on that checkpoint.

Published: logistic regression 32 %, MLP 68 %, CNN 94 %, GRU 91 %, human 96 % test
accuracy (Greydanus 2020, table 1). The GRU figure is a floor: recurrent models trained
longer reach the high 90s.

Commands (train, then score the best checkpoint on the test split)::

    rnnlab train --config experiments/mnist1d.py:gru --workdir workdirs/mnist1d-gru
    rnnlab eval --workdir workdirs/mnist1d-gru --split test

Variants: ``gru`` (default), ``lstm`` (rnnlab's cells in ``rnnlab.models`` "classifier"),
``flax_gru``, ``flax_lstm`` (Flax's ``nnx.GRUCell`` / ``nnx.OptimizedLSTMCell`` in
"flax_classifier": the same pooling, head, optimizer, steps, batches and seed; only the
recurrence differs), ``small`` (CI smoke run, a few seconds). "flax_classifier" is the peer
of ``benchmarks/flax_peer.py``, registered by this file, so its runs are evaluated with the
file named: ``rnnlab eval --config experiments/mnist1d.py:flax_gru --workdir ...``.

Model: two recurrent layers of 128 units, the output at the last step, a linear head; Adam
3e-3 with 100 warm-up steps and a cosine decay to 5 %, gradients clipped at global norm 1,
batch 64, 6,000 steps (107 epochs), evaluated every 500 steps.

Hardware: 2 CPU cores (AMD EPYC), one JAX CPU device. The measured
accuracies and wall times are in experiments/README.md (``make results``).
"""

from __future__ import annotations

import ml_collections

import benchmarks.flax_peer  # noqa: F401  (registers the flax_* variants' "flax_classifier")
from experiments import settings
from rnnlab.train.config import base_config, lock

VARIANTS = ("gru", "lstm", "flax_gru", "flax_lstm", "small")


def get_config(arg: str = "gru") -> ml_collections.ConfigDict:
    """One of :data:`VARIANTS` (``""`` is ``gru``)."""
    arg = settings.variant("mnist1d", arg, VARIANTS, default="gru")
    c = base_config()
    c.seed = 0
    c.data.name = "mnist1d"

    flax = arg.startswith("flax_")
    c.model.name = "flax_classifier" if flax else "classifier"
    c.model.cell = "lstm" if arg.endswith("lstm") else "gru"
    c.model.hidden_features = 128
    c.model.num_layers = 2
    c.model.pooling = "last"

    settings.adam_cosine(c, warmup_steps=100)

    settings.train_steps(
        c, 6000, batch_size=64, log_every=100, eval_every=500, checkpoint_every=500
    )
    c.train.stateful = False
    c.eval.batch_size = 100

    if arg == "small":
        c.model.hidden_features = 16
        c.model.num_layers = 1
        c.optim.warmup_steps = 10
        settings.train_steps(c, 60, log_every=20, eval_every=30, checkpoint_every=30)
    return lock(c)
