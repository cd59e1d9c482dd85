"""Weight averaging as optax transformations.

* :func:`ema_params`: exponential moving average of the parameters (Polyak & Juditsky 1992
  style averaging with exponential weights).
* :func:`average_iterates`: the uniform average of the iterates since a trigger, with the
  non-monotone trigger of NT-ASGD (Merity et al. 2017); :func:`nt_asgd` is the complete
  AWD-LSTM optimiser (SGD + averaging).

The averaging transforms pass updates through unchanged and keep the average in their
state; place them **last** in a chain, after the learning rate is applied, so they see the
final updates. :func:`averaged_params` reads the average back for evaluation and
:func:`observe_validation` feeds validation losses to the NT-ASGD trigger. Both find the
state anywhere inside a nested chain, so they also work on the state of
``rnnlab.optim.make(...)`` chained with these.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
Params = Any


class EmaParamsState(NamedTuple):
    """State of :func:`ema_params`: the running average and the number of updates."""

    count: Array
    average: Params


class AverageIteratesState(NamedTuple):
    """State of :func:`average_iterates`.

    ``started``: averaging is on; ``count``: iterates averaged since then; ``recent``: the
    last ``nonmono`` validation losses (ring buffer); ``best_old``: the best loss logged
    before those; ``num_logs``: losses observed so far.
    """

    started: Array
    count: Array
    average: Params
    recent: Array
    best_old: Array
    num_logs: Array


def _require_params(params, name):
    if params is None:
        raise ValueError(f"{name} needs params: call tx.update(updates, state, params)")


def ema_params(decay: float) -> optax.GradientTransformation:
    """Keeps ``a_k = decay * a_{k-1} + (1 - decay) * w_k`` of the parameters ``w_k``.

    ``a_0`` is the initial parameters, so no bias correction is needed. Evaluate with
    ``averaged_params(opt_state, params)``.

    Args:
      decay: in ``[0, 1)``; ``0.999`` averages over roughly the last 1000 steps.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay!r}")

    def init(params):
        return EmaParamsState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.array, params))

    def update(updates, state, params=None):
        _require_params(params, "ema_params")
        new = optax.apply_updates(params, updates)
        avg = jax.tree.map(
            lambda a, w: (decay * a + (1.0 - decay) * w).astype(a.dtype), state.average, new
        )
        return updates, EmaParamsState(state.count + 1, avg)

    return optax.GradientTransformation(init, update)


def average_iterates(nonmono: int | None = 5) -> optax.GradientTransformation:
    """Uniform average of the iterates since averaging started (ASGD; Polyak & Juditsky 1992).

    .. math:: \\bar w_k = \\frac{1}{k} \\sum_{j=1}^{k} w_{T + j}

    where ``T`` is the step at which averaging started. With ``nonmono=None`` it starts at
    once. Otherwise it starts at the first :func:`observe_validation` whose loss is worse
    than the best loss logged more than ``nonmono`` observations earlier: the non-monotone
    trigger of NT-ASGD (Merity et al. 2017, Algorithm 1), ``t > n and v > min(logs[:-n])``.
    """
    if nonmono is not None and (
        isinstance(nonmono, bool) or not isinstance(nonmono, int) or nonmono < 1
    ):
        raise ValueError(f"nonmono must be a positive int or None, got {nonmono!r}")

    def init(params):
        return AverageIteratesState(
            started=jnp.asarray(nonmono is None),
            count=jnp.zeros((), jnp.int32),
            average=jax.tree.map(jnp.array, params),
            recent=jnp.full((nonmono or 1,), jnp.inf, jnp.float32),
            best_old=jnp.asarray(jnp.inf, jnp.float32),
            num_logs=jnp.zeros((), jnp.int32),
        )

    def update(updates, state, params=None):
        _require_params(params, "average_iterates")
        new = optax.apply_updates(params, updates)
        count = jnp.where(state.started, state.count + 1, state.count)
        # Running mean: avg += (w - avg) / k; before the start the average tracks w.
        inv = jnp.where(state.started, 1.0 / jnp.maximum(count, 1).astype(jnp.float32), 1.0)
        avg = jax.tree.map(
            lambda a, w: (a + (w - a) * inv.astype(a.dtype)).astype(a.dtype), state.average, new
        )
        return updates, state._replace(count=count, average=avg)

    return optax.GradientTransformation(init, update)


def _observe(state: AverageIteratesState, value: Array) -> AverageIteratesState:
    n = state.recent.shape[0]
    value = jnp.asarray(value, jnp.float32)
    trigger = (state.num_logs > n) & (value > state.best_old)
    slot = state.num_logs % n
    # The entry leaving the window joins the "older than n" set only once the window is full.
    leaving = jnp.where(state.num_logs >= n, state.recent[slot], jnp.inf)
    return state._replace(
        started=state.started | trigger,
        recent=state.recent.at[slot].set(value),
        best_old=jnp.minimum(state.best_old, leaving),
        num_logs=state.num_logs + 1,
    )


def _is_avg(x) -> bool:
    return isinstance(x, AverageIteratesState | EmaParamsState)


def observe_validation(opt_state: Any, value: float | Array) -> Any:
    """Feeds one validation loss to every NT-ASGD trigger inside ``opt_state``.

    Call after each evaluation; returns the new optimizer state (pure and jittable).
    """
    return jax.tree.map(
        lambda s: _observe(s, value) if isinstance(s, AverageIteratesState) else s,
        opt_state,
        is_leaf=_is_avg,
    )


def averaging_started(opt_state: Any) -> Array:
    """Whether the (first) averaging state in ``opt_state`` is averaging yet."""
    state = _find(opt_state)
    return state.started if isinstance(state, AverageIteratesState) else jnp.asarray(True)


def _find(opt_state):
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=_is_avg) if _is_avg(s)]
    if not found:
        raise ValueError("opt_state holds no ema_params or average_iterates state")
    return found[0]


def averaged_params(opt_state: Any, params: Params) -> Params:
    """The parameters to evaluate: the average kept in ``opt_state``.

    For :func:`average_iterates` before averaging has started (or before its first step),
    this is ``params`` itself.
    """
    state = _find(opt_state)
    if isinstance(state, EmaParamsState):
        return state.average
    use_avg = state.started & (state.count > 0)
    return jax.tree.map(lambda a, w: jnp.where(use_avg, a, w), state.average, params)


def nt_asgd(
    learning_rate: float | optax.Schedule, *, nonmono: int = 5, weight_decay: float = 0.0
) -> optax.GradientTransformation:
    """Non-monotonically triggered averaged SGD, the optimiser of AWD-LSTM.

    Plain SGD (with coupled L2 ``weight_decay`` added to the gradient, as PyTorch's
    ``SGD(weight_decay=...)``) whose iterates are averaged from the trigger on
    (Merity et al. 2017, "Regularizing and optimizing LSTM language models"; they used
    ``lr=30``, ``nonmono=5``, ``weight_decay=1.2e-6`` with gradient clipping 0.25).

    Example::

        >>> import jax.numpy as jnp
        >>> from rnnlab.optim import nt_asgd, observe_validation, averaged_params
        >>> params = {"w": jnp.ones(3)}
        >>> tx = nt_asgd(0.1, nonmono=2)
        >>> state = tx.init(params)
        >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)
        >>> state = observe_validation(state, 1.0)
        >>> averaged_params(state, params)["w"].shape
        (3,)
    """
    parts = []
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts += [optax.sgd(learning_rate), average_iterates(nonmono)]
    return optax.chain(*parts)
