"""Sequential and permuted MNIST: one pixel per step, 784 steps (accelerator configs).

The classic long-memory benchmark: a recurrent classifier reads the 28 x 28 image one pixel
at a time (row by row, or in a fixed random order for the permuted task) and names the
digit after the last pixel. Published test accuracies, sequential / permuted: IRNN 97 / 82
(Le, Jaitly & Hinton 2015), BN-LSTM 99.0 / 95.4 (Cooijmans et al. 2016).

Data: TFDS ``mnist`` (``data.name = "mnist"``, ``mode = "pixel"``, ``permuted``), which
users prepare with ``tfds build mnist`` or point ``data.tfds_data_dir`` at; the last 10 %
of the training set is the validation split that picks the best checkpoint, and the test
split is scored once, on that checkpoint. The development machine has no network, so these
runs have no measured number here; ``small`` (row by row, a few steps) runs under
``tfds.testing.mock_data`` in the tests, for plumbing only.

Commands::

    rnnlab train --config experiments/seqmnist.py:irnn --workdir workdirs/seqmnist-irnn
    rnnlab eval --workdir workdirs/seqmnist-irnn --split test

Variants: ``irnn`` or ``bn_lstm``, optionally ``,permuted``, optionally ``,tpu`` or
``,tpu,v6e``; ``small``; ``tpu`` alone is ``irnn,tpu``.

Models (100 recurrent units as in both papers, the output at the last pixel, a linear
head): the IRNN (ReLU units, identity recurrent initialisation, input weights N(0, 1e-3))
with RMSProp 1e-4 and clipping at global norm 1; the recurrently batch-normalised LSTM with
statistics per time step for all 784 steps, gains initialised to 0.1, RMSProp 1e-3 as in
Cooijmans et al. Batch 64, 150,000 steps (about 180 epochs) for the IRNN and 50,000 for
the BN-LSTM, evaluated every 5,000 steps.

Hardware: meant for one GPU or TPU chip; on a CPU a step over 784 pixels takes seconds.

TPU (``,tpu`` for a v5e slice, ``,tpu,v6e`` for v6e; see docs/tpu.md and
experiments/tpu_slices.py)::

    tpu/run.sh experiments/seqmnist.py:irnn,tpu
    tpu/run.sh experiments/seqmnist.py:bn_lstm,permuted,tpu,v6e

The papers' models (100 units, 784 steps) in bfloat16 compute with float32 parameters and
carries. Global batch: 16 per chip on v5e (``v5litepod-16``: 256), 32 per chip on v6e
(``v6e-8``: 256); mesh ``data=-1``. Steps are scaled by 64 / 256 to keep the papers' number
of epochs; the learning rates stay the papers', untuned for the larger batch.

Compile-time estimates (``rnnlab compile --config experiments/seqmnist.py:tpu --topology
v5litepod-16``; libtpu 0.0.42.1's compiler on a CPU with mnist's declared features, not a
measured run; docs/tpu.md): the IRNN's train step needs 3 MiB per v5e chip. Its roofline
floor (0.05 ms) says nothing about its speed: 784 sequential steps of a 100-unit cell are
bound by the latency of the time loop, which the roofline leaves out (docs/decisions.md).
Measured step time and accuracy: none recorded yet.
"""

from __future__ import annotations

import ml_collections

from experiments import tpu_slices
from rnnlab.train.config import base_config, lock

CELLS = ("irnn", "bn_lstm")
TPU_BATCH_PER_CHIP = {"v5e": 16, "v6e": 32}


def get_config(arg: str = "irnn") -> ml_collections.ConfigDict:
    """``"<cell>[,permuted][,tpu[,v5e|v6e]]"`` with cell in :data:`CELLS`, or ``"small"``."""
    parts = [p for p in (arg or "irnn").split(",") if p]
    generation = tpu_slices.parse(parts, "seqmnist")
    if generation is not None and (not parts or parts[0] not in CELLS):
        parts.insert(0, "irnn")
    small = parts == ["small"]
    cell = "irnn" if small else parts[0]
    if cell not in CELLS or any(p != "permuted" for p in parts[1:]):
        raise ValueError(
            f"seqmnist variant must be '<cell>[,permuted][,tpu[,v5e|v6e]]' with cell in {CELLS}, "
            "or 'small'; "
            f"got {arg!r}"
        )
    c = base_config()
    c.seed = 0
    c.data.name = "mnist"
    c.data.mode = "pixel"
    c.data.permuted = "permuted" in parts
    c.data.permutation_seed = 0
    c.data.tfds_data_dir = ""

    c.model.name = "classifier"
    c.model.cell = cell
    c.model.hidden_features = 100
    c.model.num_layers = 1
    c.model.pooling = "last"
    if cell == "bn_lstm":
        c.model.cell_kwargs = {"max_stat_steps": 784, "gamma_init": 0.1}

    c.optim.optimizer = "rmsprop"
    c.optim.momentum = 0.0
    c.optim.lr = 1e-4 if cell == "irnn" else 1e-3
    c.optim.clip_norm = 1.0

    c.train.steps = 150_000 if cell == "irnn" else 50_000
    c.train.batch_size = 64
    c.train.log_every = 500
    c.train.eval_every = 5000
    c.train.checkpoint_every = 5000
    c.train.stateful = False
    c.eval.batch_size = 500

    if small:
        c.data.mode = "row"  # 28 steps of 28 pixels
        c.model.hidden_features = 16
        c.optim.lr = 1e-3
        c.train.steps = 4
        c.train.batch_size = 8  # divisible by the 8 simulated devices of the tests
        c.train.log_every = 2
        c.train.eval_every = 0
        c.train.checkpoint_every = 4
        c.eval.batch_size = 8
        c.eval.max_batches = 1
    if generation is not None:
        tpu_slices.apply(c, generation, TPU_BATCH_PER_CHIP)
        scale = 64 / c.train.batch_size
        c.train.steps = round(c.train.steps * scale)
        c.train.eval_every = c.train.checkpoint_every = round(5000 * scale)
        c.train.log_every = 100
    return lock(c)
