"""The training engine: configs, train state, jitted steps, the loop, checkpoints, logs.

Needs the ``train`` extra (orbax, ml_collections, tensorboardX, matplotlib, tqdm). The
public API::

    from rnnlab import train
    config = train.config.load("experiments/charlm.py:small")
    summary = train.train(config, "workdirs/charlm")        # or resume
    run = train.Run(config, "workdirs/charlm")              # model, data, checkpoints
    state, extra = run.restore(run.checkpoints.best_step())
    metrics = run.evaluate(state, "test")

See docs/training.md.
"""

from rnnlab import tasks
from rnnlab.tasks import Task
from rnnlab.train import callbacks, checkpoint, config, metric_log, plots
from rnnlab.train.callbacks import Callback, StopAtThreshold
from rnnlab.train.config import ConfigError, base_config
from rnnlab.train.early_stopping import EarlyStopping
from rnnlab.train.loop import NonFiniteError, Run, train
from rnnlab.train.state import TrainState
from rnnlab.train.step import make_eval_step, make_train_step

__all__ = [
    "Callback",
    "ConfigError",
    "EarlyStopping",
    "NonFiniteError",
    "Run",
    "StopAtThreshold",
    "Task",
    "TrainState",
    "base_config",
    "callbacks",
    "checkpoint",
    "config",
    "make_eval_step",
    "make_train_step",
    "metric_log",
    "plots",
    "tasks",
    "train",
]
