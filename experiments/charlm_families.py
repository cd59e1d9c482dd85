"""The main job's character LM on Austen with each recurrent family, at equal parameter count.

One recurrent layer of each family between the same 64-wide character embedding and a linear
decoder over the 82 characters, each layer as wide as makes the whole model about 115 K
parameters (an LSTM 1 x 128; every family within 1.5 % of it,
:data:`FAMILIES`; ``tests/test_charlm_families.py`` recomputes each count from the cell
equations' shapes). Same data, optimiser, batches, seed and number of steps; only the
recurrence differs. Each family runs on the path ``implementation="auto"`` picks for it
(named in the run header): fused (LSTM, GRU), parallel (Hawk block, S6, mLSTM in chunks),
scan (sLSTM, nonlinear in its state).

Commands (train, then score the checkpoint best on validation on the test split)::

    rnnlab train --config experiments/charlm_families.py:s6 --workdir workdirs/charlm-s6
    rnnlab eval --workdir workdirs/charlm-s6 --split test

Variants: ``lstm`` (default), ``gru``, ``hawk``, ``slstm``, ``mlstm``, ``s6``; ``<family>,small``
is a CI smoke run of the same family (narrow, a few steps). ``python -m
experiments.charlm_families`` prints each family's width and parameter count.

The families (cells of ``rnnlab.cells``, each as the cell documents it, docs/cells.md):

- ``lstm``: LSTM 128 (Hochreiter & Schmidhuber 1997), forget bias 1;
- ``gru``: GRU 150 (Cho et al. 2014);
- ``hawk``: the recurrent block of Hawk (De et al. 2024): GeLU branch, width-4 temporal
  convolution into an RG-LRU of width 208 with 4 gate blocks, output projection; without the
  residual MLP block of the full Hawk model;
- ``slstm``: sLSTM 200, 4 heads (Beck et al. 2024);
- ``mlstm``: mLSTM 320, 4 heads of 80 (Beck et al. 2024): its parameters are the input
  projections only, so equal parameters make it the widest;
- ``s6``: Mamba's selective state space alone, 436 channels of 16 states (Gu & Dao
  2023): without the Mamba block's convolution, SiLU gate and output projection, which
  belong to the model around it.

Training: the main job's recipe shortened: Adam 3e-3 with 50 warm-up steps and a cosine
decay to 5 %, clipping at global norm 1, batch 16 x 128 characters carried across batches,
:data:`STEPS` = 400 steps (819 K characters, a quarter of an epoch), evaluated every 200
steps on the whole validation split (5 %, 200 K characters). The budget is what a shared
2-core CPU affords six families in one sitting (S6's 16 states per channel cost about ten
LSTM steps per step on XLA's CPU backend): a short-budget comparison, not converged models.

Hardware: 2 CPU cores (AMD EPYC), shared; one JAX CPU device. The measured bits per
character, training throughput and wall times are in experiments/README.md (rows
``charlm-family-*``).
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import ml_collections
from flax import nnx

from experiments import settings
from rnnlab.train.config import base_config, lock
from rnnlab.train.state import abstract_model

EMBED = 64
BATCH = 16
STEPS = 400
# Family -> registered cell, its width and arguments (heads and state sizes of the
# papers' small models, as benchmarks/families.py uses).
FAMILIES: dict[str, dict[str, Any]] = {
    "lstm": {"cell": "lstm", "hidden": 128, "kwargs": {}},
    "gru": {"cell": "gru", "hidden": 150, "kwargs": {}},
    "hawk": {"cell": "hawk", "hidden": 208, "kwargs": {"num_heads": 4}},
    "slstm": {"cell": "slstm", "hidden": 200, "kwargs": {"num_heads": 4}},
    "mlstm": {"cell": "mlstm", "hidden": 320, "kwargs": {"num_heads": 4}},
    "s6": {"cell": "s6", "hidden": 436, "kwargs": {"state_size": 16}},
}
VARIANTS = (*FAMILIES, "lstm,small")
SMALL_HIDDEN = 16  # the smoke run's width, a multiple of every family's head count


def get_config(arg: str = "lstm") -> ml_collections.ConfigDict:
    """``"<family>[,small]"``, a family of :data:`FAMILIES` (``""`` is ``lstm``)."""
    family, small = settings.named_variant("charlm_families", arg, tuple(FAMILIES), "lstm")
    spec = FAMILIES[family]
    c = base_config()
    c.seed = 0
    c.data.name = "austen"
    c.data.seq_len = 128

    c.model.name = "language_model"
    c.model.cell = spec["cell"]
    c.model.cell_kwargs = dict(spec["kwargs"])
    c.model.embed_features = EMBED
    c.model.hidden_features = spec["hidden"]
    c.model.num_layers = 1
    c.model.tie_embeddings = False
    c.model.dropout = 0.0

    settings.adam_cosine(c, warmup_steps=50)
    settings.train_steps(
        c, STEPS, batch_size=BATCH, log_every=50, eval_every=200, checkpoint_every=200
    )
    c.train.early_stopping.patience = 0

    c.sample.length = 300
    c.sample.temperature = 0.7
    c.sample.prompt = "It is a truth universally acknowledged"

    if small:
        c.data.seq_len = 32
        c.model.embed_features = 16
        c.model.hidden_features = SMALL_HIDDEN
        c.optim.warmup_steps = 5
        settings.train_steps(c, 20, batch_size=8, log_every=10, eval_every=10, checkpoint_every=10)
        c.eval.max_batches = 2
        c.sample.length = 20
    return lock(c)


def parameter_count(family: str, vocab_size: int) -> int:
    """Parameters of the family's language model, counted on the built model's shapes
    (nothing allocated)."""
    model = abstract_model(get_config(family), {"vocab_size": vocab_size})
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def main(argv: list[str]) -> int:
    """Prints each family's cell, width and parameter count (``vocab_size`` 82: Austen)."""
    vocab = int(argv[0]) if argv else 82
    base = parameter_count("lstm", vocab)
    for family, spec in FAMILIES.items():
        n = parameter_count(family, vocab)
        print(f"{family:6s} {spec['cell']:6s} {spec['hidden']:5d}  {n:,} ({n / base - 1:+.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
