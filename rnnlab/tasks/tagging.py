"""Sequence tagging (task ``"tagging"``): a class per time step; cross-entropy and accuracy
over the valid steps (``weights`` ``[B, T]`` is 1 on them), and the error rate."""

from __future__ import annotations

from rnnlab.tasks.classification import classification_metrics
from rnnlab.tasks.registry import Task, register

# The per-example classification sums apply unchanged: labels [B, T] against logits
# [B, T, C], weighted by the batch's per-step weights.
register(
    Task(
        "tagging",
        classification_metrics,
        lambda means, info: {"error": 1.0 - means["accuracy"]},
        best_metric="accuracy",
        best_mode="max",
    )
)
