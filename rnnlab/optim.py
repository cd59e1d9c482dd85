"""Optimisers for recurrent networks, built as one optax chain from plain arguments.

The chain applied to a gradient ``g`` is, in order::

    record ||g||  ->  clip (global norm | value | adaptive)  ->  record ||clip(g)||
      ->  [L2: g + wd * w]  ->  optimizer (sgd+momentum | adam | rmsprop | nt_asgd)
      ->  [decoupled decay: u + wd * w (adamw)]  ->  * -lr(step)  ->  [* plateau scale]

wrapped by ``optax.multi_transform`` when parameters are frozen, then followed by the
weight average (``nt_asgd``'s iterate average or the ``ema_decay`` average; last, so it
sees the final updates), and wrapped by ``optax.MultiSteps`` for gradient accumulation.
:func:`eval_params` reads the parameters to evaluate back from the state.

Weight decay uses a mask that spares biases and normalisation scales (every parameter with
fewer than two dimensions, or named ``bias``/``scale``).

The recorded norms and the learning rate actually applied live in the optimizer state;
:func:`stats` reads them back (for logging) without re-computing anything.

Example::

    tx = rnnlab.optim.make(optimizer="adamw", lr=3e-3, weight_decay=0.01, clip_norm=1.0,
                           schedule="cosine", warmup_steps=100, total_steps=10_000)
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from rnnlab.parallel.rules import path_to_str
from rnnlab.regularizers import averaging

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Options",
    "build",
    "check",
    "decay_mask",
    "defaults",
    "eval_params",
    "has_average",
    "frozen_mask",
    "make",
    "help_strings",
    "lr_schedule",
    "stats",
]

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "nt_asgd")
SCHEDULES = ("constant", "cosine", "step", "plateau")

# Leaf names that are never decayed even when they have two or more dimensions.
_NO_DECAY_NAMES = frozenset({"bias", "b", "scale", "gamma", "beta", "embedding_bias"})


def _bad(argument: str, expected: str, got: Any) -> ValueError:
    """A ValueError naming the argument; ``.argument`` lets config layers name their key."""
    err = ValueError(f"optim.make: argument {argument!r} expected {expected}, got {got!r}")
    err.argument = argument  # type: ignore[attr-defined]
    return err


def _opt(default: Any, text: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": text})


@dataclasses.dataclass(frozen=True)
class Options:
    """Every option of :func:`build`, with its default and a one-line help: the one place
    they are written (``rnnlab.train.config.base_config`` reads its ``optim`` group here).

    See :func:`build` for what each does and the papers behind them.
    """

    optimizer: str = _opt("adam", f"one of {OPTIMIZERS}")
    lr: float = _opt(1e-3, "peak learning rate (> 0)")
    momentum: float = _opt(0.9, "momentum of sgd and rmsprop, in [0, 1)")
    nesterov: bool = _opt(False, "Nesterov momentum for sgd and rmsprop")
    b1: float = _opt(0.9, "Adam's first-moment decay, in [0, 1)")
    b2: float = _opt(0.999, "Adam's second-moment decay, in [0, 1)")
    eps: float = _opt(1e-8, "Adam/RMSProp denominator offset (> 0 for adaptive optimizers)")
    decay: float = _opt(0.9, "RMSProp's squared-gradient decay, in [0, 1)")
    weight_decay: float = _opt(0.0, "decoupled decay for adamw, an L2 penalty otherwise (0: off)")
    clip_norm: float = _opt(0.0, "clip the gradient to this global norm (0: off)")
    clip_value: float = _opt(0.0, "clip every gradient element to [-c, c] (0: off)")
    clip_adaptive: float = _opt(0.0, "adaptive unit-wise clipping ratio (0: off)")
    schedule: str = _opt("constant", f"learning-rate schedule, one of {SCHEDULES}")
    warmup_steps: int = _opt(0, "linear warm-up steps before the schedule")
    total_steps: int = _opt(0, "length of the cosine schedule (0 in a run config: train.steps)")
    final_lr_fraction: float = _opt(0.0, "cosine: final learning rate as a fraction of lr")
    decay_every: int = _opt(0, "step schedule: steps between decays")
    decay_factor: float = _opt(0.1, "step schedule: factor applied at each decay, in (0, 1]")
    plateau_factor: float = _opt(0.5, "plateau: factor applied at each reduction, in (0, 1)")
    plateau_patience: int = _opt(10, "plateau: observations without improvement to reduce")
    plateau_accumulation: int = _opt(50, "plateau: updates averaged into one observation")
    plateau_rtol: float = _opt(1e-4, "plateau: relative improvement that counts")
    plateau_cooldown: int = _opt(0, "plateau: observations to wait after a reduction")
    plateau_min_scale: float = _opt(0.0, "plateau: smallest scale of the learning rate")
    accumulate_steps: int = _opt(1, "average gradients over this many steps per update")
    freeze: tuple[str, ...] = _opt((), "regexes on parameter paths that get no updates")
    nonmono: int = _opt(5, "nt_asgd: validations worse than the best before averaging")
    ema_decay: float = _opt(0.0, "> 0: evaluate on an EMA of the weights with this decay")


def defaults() -> dict[str, Any]:
    """``{option: default}`` for every option of :func:`build`."""
    return {f.name: f.default for f in dataclasses.fields(Options)}


def help_strings() -> dict[str, str]:
    """``{option: one-line help}`` for every option of :func:`build`."""
    return {f.name: f.metadata["help"] for f in dataclasses.fields(Options)}


def check(**kwargs: Any) -> Options:
    """The :class:`Options` of ``kwargs`` (defaults for the rest), validated.

    Raises:
      TypeError: an unknown option (the message names the closest one).
      ValueError: an impossible value; its ``.argument`` names the option.
    """
    known = defaults()
    for name in kwargs:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"optim: unknown option {name!r}{hint}")
    if "freeze" in kwargs:
        kwargs = {**kwargs, "freeze": tuple(kwargs["freeze"])}
    options = Options(**kwargs)
    _check(dataclasses.asdict(options))
    return options


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
        raise _bad("schedule", f"one of {SCHEDULES}", schedule)
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


def scale_by_schedule_logged(lr_fn: optax.Schedule) -> optax.GradientTransformation:
    """``u -> -lr(count) * u`` keeping ``lr(count)`` in the state so it can be logged."""

    def init(params):
        del params
        return LearningRateState(jnp.zeros((), jnp.int32), jnp.asarray(lr_fn(0), jnp.float32))

    def update(updates, state, params=None):
        del params
        lr = jnp.asarray(lr_fn(state.count), jnp.float32)
        updates = jax.tree.map(lambda u: (-lr).astype(u.dtype) * u, updates)
        return updates, LearningRateState(optax.safe_increment(state.count), lr)

    return optax.GradientTransformation(init, update)


def _check(kw: dict[str, Any]) -> None:
    """Raises a ValueError naming the first argument with an impossible value."""

    def finite(x):
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

    if kw["optimizer"] not in OPTIMIZERS:
        raise _bad("optimizer", f"one of {OPTIMIZERS}", kw["optimizer"])
    if kw["schedule"] not in SCHEDULES:
        raise _bad("schedule", f"one of {SCHEDULES}", kw["schedule"])
    if not finite(kw["lr"]) or kw["lr"] <= 0:
        raise _bad("lr", "a positive finite number", kw["lr"])
    for name in ("momentum", "b1", "b2", "decay"):
        if not finite(kw[name]) or not 0 <= kw[name] < 1:
            raise _bad(name, "a number in [0, 1)", kw[name])
    for name in ("eps", "weight_decay", "clip_norm", "clip_value", "clip_adaptive"):
        if not finite(kw[name]) or kw[name] < 0:
            raise _bad(name, "a finite number >= 0 (0 switches it off)", kw[name])
    if kw["eps"] == 0 and kw["optimizer"] not in ("sgd", "nt_asgd"):
        raise _bad("eps", "a positive number for adaptive optimizers", kw["eps"])
    for name in ("warmup_steps", "total_steps", "decay_every"):
        if not isinstance(kw[name], int) or kw[name] < 0:
            raise _bad(name, "an integer >= 0", kw[name])
    if not isinstance(kw["accumulate_steps"], int) or kw["accumulate_steps"] < 1:
        raise _bad("accumulate_steps", "an integer >= 1", kw["accumulate_steps"])
    if not 0 <= kw["final_lr_fraction"] <= 1:
        raise _bad("final_lr_fraction", "a number in [0, 1]", kw["final_lr_fraction"])
    if kw["schedule"] == "cosine" and kw["total_steps"] <= kw["warmup_steps"]:
        raise _bad(
            "total_steps",
            f"more than warmup_steps={kw['warmup_steps']} for the cosine schedule",
            kw["total_steps"],
        )
    if kw["schedule"] == "step" and kw["decay_every"] <= 0:
        raise _bad("decay_every", "a positive integer for the step schedule", kw["decay_every"])
    if not 0 < kw["decay_factor"] <= 1:
        raise _bad("decay_factor", "a number in (0, 1]", kw["decay_factor"])
    if not 0 < kw["plateau_factor"] < 1:
        raise _bad("plateau_factor", "a number in (0, 1)", kw["plateau_factor"])
    for name in ("plateau_patience", "plateau_accumulation"):
        if not isinstance(kw[name], int) or kw[name] < 1:
            raise _bad(name, "an integer >= 1", kw[name])
    nonmono = kw["nonmono"]
    if isinstance(nonmono, bool) or not isinstance(nonmono, int) or nonmono < 1:
        raise _bad("nonmono", "an integer >= 1", nonmono)
    if not finite(kw["ema_decay"]) or not 0 <= kw["ema_decay"] < 1:
        raise _bad("ema_decay", "a number in [0, 1) (0 switches it off)", kw["ema_decay"])
    if kw["ema_decay"] > 0 and kw["optimizer"] == "nt_asgd":
        raise _bad("ema_decay", "0 with nt_asgd, which keeps its own average", kw["ema_decay"])
    if kw["optimizer"] == "adamw" and kw["weight_decay"] <= 0:
        raise _bad("weight_decay", "a positive number for adamw (or use adam)", kw["weight_decay"])
    for pattern in kw["freeze"]:
        try:
            re.compile(pattern)
        except re.error as e:
            raise _bad("freeze", "regular expressions", pattern) from e


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
        :func:`rnnlab.regularizers.average_iterates`; evaluate on :func:`eval_params`).
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
        :func:`rnnlab.regularizers.observe_validation`) worse than the best one logged more
        than ``nonmono`` validations earlier.
      ema_decay: > 0 keeps ``a = ema_decay * a + (1 - ema_decay) * w`` of the parameters
        after each update (:func:`rnnlab.regularizers.ema_params`); not with ``nt_asgd``.
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
    parts.append(scale_by_schedule_logged(lr_fn))
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
