"""The train state: one pytree that is everything a run needs to continue.

``TrainState`` holds the step, the model's parameters and its other variables (batch
statistics, ...) as plain nested dicts, the optimizer state, the run's base random key
(raw ``uint32`` key data, so checkpoints need no special handling), the recurrent carry
of stateful models (truncated backpropagation through time) and the non-finite-update
counters. The model's structure (``graphdef``) is static and rebuilt from the config; the
state is what gets sharded, donated to the jitted step and checkpointed.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh

from rnnlab import parallel
from rnnlab.train import config as cfg_lib
from rnnlab.train.config import ConfigDict, ConfigError
from rnnlab.train.options import RunOptions


@struct.dataclass
class TrainState:
    """Pytree of a run's state; see the module docstring.

    Attributes:
      step: number of updates done (int32 scalar).
      params: trainable parameters, a nested dict mirroring the model.
      rest: the model's other variables (e.g. batch statistics), a nested dict.
      opt_state: the optax state.
      rng: base key data; the key of step ``s`` is ``fold_in(rng, s)``.
      carry: recurrent state carried to the next batch, or ``None``.
      nonfinite: consecutive skipped (non-finite) updates, ending at ``step``.
      nonfinite_total: all skipped updates so far.
    """

    step: jax.Array
    params: Any
    rest: Any
    opt_state: Any
    rng: jax.Array
    carry: Any
    nonfinite: jax.Array
    nonfinite_total: jax.Array

    def key(self) -> jax.Array:
        """This step's random key: ``fold_in(base, step)`` (resume-safe)."""
        return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)


def model_config(config: ConfigDict | RunOptions) -> Any:
    """The model's typed options (its ``<Model>Config``), from the one conversion
    (:func:`rnnlab.train.config.convert`): every key but ``name``, so that ``config.json``
    records what the model was built with."""
    return cfg_lib.typed(config).model


def build_model(
    config: ConfigDict | RunOptions, info: Mapping[str, Any], seed: int | None = None
) -> nnx.Module:
    """The model of the run's ``model`` group (its ``<Model>Config.build``). A value the
    model rejects raises a :class:`ConfigError` of the model group (the message names the
    argument)."""
    options = cfg_lib.typed(config)
    try:
        return options.model.build(info, nnx.Rngs(params=options.seed if seed is None else seed))
    except ValueError as e:
        raise ConfigError("model", str(e)) from e


def abstract_model(config: ConfigDict | RunOptions, info: Mapping[str, Any]) -> nnx.Module:
    """The model with shapes only (nothing allocated): for ``graphdef`` and validation."""
    options = cfg_lib.typed(config)
    return nnx.eval_shape(lambda: build_model(options, info))


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, dict, dict]:
    """``(graphdef, params, rest)`` with the states as plain nested dicts."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def stateful(model: nnx.Module, config: ConfigDict | RunOptions) -> bool:
    """Whether the state is carried across batches (``train.stateful`` and the model can)."""
    return cfg_lib.typed(config).train.stateful and hasattr(model, "init_carry")


def init_state(
    config: ConfigDict | RunOptions,
    info: Mapping[str, Any],
    tx: optax.GradientTransformation,
    batch_size: int,
) -> TrainState:
    """A fresh state (call under ``jax.jit``/``eval_shape``; pure in the seed)."""
    options = cfg_lib.typed(config)
    model = build_model(options, info)
    _, params, rest = split_model(model)
    carry = model.init_carry(batch_size) if stateful(model, options) else None
    rng = jax.random.key_data(jax.random.fold_in(jax.random.key(options.seed), 1))
    zero = jnp.zeros((), jnp.int32)
    return TrainState(
        step=zero,
        params=params,
        rest=rest,
        opt_state=tx.init(params),
        rng=rng,
        carry=carry,
        nonfinite=zero,
        nonfinite_total=zero,
    )


def _json_default(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if dataclasses.is_dataclass(x):
        return {"class": type(x).__name__, **vars(x)}
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


# Initializers of recent runs, least recently used first; bounded, so that a process that
# builds many runs (the test suite, a sweep) does not keep every config alive.
_INITIALIZERS: collections.OrderedDict[tuple, Callable[[], TrainState]] = collections.OrderedDict()
MAX_INITIALIZERS = 16


def initializer(
    config: ConfigDict | RunOptions,
    info: Mapping[str, Any],
    tx: optax.GradientTransformation,
    batch_size: int,
) -> Callable[[], TrainState]:
    """``init() -> TrainState`` for :func:`init_state`; the same function object for equal
    arguments (among the last :data:`MAX_INITIALIZERS`), so that rebuilding a run in one
    process does not recompile its init."""
    options = cfg_lib.typed(config)
    # Only what init_state reads: the model, the seed and whether the state is carried.
    used = (options.model_name, options.model, options.seed, options.train.stateful)
    key = (
        json.dumps(used, sort_keys=True, default=_json_default),
        json.dumps(dict(info), sort_keys=True, default=_json_default),
        tx,
        int(batch_size),
    )
    init = _INITIALIZERS.pop(key, None)
    if init is None:
        init = lambda: init_state(options, info, tx, int(batch_size))
    _INITIALIZERS[key] = init
    while len(_INITIALIZERS) > MAX_INITIALIZERS:
        _INITIALIZERS.popitem(last=False)
    return init


@functools.lru_cache(maxsize=16)
def carry_initializer(graphdef: nnx.GraphDef, batch_size: int):
    """``init(params, rest) -> carry``: the zero state of a stateful model for a batch."""
    return lambda params, rest: nnx.merge(graphdef, params, rest).init_carry(batch_size)


def state_shardings(abstract: TrainState, mesh: Mesh, rules=()) -> TrainState:
    """Shardings for every leaf: carries split over the batch, the rest by ``rules``
    (replicated by default, see :func:`rnnlab.parallel.param_shardings`)."""
    without_carry = abstract.replace(carry=None)
    shardings = parallel.param_shardings(without_carry, mesh, rules)
    batch_sharding = parallel.data_sharding(mesh)
    carry = jax.tree.map(lambda _: batch_sharding, abstract.carry)
    return shardings.replace(carry=carry)


def count_params(params: Any) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
