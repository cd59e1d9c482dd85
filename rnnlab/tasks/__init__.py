"""Task glue between models and the training engine: one module per data task.

A task (the ``task`` field of ``rnnlab.data.info``) says how to score a model's
``(outputs, aux)`` on a batch: weighted sums per metric (:mod:`rnnlab.tasks.common`), metrics
derived from their means on the host, the validation metric to follow, and an end-of-run
report (baselines, decoded examples, figures; :mod:`rnnlab.tasks.evaluation`). Importing
this package registers every built-in task; other code adds its own with :func:`register`.

This is harness code: it sits above :mod:`rnnlab.models` and below :mod:`rnnlab.train`.
"""

# Registration happens on import; each module registers its task(s).
from rnnlab.tasks import (  # noqa: E402, I001
    classification,
    ctc,
    forecast,
    lm,
    regression,
    seq2seq,
    tagging,
    video,
)
from rnnlab.tasks.registry import Task, get, means, names, register

__all__ = [
    "Task",
    "classification",
    "ctc",
    "forecast",
    "get",
    "lm",
    "means",
    "names",
    "regression",
    "register",
    "seq2seq",
    "tagging",
    "video",
]
