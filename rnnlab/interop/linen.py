"""rnnlab cells and layers inside Flax Linen models, through ``flax.nnx.bridge``.

There is no second implementation: :func:`linen_cell` and :func:`linen_rnn` wrap the NNX
modules in ``nnx.bridge.ToLinen``, which creates the module during ``init`` and stores its
parameters as ordinary Linen variables (collection ``"params"``, same names as the NNX
attributes), then rebuilds it from those variables on every ``apply``. Under ``jax.jit``
the rebuilt module's own initialisation is dead code and is compiled away.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from flax import linen as nn
    >>> from rnnlab.interop.linen import linen_rnn
    >>> class Tagger(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x, lengths):
    ...         h = linen_rnn("lstm", 4, 16, name="rnn")(x, seq_lengths=lengths)
    ...         return nn.Dense(3)(h)
    >>> x, lengths = jnp.ones((2, 7, 4)), jnp.array([7, 3])
    >>> variables = Tagger().init(jax.random.key(0), x, lengths)
    >>> Tagger().apply(variables, x, lengths).shape
    (2, 7, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flax import nnx
from flax.core import FrozenDict

from rnnlab.cells.base import RecurrentCell
from rnnlab.cells.registry import make_cell
from rnnlab.layers import RNN

CellSpec = str | Callable[..., RecurrentCell]


class BridgedModule(nnx.bridge.ToLinen):
    """``nnx.bridge.ToLinen`` that creates the NNX module's variables once per ``init``.

    ``ToLinen`` rebuilds the module with fresh random parameters on *every* call made during
    ``init``, so a cell stepped in a Python loop would compute the outputs of ``init`` with
    parameters other than the ones it stores. Here only the first call initialises; later
    calls, as every call in ``apply``, run the module built from the stored variables.
    """

    def is_initializing(self) -> bool:
        return super().is_initializing() and not self.variables


def _make(cell: CellSpec, in_features: int, hidden_features: int, rngs, kwargs) -> RecurrentCell:
    kwargs = dict(kwargs)
    if isinstance(cell, str):
        return make_cell(cell, in_features, hidden_features, rngs=rngs, **kwargs)
    return cell(in_features, hidden_features, rngs=rngs, **kwargs)


def build_cell(
    cell: CellSpec,
    in_features: int,
    hidden_features: int,
    *,
    cell_kwargs: Mapping[str, Any] = FrozenDict(),
    rngs: nnx.Rngs,
) -> RecurrentCell:
    """A cell from a registered name or a cell class (the factory :func:`linen_cell` wraps)."""
    return _make(cell, in_features, hidden_features, rngs, cell_kwargs)


def build_rnn(
    cell: CellSpec,
    in_features: int,
    hidden_features: int,
    *,
    cell_kwargs: Mapping[str, Any] = FrozenDict(),
    rnn_kwargs: Mapping[str, Any] = FrozenDict(),
    rngs: nnx.Rngs,
) -> RNN:
    """An :class:`~rnnlab.RNN` over a fresh cell (the factory :func:`linen_rnn` wraps)."""
    return RNN(_make(cell, in_features, hidden_features, rngs, cell_kwargs), **dict(rnn_kwargs))


def linen_cell(
    cell: CellSpec,
    in_features: int,
    hidden_features: int,
    *,
    name: str | None = None,
    **cell_kwargs: Any,
) -> BridgedModule:
    """An rnnlab cell as a Linen module: ``module(carry, x) -> (carry, y)``.

    Inside a Linen method, ``module(input_shape, nnx_method="initialize_carry")`` gives the
    initial carry.

    Args:
      cell: a registered cell name (``"lstm"``, ``"gru"``, ``"simple"``, ...) or a cell class.
      in_features, hidden_features: the cell's sizes.
      name: the Linen submodule name (the key of its parameters).
      **cell_kwargs: further cell arguments (``proj_features``, ``dtype``, ...).
    """
    return BridgedModule(
        build_cell,
        args=(cell, in_features, hidden_features),
        kwargs=FrozenDict(cell_kwargs=FrozenDict(cell_kwargs)),
        name=name,
    )


def linen_rnn(
    cell: CellSpec,
    in_features: int,
    hidden_features: int,
    *,
    cell_kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    **rnn_kwargs: Any,
) -> BridgedModule:
    """An :class:`~rnnlab.RNN` as a Linen module, called like the NNX layer.

    ``module(x, seq_lengths=..., resets=..., initial_carry=..., return_carry=...)`` takes
    batch-major ``[*batch, time, features]`` input. ``rnn_kwargs`` are the
    :class:`~rnnlab.RNN` constructor arguments (``reverse``, ``unroll``, ``time_major``, ...).
    """
    return BridgedModule(
        build_rnn,
        args=(cell, in_features, hidden_features),
        kwargs=FrozenDict(
            cell_kwargs=FrozenDict(cell_kwargs or {}), rnn_kwargs=FrozenDict(rnn_kwargs)
        ),
        name=name,
    )
