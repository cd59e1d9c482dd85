"""Optimisers for recurrent networks, built as one optax chain from plain arguments.

:func:`make` builds the chain (:mod:`rnnlab.optim.chain` gives its order: clipping,
optimizer, weight decay, the learning-rate schedule and its scale, plateau reduction, freezing,
weight averaging, gradient accumulation); every option, with its default and help, is a field
of :class:`Options` (:mod:`rnnlab.optim.options`). The weight averages of NT-ASGD and EMA
(:mod:`rnnlab.optim.averaging`) are optax transformations of their own, usable in any chain.
:mod:`rnnlab.optim.state` reads back from the optimizer state what the engine needs: the
parameters to evaluate (:func:`eval_params`), the recorded norms and learning rate
(:func:`stats`), and the learning-rate scale (:func:`lr_scale`, :func:`set_lr_scale`).

Weight decay uses a mask that spares biases and normalisation scales (every parameter with
fewer than two dimensions, or named ``bias``/``scale``).

Example::

    tx = rnnlab.optim.make(optimizer="adamw", lr=3e-3, weight_decay=0.01, clip_norm=1.0,
                           schedule="cosine", warmup_steps=100, total_steps=10_000)
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
"""

from rnnlab.optim.averaging import (
    AverageIteratesState,
    EmaParamsState,
    average_iterates,
    averaged_params,
    averaging_started,
    ema_params,
    nt_asgd,
    observe_validation,
)
from rnnlab.optim.chain import (
    build,
    decay_mask,
    decoupled_weight_decay,
    frozen_mask,
    lr_schedule,
    make,
    scale_by_scaled_schedule,
    scale_by_schedule_logged,
)
from rnnlab.optim.options import OPTIMIZERS, SCHEDULES, Options, check, defaults, help_strings
from rnnlab.optim.state import eval_params, has_average, lr_scale, set_lr_scale, stats

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "AverageIteratesState",
    "EmaParamsState",
    "Options",
    "average_iterates",
    "averaged_params",
    "averaging_started",
    "build",
    "check",
    "decay_mask",
    "decoupled_weight_decay",
    "defaults",
    "ema_params",
    "eval_params",
    "frozen_mask",
    "has_average",
    "help_strings",
    "lr_scale",
    "lr_schedule",
    "make",
    "nt_asgd",
    "observe_validation",
    "scale_by_scaled_schedule",
    "scale_by_schedule_logged",
    "set_lr_scale",
    "stats",
]
