"""Parameter creation shared by the cells: one helper for the gate kernels and biases.

Every gated cell owns the same three kinds of arrays: an input kernel ``kernel_ih``
``[*window, in, G*H]`` (``window`` is the spatial kernel of a convolutional cell, empty
otherwise), a recurrent kernel ``kernel_hh`` ``[*window, rec, G*H]`` and one or two biases
``[G*H]``. :func:`gate_params` creates them in that order, drawing one key per array from
the ``params`` stream, so a cell built with the same seed gets the same arrays as before
the helper existed and the keys left for the next module are the same too.

Initialisers run in float32 (or wider) and the result is cast to ``param_dtype``
(:func:`init_param`). Low-precision initialisation is both inaccurate and, for the
orthogonal initialiser, impossible on CPU: XLA's CPU QR decomposition has no bfloat16
kernel. A bfloat16 model thus starts from the rounded float32 initialisation, which is what
mixed-precision recipes do.

Sharding annotations follow NNX: an initialiser wrapped in ``nnx.with_partitioning`` (or
``nnx.with_metadata``) keeps its metadata on the ``nnx.Param`` it creates, and a cell's
``kernel_metadata``, ``recurrent_kernel_metadata``, ``bias_metadata`` and ``param_metadata``
arguments (:func:`annotate_params`) set metadata by role or by name, so
``nnx.get_partition_spec`` of a cell reads the partitioning its caller asked for.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells.initializers import Initializer

F32 = jnp.float32


def init_dtype(param_dtype) -> jnp.dtype:
    """The dtype initialisers run in: ``param_dtype`` if it has at least 32 bits, else f32."""
    dtype = jnp.dtype(param_dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"param_dtype must be a floating dtype, got {dtype}")
    return dtype if dtype.itemsize >= 4 else jnp.dtype(F32)


def _init_with_metadata(init: Initializer, key, shape, param_dtype) -> tuple[jax.Array, dict]:
    value = init(key, tuple(shape), init_dtype(param_dtype))
    metadata: dict[str, Any] = {}
    if isinstance(value, nnx.VariableMetadata):  # nnx.with_partitioning / with_metadata
        metadata = {k: v for k, v in value.metadata.items() if v is not None}
        value = value.raw_value
    return jnp.asarray(value).astype(param_dtype), metadata


def init_array(init: Initializer, key: jax.Array | None, shape, param_dtype) -> jax.Array:
    """``init(key, shape)`` computed in :func:`init_dtype` and cast to ``param_dtype``."""
    return _init_with_metadata(init, key, shape, param_dtype)[0]


def init_param(init: Initializer, key: jax.Array | None, shape, param_dtype) -> nnx.Param:
    """:func:`init_array` as an ``nnx.Param``, with the metadata of a partitioned ``init``."""
    value, metadata = _init_with_metadata(init, key, shape, param_dtype)
    check_metadata_rank("a parameter", metadata, value.ndim)
    return nnx.Param(value, **metadata)


# -- metadata by role -----------------------------------------------------------------------

METADATA_ARGS = ("kernel_metadata", "recurrent_kernel_metadata", "bias_metadata")
_SHARDING_KEYS = ("out_sharding", "sharding_names", "sharding")


def check_metadata_rank(name: str, metadata: Mapping[str, Any], ndim: int) -> None:
    """Raises a ValueError when a sharding annotation names more or fewer axes than ``ndim``."""
    for key in _SHARDING_KEYS:
        names = metadata.get(key)
        if names is not None and len(names) != ndim:
            raise ValueError(
                f"{key}={tuple(names)} of {name} names {len(names)} axes, but it has {ndim}"
            )


def param_role(name: str) -> str | None:
    """The ``*_metadata`` argument that annotates parameter ``name``: recurrent kernels
    (``kernel_hh``, ``*recurrent*``), biases, other kernels; ``None`` for the rest (scales,
    eigenvalue parameters), which only ``param_metadata`` reaches."""
    if "kernel_hh" in name or "recurrent" in name:
        return "recurrent_kernel_metadata"
    if "bias" in name:
        return "bias_metadata"
    if "kernel" in name:
        return "kernel_metadata"
    return None


def annotate_params(module: Any, by_role: Mapping[str, Any], by_name: Mapping[str, Any]) -> None:
    """Sets NNX metadata on ``module``'s parameters (its ``param_names``): ``by_role`` maps a
    :data:`METADATA_ARGS` name to metadata, ``by_name`` a parameter name to metadata."""
    names = [n for n in getattr(module, "param_names", ()) if getattr(module, n, None) is not None]
    unknown = sorted(set(by_name) - set(names))
    if unknown:
        raise ValueError(
            f"param_metadata names {unknown}, which {type(module).__name__} lacks; it has {names}"
        )
    for name in names:
        metadata = dict(by_role.get(param_role(name)) or {})
        metadata.update(by_name.get(name) or {})
        if metadata:
            var = getattr(module, name)
            check_metadata_rank(f"{type(module).__name__}.{name}", metadata, var[...].ndim)
            var.set_metadata(**metadata)
            spec = var.get_metadata().get("out_sharding")
            if spec is not None and not jax.sharding.get_abstract_mesh().empty:
                # Under a mesh, the array moves to its annotation now, as NNX's eager
                # sharding does for a partitioned initialiser.
                var[...] = jax.lax.with_sharding_constraint(
                    var[...], jax.sharding.PartitionSpec(*spec)
                )


def metadata_taking(init: Callable, apply: Callable) -> Callable:
    """Wraps a constructor so it takes the :data:`METADATA_ARGS` and ``param_metadata`` and
    calls ``apply(module, by_role, by_name)`` after it; an inner (``super()``) constructor
    receives none of them, so the outermost applies them once."""
    if getattr(init, "takes_metadata", False):
        return init

    @functools.wraps(init)
    def wrapper(self, *args, param_metadata: Mapping[str, Any] | None = None, **kwargs):
        by_role = {name: kwargs.pop(name) for name in METADATA_ARGS if name in kwargs}
        init(self, *args, **kwargs)
        if param_metadata or any(by_role.values()):
            apply(self, by_role, dict(param_metadata or {}))

    wrapper.takes_metadata = True
    return wrapper


def gate_params(
    rngs: nnx.Rngs,
    *,
    input_shape: Sequence[int],
    recurrent_shape: Sequence[int] | None,
    width: int,
    kernel_init: Initializer,
    recurrent_kernel_init: Initializer | None = None,
    bias_init: Initializer,
    num_biases: int = 1,
    param_dtype=F32,
    bias_keys: bool = True,
) -> tuple[nnx.Param, ...]:
    """The gate parameters of a cell: ``(kernel_ih, [kernel_hh,] bias[, bias_hh])``.

    .. math:: z_t = x_t W_{ih} + h_{t-1} W_{hh} + b \\in \\mathbb{R}^{\\text{width}}

    Args:
      rngs: the cell's ``nnx.Rngs``; one ``params`` key is drawn per array, in the order
        returned (``bias_keys=False``: biases draw none, for deterministic bias inits).
      input_shape: leading shape of the input kernel: ``(in_features,)``, or
        ``(kh, kw, in_channels)`` for a convolution.
      recurrent_shape: leading shape of the recurrent kernel: ``(hidden,)``, ``(kh, kw,
        hidden)``, ``()`` for a diagonal (per-unit) recurrence, ``None`` for none at all.
      width: size of the last axis (all gate blocks together, e.g. ``4 * hidden``).
      kernel_init, recurrent_kernel_init, bias_init: ``init(key, shape, dtype)``.
      num_biases: 1 (a fused bias) or 2 (input and recurrent biases, as the GRU needs).
      param_dtype: the parameters' dtype (initialisers run in float32 or wider).

    Returns:
      ``nnx.Param`` s: ``kernel_ih`` ``[*input_shape, width]``, then ``kernel_hh``
      ``[*recurrent_shape, width]`` unless ``recurrent_shape`` is None, then the biases
      ``[width]``.
    """
    if num_biases not in (1, 2):
        raise ValueError(f"num_biases must be 1 or 2, got {num_biases!r}")
    out = [init_param(kernel_init, rngs.params(), (*input_shape, width), param_dtype)]
    if recurrent_shape is not None:
        if recurrent_kernel_init is None:
            raise ValueError("recurrent_kernel_init is required with a recurrent_shape")
        shape = (*recurrent_shape, width)
        out.append(init_param(recurrent_kernel_init, rngs.params(), shape, param_dtype))
    for _ in range(num_biases):
        key = rngs.params() if bias_keys else None
        out.append(init_param(bias_init, key, (width,), param_dtype))
    return tuple(out)
