"""Pure step functions: one update (``train_step``) and one evaluation batch (``eval_step``).

Both are built from static parts (the model's ``graphdef``, the optimizer, the task) and
then jitted by the loop with shardings on the mesh and the state donated. The builders are
memoised: equal parts give the same function, which JAX then compiles once per process.
Randomness is ``fold_in(base_key, step)``, so a resumed run draws the same numbers as an
uninterrupted one.

A non-finite loss or gradient skips the update: parameters, optimizer state, model
variables and the carried state keep their previous values, the step still advances (the
data moves on) and the counters ``nonfinite`` (consecutive) and ``nonfinite_total`` grow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from rnnlab import optim
from rnnlab.tasks import Task
from rnnlab.train.state import TrainState

Array = jax.Array


def _all_finite(tree: Any) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _select(pred: Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def largest_gradient(grads: Any) -> tuple[Array, Array]:
    """``(value, leaf index)`` of the largest ``|g|`` over all leaves, a NaN counting as
    larger than anything: what a non-finite report names (``jax.tree.leaves`` order)."""
    leaves = jax.tree.leaves(grads)
    if not leaves:
        return jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)
    peaks = jnp.stack([jnp.max(jnp.abs(g)).astype(jnp.float32) for g in leaves])
    leaf = jnp.argmax(jnp.where(jnp.isnan(peaks), jnp.inf, peaks))
    return peaks[leaf], leaf.astype(jnp.float32)


def apply_model(
    graphdef: nnx.GraphDef,
    params: Any,
    rest: Any,
    batch: Mapping[str, Array],
    *,
    train: bool,
    key: Array | None,
    carry: Any,
) -> tuple[Any, dict[str, Any], Any]:
    """Runs the model functionally in NNX training or evaluation mode (``model.train()`` /
    ``model.eval()``: dropout, zoneout, batch statistics): ``(outputs, aux, new_rest)``.
    In training, updated batch statistics come back in ``new_rest``."""
    model = nnx.merge(graphdef, params, rest)
    if train:
        model.train()
    else:
        model.eval()
    rngs = nnx.Rngs(key) if key is not None else None
    outputs, aux = model(batch, rngs=rngs, carry=carry)
    _, _, new_rest = nnx.split(model, nnx.Param, ...)
    return outputs, aux, nnx.to_pure_dict(new_rest)


@functools.lru_cache(maxsize=32)
def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    task: Task,
    *,
    stateful: bool,
) -> Callable[[TrainState, Mapping[str, Array]], tuple[TrainState, dict[str, Array]]]:
    """``train_step(state, batch) -> (state, metrics)``; metrics are device scalars.

    Metrics: ``loss`` (the task's), each ``aux["losses"]`` term, ``objective`` (their sum,
    what is minimised) when there are such terms, the task's other metrics (batch means),
    ``grad_norm`` (before clipping), ``clipped_grad_norm``, ``clipped`` (1 when clipping
    changed the gradient), ``lr``, ``nonfinite`` (1 for a skipped update), ``grad_max`` and
    ``grad_max_leaf`` (:func:`largest_gradient`).
    """

    def loss_fn(params, state: TrainState, batch, key):
        carry = state.carry if stateful else None
        outputs, aux, rest = apply_model(
            graphdef, params, state.rest, batch, train=True, key=key, carry=carry
        )
        sums = task.metrics(outputs, aux, batch)
        metrics = {k: s / jnp.maximum(w, 1e-12) for k, (s, w) in sums.items()}
        extra = {k: jnp.asarray(v, jnp.float32) for k, v in dict(aux.get("losses", {})).items()}
        objective = metrics["loss"] + sum(extra.values(), jnp.zeros((), jnp.float32))
        metrics.update(extra)
        if extra:
            metrics["objective"] = objective
        new_carry = jax.lax.stop_gradient(aux["carry"]) if stateful else None
        return objective, (metrics, rest, new_carry)

    def train_step(state: TrainState, batch: Mapping[str, Array]):
        key = state.key()
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (objective, (metrics, rest, carry)), grads = grad_fn(state.params, state, batch, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params, value=objective)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(objective) & _all_finite(grads)
        nonfinite = jnp.where(finite, 0, state.nonfinite + 1).astype(jnp.int32)
        new_state = state.replace(
            step=state.step + 1,
            params=_select(finite, params, state.params),
            rest=_select(finite, rest, state.rest),
            opt_state=_select(finite, opt_state, state.opt_state),
            carry=_select(finite, carry, state.carry) if stateful else state.carry,
            nonfinite=nonfinite,
            nonfinite_total=state.nonfinite_total + (1 - finite.astype(jnp.int32)),
        )
        stats = optim.stats(new_state.opt_state)
        metrics["grad_norm"] = optax.tree.norm(grads).astype(jnp.float32)
        if "clipped_grad_norm" in stats:
            metrics["clipped_grad_norm"] = stats["clipped_grad_norm"]
            metrics["clipped"] = (
                stats["clipped_grad_norm"] < stats["grad_norm"] * (1 - 1e-6)
            ).astype(jnp.float32)
        if "lr" in stats:
            metrics["lr"] = stats["lr"]
        metrics["nonfinite"] = 1.0 - finite.astype(jnp.float32)
        metrics["grad_max"], metrics["grad_max_leaf"] = largest_gradient(grads)
        return new_state, metrics

    return train_step


@functools.lru_cache(maxsize=32)
def make_eval_step(
    graphdef: nnx.GraphDef, task: Task, *, stateful: bool
) -> Callable[..., tuple[dict[str, Array], Any]]:
    """``eval_step(params, rest, carry, batch) -> (sums, carry)``: weighted sums per metric
    (``[2]`` arrays of sum and weight) and the carry for the next batch of a stream."""

    def eval_step(params, rest, carry, batch):
        outputs, aux, _ = apply_model(
            graphdef, params, rest, batch, train=False, key=None, carry=carry if stateful else None
        )
        sums = task.metrics(outputs, aux, batch)
        for name, value in dict(aux.get("losses", {})).items():
            sums.setdefault(name, (jnp.asarray(value, jnp.float32), jnp.ones((), jnp.float32)))
        out = {
            k: jnp.stack([s.astype(jnp.float32), w.astype(jnp.float32)])
            for k, (s, w) in sums.items()
        }
        return out, (aux["carry"] if stateful else carry)

    return eval_step
