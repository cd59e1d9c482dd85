"""What the training engine reads from, and writes into, the optimizer state of
:func:`rnnlab.optim.make`: the weight average to evaluate, the recorded norms and learning
rate (for logging), and the learning-rate scale."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from rnnlab.optim import averaging


def has_average(opt_state: Any) -> bool:
    """Whether ``opt_state`` keeps a weight average (``nt_asgd`` or ``ema_decay`` > 0)."""
    kinds = (averaging.AverageIteratesState, averaging.EmaParamsState)
    leaves = jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, kinds))
    return any(isinstance(x, kinds) for x in leaves)


def eval_params(opt_state: Any, params: Any) -> Any:
    """The parameters to evaluate, checkpoint as "best" and sample from: the weight average
    kept in ``opt_state`` (for ``nt_asgd`` only once averaging has started), else
    ``params``. Works inside ``jit``."""
    if not has_average(opt_state):
        return params
    return averaging.averaged_params(opt_state, params)


def stats(opt_state: Any) -> dict[str, jax.Array]:
    """What the last update did: ``grad_norm`` (before clipping), ``clipped_grad_norm``,
    ``lr`` (including any plateau reduction). Works inside ``jit``.

    With gradient accumulation the values are those of the last real update.
    """

    def field(name: str, owner: str):
        def only_owner(path, value):
            del value
            last = path[-1] if path else None
            return isinstance(last, optax.tree_utils.NamedTupleKey) and last.tuple_name == owner

        return optax.tree_utils.tree_get(opt_state, name, filtering=only_owner)

    out = {}
    pre = field("grad_norm", "GradNormState")
    post = field("clipped_grad_norm", "ClippedGradNormState")
    lr = field("learning_rate", "LearningRateState")
    scale = field("scale", "ReduceLROnPlateauState")
    if pre is not None:
        out["grad_norm"] = pre
    if post is not None:
        out["clipped_grad_norm"] = post
    if lr is not None:
        out["lr"] = lr * scale if scale is not None else lr
    return out


# The hyperparameter of the chain's learning-rate transform (chain.scale_by_scaled_schedule).
LR_SCALE = "lr_scale"


def _holds_scale(x: Any) -> bool:
    return isinstance(x, optax.InjectStatefulHyperparamsState) and LR_SCALE in x.hyperparams


def lr_scale(opt_state: Any) -> jax.Array | None:
    """The learning-rate scale held in ``opt_state`` (1 until :func:`set_lr_scale`), or
    ``None`` for a state of a chain without one."""
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=_holds_scale) if _holds_scale(s)]
    return found[0].hyperparams[LR_SCALE] if found else None


def set_lr_scale(opt_state: Any, scale: float | jax.Array) -> Any:
    """``opt_state`` with its learning-rate scale set to ``scale``: every later update is
    ``-lr(step) * scale * u`` (times any plateau reduction). Pure; works inside ``jit``.

    Raises:
      ValueError: the state holds no learning-rate scale (not a state of
        :func:`rnnlab.optim.make`).
    """
    if lr_scale(opt_state) is None:
        raise ValueError("set_lr_scale: opt_state holds no lr_scale (not from rnnlab.optim.make)")

    def put(s: Any) -> Any:
        if not _holds_scale(s):
            return s
        value = jnp.asarray(scale, s.hyperparams[LR_SCALE].dtype)
        return s._replace(hyperparams={**s.hyperparams, LR_SCALE: value})

    return jax.tree.map(put, opt_state, is_leaf=_holds_scale)
