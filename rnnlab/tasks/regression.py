"""Regression (task ``"regression"``, e.g. the adding problem): mean squared and absolute
error per example; ``mse`` and ``rmse``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from rnnlab.tasks.common import Sums, weights
from rnnlab.tasks.registry import Task, register


def regression_metrics(outputs, aux, batch) -> Sums:
    """Per-example mean squared error (``loss``) and mean absolute error (``mae``)."""
    del aux
    targets = batch["targets"].astype(jnp.float32)
    pred = outputs.astype(jnp.float32).reshape(targets.shape)
    w = weights(batch, targets.shape[:1])
    per_example_sq = jnp.mean(jnp.square(pred - targets).reshape(targets.shape[0], -1), axis=-1)
    per_example_abs = jnp.mean(jnp.abs(pred - targets).reshape(targets.shape[0], -1), axis=-1)
    total = jnp.sum(w)
    return {
        "loss": (jnp.sum(per_example_sq * w), total),
        "mae": (jnp.sum(per_example_abs * w), total),
    }


def regression_derive(means: dict[str, float], info: Mapping[str, Any]) -> dict[str, float]:
    del info
    return {"mse": means["loss"], "rmse": math.sqrt(max(means["loss"], 0.0))}


register(Task("regression", regression_metrics, regression_derive))
