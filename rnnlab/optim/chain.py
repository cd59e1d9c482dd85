"""The optimizer chain built from plain arguments (:func:`build`, :func:`make`).

The chain applied to a gradient ``g`` is, in order::

    record ||g||  ->  clip (global norm | value | adaptive)  ->  record ||clip(g)||
      ->  [L2: g + wd * w]  ->  optimizer (sgd+momentum | adam | rmsprop | nt_asgd)
      ->  [decoupled decay: u + wd * w (adamw)]  ->  * -lr(step) * lr_scale
      ->  [* plateau scale]

wrapped by ``optax.multi_transform`` when parameters are frozen, then followed by the
weight average (``nt_asgd``'s iterate average or the ``ema_decay`` average; last, so it
sees the final updates), and wrapped by ``optax.MultiSteps`` for gradient accumulation.

``lr_scale`` is a hyperparameter held in the optimizer state (``optax.inject_hyperparams``,
1 at initialisation): the training engine lowers it after restoring a checkpoint with
:func:`rnnlab.optim.set_lr_scale`, without rebuilding the chain or compiling the step again.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from rnnlab.optim import averaging
from rnnlab.optim.options import SCHEDULES, argument_error, check
from rnnlab.parallel.rules import path_to_str

# Leaf names that are never decayed even when they have two or more dimensions.
_NO_DECAY_NAMES = frozenset({"bias", "b", "scale", "gamma", "beta", "embedding_bias"})


def decay_mask(params: Any) -> Any:
    """True for every leaf that weight decay should act on.

    Decayed: matrices and higher-rank kernels (including embeddings). Spared: biases,
    normalisation gains/offsets and any other vector or scalar, plus leaves named in
    ``bias``/``scale``/``gamma``/``beta`` whatever their rank.
    """

    def keep(path, leaf):
        name = path_to_str(path).rsplit("/", 1)[-1]
        return bool(jnp.ndim(leaf) >= 2 and name not in _NO_DECAY_NAMES)

    return jax.tree_util.tree_map_with_path(keep, params)


def frozen_mask(params: Any, patterns: Sequence[str]) -> Any:
    """True for every leaf whose path (``'a/b/kernel'``) matches one of the regexes."""
    compiled = [re.compile(p) for p in patterns]

    def frozen(path, _):
        text = path_to_str(path)
        return any(c.search(text) for c in compiled)

    return jax.tree_util.tree_map_with_path(frozen, params)


def lr_schedule(
    *,
    lr: float,
    schedule: str = "constant",
    warmup_steps: int = 0,
    total_steps: int = 0,
    final_lr_fraction: float = 0.0,
    decay_every: int = 0,
    decay_factor: float = 0.1,
) -> optax.Schedule:
    """The learning rate as a function of the optimizer step.

    - ``warmup_steps`` > 0: linear warm-up ``lr * t / warmup_steps`` for ``t < warmup_steps``
      (Goyal et al. 2017), then the main schedule with its own clock ``s = t - warmup_steps``.
    - ``constant`` (and ``plateau``, whose reductions are applied by a separate transform):
      ``lr``.
    - ``cosine`` (Loshchilov & Hutter 2017, without restarts):
      ``lr * (a + (1 - a) * (1 + cos(pi * s / S)) / 2)`` with ``S = total_steps -
      warmup_steps`` and ``a = final_lr_fraction``; constant ``a * lr`` after ``S``.
    - ``step``: ``lr * decay_factor ** floor(s / decay_every)``.
    """
    if schedule in ("constant", "plateau"):
        main = optax.constant_schedule(lr)
    elif schedule == "cosine":
        main = optax.cosine_decay_schedule(
            lr, decay_steps=total_steps - warmup_steps, alpha=final_lr_fraction
        )
    elif schedule == "step":
        main = optax.exponential_decay(
            lr, transition_steps=decay_every, decay_rate=decay_factor, staircase=True
        )
    else:
        raise argument_error("schedule", f"one of {SCHEDULES}", schedule)
    if warmup_steps <= 0:
        return main
    warm = optax.linear_schedule(0.0, lr, warmup_steps)
    return optax.join_schedules([warm, main], [warmup_steps])


class GradNormState(NamedTuple):
    """Global norm of the gradient as it entered the chain (before clipping)."""

    grad_norm: jax.Array


class ClippedGradNormState(NamedTuple):
    """Global norm of the gradient after clipping."""

    clipped_grad_norm: jax.Array


class LearningRateState(NamedTuple):
    """Optimizer step count and the learning rate applied at the last update."""

    count: jax.Array
    learning_rate: jax.Array


def _record_norm(state_cls: type) -> optax.GradientTransformation:
    """Identity on the updates; stores their global norm in the state (for logging)."""

    def init(params):
        del params
        return state_cls(jnp.zeros((), jnp.float32))

    def update(updates, state, params=None):
        del params, state
        norm = optax.tree.norm(updates).astype(jnp.float32)
        return updates, state_cls(norm)

    return optax.GradientTransformation(init, update)


def scale_by_schedule_logged(
    lr_fn: optax.Schedule, lr_scale: float | jax.Array = 1.0
) -> optax.GradientTransformation:
    """``u -> -lr(count) * lr_scale * u`` keeping the learning rate applied in the state so
    it can be logged. A scale of 1 leaves every update bit for bit as without it."""

    def init(params):
        del params
        lr = jnp.asarray(lr_fn(0), jnp.float32) * lr_scale
        return LearningRateState(jnp.zeros((), jnp.int32), lr)

    def update(updates, state, params=None):
        del params
        lr = jnp.asarray(lr_fn(state.count), jnp.float32) * lr_scale
        updates = jax.tree.map(lambda u: (-lr).astype(u.dtype) * u, updates)
        return updates, LearningRateState(optax.safe_increment(state.count), lr)

    return optax.GradientTransformation(init, update)


def scale_by_scaled_schedule(lr_fn: optax.Schedule) -> optax.GradientTransformationExtraArgs:
    """:func:`scale_by_schedule_logged` with ``lr_scale`` (float32, 1 at first) held in the
    optimizer state by ``optax.inject_hyperparams``, where :func:`rnnlab.optim.set_lr_scale`
    changes it without building a new chain (so a jitted step is not compiled again)."""
    inject = optax.inject_hyperparams(
        scale_by_schedule_logged, static_args="lr_fn", hyperparam_dtype=jnp.float32
    )
    return inject(lr_fn=lr_fn, lr_scale=1.0)


def decoupled_weight_decay(
    weight_decay: float, mask: Any | Callable[[Any], Any] | None = None
) -> optax.GradientTransformation:
    """Decoupled weight decay ``u <- u + lambda * w`` on masked leaves (Loshchilov & Hutter
    2019).

    Place it after the optimizer's scaling and before the learning rate (as in AdamW), so
    the decay is not rescaled by adaptive moments. ``mask`` as in
    :func:`rnnlab.regularizers.l2_penalty`; :func:`decay_mask` spares biases and
    normalisation scales.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    return optax.add_decayed_weights(weight_decay, mask)


def make(**kwargs: Any) -> optax.GradientTransformationExtraArgs:
    """Builds the optimizer chain; see :func:`build` for the arguments.

    Equal arguments return the same (immutable, stateless) transformation object, so that
    jitted steps built on it compile once per process however often a run is rebuilt.
    """
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
    try:
        return _make_cached(key)
    except TypeError:  # an unhashable argument (e.g. a mask closure over a dict)
        return build(**kwargs)


@functools.lru_cache(maxsize=64)
def _make_cached(key: tuple) -> optax.GradientTransformationExtraArgs:
    return build(**dict(key))


def build(
    *, mask: Callable[[Any], Any] | None = None, **options: Any
) -> optax.GradientTransformationExtraArgs:
    """Builds the optimizer chain (see the module docstring for the order).

    Every option and its default is a field of :class:`Options`; :func:`check` validates
    them (the engine's config check calls it without building the chain).

    Args:
      optimizer: ``sgd`` (heavy-ball or Nesterov momentum; ``momentum=0`` is plain SGD),
        ``adam`` (Kingma & Ba 2015), ``adamw`` (Loshchilov & Hutter 2019: decay decoupled
        from the adaptive scaling), ``rmsprop`` (Tieleman & Hinton 2012; ``momentum`` > 0
        adds momentum on top) or ``nt_asgd`` (Merity et al. 2017: plain SGD, ``momentum``
        unused, whose iterates are averaged uniformly from the non-monotone trigger on, see
        :func:`rnnlab.optim.average_iterates`; evaluate on :func:`eval_params`).
      lr: peak learning rate (> 0).
      momentum, nesterov: momentum of ``sgd``/``rmsprop``.
      b1, b2, eps: Adam moments; ``decay``/``eps`` for RMSProp.
      weight_decay: for ``adamw`` decoupled decay ``u + wd * w`` after the adaptive
        scaling; for the other optimizers an L2 penalty ``g + wd * w`` before it. Masked by
        ``mask(params)`` (default :func:`decay_mask`).
      clip_norm: clip by global norm, ``g * min(1, c / ||g||)`` (Pascanu et al. 2013).
      clip_value: clip every element to ``[-c, c]``.
      clip_adaptive: adaptive gradient clipping, unit-wise ``||g|| <= c * max(||w||, 1e-3)``
        (Brock et al. 2021). The three may be combined, applied in this order.
      schedule, warmup_steps, total_steps, final_lr_fraction, decay_every, decay_factor:
        the learning-rate schedule, see :func:`lr_schedule`.
      plateau_*: for ``schedule='plateau'``, ``optax.contrib.reduce_on_plateau`` on the loss
        passed as ``value=`` to ``update``: the mean over ``plateau_accumulation`` updates is
        one observation; after ``plateau_patience`` observations without relative
        improvement ``plateau_rtol`` the scale is multiplied by ``plateau_factor``.
      accumulate_steps: average gradients over this many calls and update on the last
        (``optax.MultiSteps``); the schedule counts real updates.
      freeze: regexes on parameter paths (``'embed/embedding'``); matching leaves get zero
        updates and no optimizer state.
      nonmono: for ``nt_asgd``, averaging starts at the first validation loss (fed with
        :func:`rnnlab.optim.observe_validation`) worse than the best one logged more
        than ``nonmono`` validations earlier.
      ema_decay: > 0 keeps ``a = ema_decay * a + (1 - ema_decay) * w`` of the parameters
        after each update (:func:`rnnlab.optim.ema_params`); not with ``nt_asgd``.
      mask: replaces :func:`decay_mask`.

    Returns:
      A ``GradientTransformationExtraArgs``; pass ``value=loss`` to ``update`` (needed by
      the plateau schedule, ignored otherwise).
    """
    o = check(**options)
    lr_fn = lr_schedule(
        lr=o.lr,
        schedule=o.schedule,
        warmup_steps=o.warmup_steps,
        total_steps=o.total_steps,
        final_lr_fraction=o.final_lr_fraction,
        decay_every=o.decay_every,
        decay_factor=o.decay_factor,
    )
    wd_mask = mask or decay_mask
    parts: list[optax.GradientTransformation] = [_record_norm(GradNormState)]
    if o.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(o.clip_norm))
    if o.clip_value > 0:
        parts.append(optax.clip(o.clip_value))
    if o.clip_adaptive > 0:
        parts.append(optax.adaptive_grad_clip(o.clip_adaptive))
    parts.append(_record_norm(ClippedGradNormState))
    if o.weight_decay > 0 and o.optimizer != "adamw":
        parts.append(optax.add_decayed_weights(o.weight_decay, mask=wd_mask))
    if o.optimizer == "sgd":
        if o.momentum > 0:
            parts.append(optax.trace(decay=o.momentum, nesterov=o.nesterov))
    elif o.optimizer in ("adam", "adamw"):
        parts.append(optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps))
    elif o.optimizer == "rmsprop":
        parts.append(optax.scale_by_rms(decay=o.decay, eps=o.eps))
        if o.momentum > 0:
            parts.append(optax.trace(decay=o.momentum, nesterov=o.nesterov))
    if o.optimizer == "adamw":
        parts.append(optax.add_decayed_weights(o.weight_decay, mask=wd_mask))
    parts.append(scale_by_scaled_schedule(lr_fn))
    if o.schedule == "plateau":
        parts.append(
            optax.contrib.reduce_on_plateau(
                factor=o.plateau_factor,
                patience=o.plateau_patience,
                rtol=o.plateau_rtol,
                cooldown=o.plateau_cooldown,
                accumulation_size=o.plateau_accumulation,
                min_scale=o.plateau_min_scale,
            )
        )
    tx = optax.chain(*parts)
    if o.freeze:
        patterns = tuple(o.freeze)

        def labels(params):
            frozen = frozen_mask(params, patterns)
            return jax.tree.map(lambda f: "frozen" if f else "train", frozen)

        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
    # Outside the freeze split, so the average holds every parameter (frozen ones stay put);
    # inside MultiSteps, so it counts real updates only.
    if o.optimizer == "nt_asgd":
        tx = optax.chain(tx, averaging.average_iterates(o.nonmono))
    elif o.ema_decay > 0:
        tx = optax.chain(tx, averaging.ema_params(o.ema_decay))
    if o.accumulate_steps > 1:
        # Not .gradient_transformation(): that wrapper would drop the `value` argument.
        multi = optax.MultiSteps(tx, every_k_schedule=o.accumulate_steps)
        tx = optax.GradientTransformationExtraArgs(multi.init, multi.update)
    return _standard_promotion(optax.with_extra_args_support(tx))


def _standard_promotion(
    tx: optax.GradientTransformationExtraArgs,
) -> optax.GradientTransformationExtraArgs:
    """Runs ``tx`` under JAX's standard dtype promotion.

    optax mixes Python floats with int32 step counts (``b1 ** count``), which programs
    that turn on ``jax_numpy_dtype_promotion='strict'`` (as rnnlab's tests do) reject.
    """

    def init(params):
        with jax.numpy_dtype_promotion("standard"):
            return tx.init(params)

    def update(updates, state, params=None, **extra_args):
        with jax.numpy_dtype_promotion("standard"):
            return tx.update(updates, state, params, **extra_args)

    return optax.GradientTransformationExtraArgs(init, update)
