"""TPU slices the experiments' ``tpu`` variants are sized for, and the sizing rule they share.

A ``tpu`` variant fixes the model at its paper's size and sets the global batch to
``per_chip_batch x chips`` of one slice, so that every chip of the slice gets the same
local batch. The mesh is ``{"data": -1}``: one data-parallel axis over every chip of
whatever slice the run lands on (``rnnlab.parallel.make_mesh``), parameters replicated;
a slice of another size needs ``--config.train.batch_size`` divisible by its chip count.
Compute is bfloat16 (``model.dtype``), parameters and recurrent carries stay float32
(docs/decisions.md, entry 4).

Each recipe compiles for its slice on any machine (``rnnlab compile --config SPEC
--topology ACCELERATOR_TYPE``, :data:`RECIPES`; ``make tpu-compile`` runs them all). The
compile-time estimates, from libtpu 0.0.42.1's compiler and not from a measured run
(docs/tpu.md, "TPU recipes"), per chip of the train step: charlm:tpu 931 MiB of 16 GiB on
v5litepod-16 with a roofline floor of 6.7 ms per step (HBM-bound); charlm:tpu,v6e 1,789 MiB
of 32 GiB on v6e-8, 4.8 ms; wordlm:tpu 1,330 MiB of 16 GiB, 10.7 ms; seqmnist:tpu 3 MiB,
its step bound by the latency of 784 sequential steps, which the roofline leaves out. No run
of these variants on a TPU has been recorded yet, so no measured step time is stated.
"""

from __future__ import annotations

import ml_collections

# Chips and high-bandwidth memory per chip (Google's published figures).
SLICES = {
    # v5e: 16 GiB of HBM per chip; v5litepod-16 is 4 hosts of 4 chips.
    "v5e": {"accelerator_type": "v5litepod-16", "chips": 16, "hbm_gib": 16},
    # v6e (Trillium): 32 GiB of HBM per chip; v6e-8 is one host of 8 chips.
    "v6e": {"accelerator_type": "v6e-8", "chips": 8, "hbm_gib": 32},
}
GENERATIONS = tuple(SLICES)

# Every TPU recipe and the generation whose slice it is sized for: what `make tpu-compile`
# compiles (rnnlab compile --topology SLICES[generation]["accelerator_type"]).
RECIPES = (
    ("experiments/charlm.py:tpu", "v5e"),
    ("experiments/charlm.py:tpu,v6e", "v6e"),
    ("experiments/wordlm.py:tpu", "v5e"),
    ("experiments/seqmnist.py:tpu", "v5e"),
    ("experiments/seqmnist.py:bn_lstm,permuted,tpu,v6e", "v6e"),
)


def parse(parts: list[str], experiment: str) -> str | None:
    """The TPU generation named by variant parts (``["tpu"]``, ``["tpu", "v6e"]``), or None
    when there is no ``tpu`` part; removes the parts it read from ``parts``."""
    if "tpu" not in parts:
        if any(p in GENERATIONS for p in parts):
            raise ValueError(f"{experiment}: a TPU generation needs the 'tpu' part, got {parts}")
        return None
    parts.remove("tpu")
    named = [p for p in parts if p in GENERATIONS]
    if len(named) > 1:
        raise ValueError(f"{experiment}: one TPU generation of {GENERATIONS}, got {named}")
    for p in named:
        parts.remove(p)
    return named[0] if named else "v5e"


def apply(c: ml_collections.ConfigDict, generation: str, per_chip_batch: dict[str, int]):
    """Sets the global batch for one slice of ``generation``, bfloat16 compute and the mesh."""
    chips = SLICES[generation]["chips"]
    c.train.batch_size = per_chip_batch[generation] * chips
    c.eval.batch_size = c.train.batch_size
    c.model.dtype = "bfloat16"
    c.mesh.data = -1
    return c
