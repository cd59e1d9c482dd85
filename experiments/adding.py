"""The adding problem across recurrent cells: vanishing gradients and their remedies.

The adding problem (Hochreiter & Schmidhuber 1997, in the form of Le et al. 2015): inputs
``[T, 2]`` hold uniform values and two marks, one in each half of the sequence; the target
is the sum of the two marked values. Predicting the mean scores MSE 1/6 = 0.167, the
baseline; a run **solves** the task when the validation MSE falls below 0.01.

Command, one variant (``<cell>[,T=<steps>][,noclip]``, see experiments/gradient_variants.py)::

    rnnlab train --config experiments/adding.py:lstm,T=200 --workdir workdirs/adding/lstm-T200
    rnnlab diagnose --config experiments/adding.py:lstm,T=200 --workdir workdirs/adding/lstm-T200

Cells: ``elman``, ``irnn``, ``lstm``, ``layernorm_lstm``, ``gru``, ``indrnn``,
``orthogonal``, ``lru``; ``T`` in 100, 200, 400 (default 200); gradient clipping by global
norm 1 unless ``noclip``. ``gradient_variants.sweep((100, 200, 400))`` lists all 48 variants.
``experiments/adding.py:small`` (alias ``ci``) is the smoke test (LSTM, T = 20, a few
seconds).

Model: the sequence regressor (``rnnlab.models`` "classifier": stacked cells, the output at
the last step, a linear head), width 128, the depth and Adam learning rate of each cell's
entry in gradient_variants.CELLS; batch 64.

Hardware and budget: 2 cores of an Intel Xeon (Sapphire Rapids), one JAX CPU device. The
budget is ``train.steps = 6000`` updates (384,000 sequences), evaluated every 500 steps on
1,000 validation sequences; at T = 200 one variant takes 5 to 20 minutes of wall time
depending on the cell (Elman fastest, LSTM/LN-LSTM slowest).

Expected result (literature; the measured table goes to experiments/README.md): the LSTM,
GRU, IndRNN and the orthogonal cell solve T = 200 within the budget, the Elman RNN stays near
the baseline of 0.167 (its gradient ``||dL/dh_t||`` vanishes over the first steps, see
``rnnlab diagnose``), IRNN is sensitive to its learning rate.
"""

from __future__ import annotations

import ml_collections

from experiments import gradient_variants as gv
from rnnlab.train.config import base_config, lock

BASELINE_MSE = 1.0 / 6.0
SOLVED_MSE = 0.01
LENGTHS = (100, 200, 400)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """``"<cell>[,T=<steps>][,noclip]"`` (default ``lstm,T=200``) or ``"small"``
    (alias ``"ci"``).
    """
    v = gv.parse(arg, default_t=200)
    if v["ci"]:
        v["T"] = 20
    v["horizon"] = v["T"]
    cell = gv.cell_settings(v["cell"], v["horizon"])

    c = base_config()
    c.seed = 0
    c.data.name = "adding"
    c.data.seq_len = v["T"]

    c.model.name = "classifier"
    c.model.pooling = "last"
    gv.set_training(c, v, cell, steps=6000)
    return lock(c)
