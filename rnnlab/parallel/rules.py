"""Sharding of parameters and optimizer state by rules on their paths.

Every leaf of a pytree (an ``nnx.State``, an optax state, a whole train state; concrete
arrays or the ``jax.ShapeDtypeStruct`` leaves of ``jax.eval_shape``) gets a path string:
its dict keys, attribute names and sequence indices joined by ``/``, without the trailing
``value`` of an ``nnx.Variable``. For example ``layers/0/kernel`` for a parameter and
``opt_state/0/mu/layers/0/kernel`` for Adam's first moment of it. A rule is
``(regex, spec)``; the first rule whose regex matches somewhere in the path (``re.search``)
decides. ``spec`` is a :class:`~jax.sharding.PartitionSpec`, or a function
``(shape, mesh) -> PartitionSpec | None`` where ``None`` passes the leaf on to the next
rule. Leaves no rule claims are replicated.

Because optimizer moments carry their parameter's path as a suffix, a rule written for a
parameter shards its moments the same way (what FSDP, i.e. ZeRO stage 3, needs:
Rajbhandari et al., 2020, "ZeRO: memory optimizations toward training trillion parameter
models").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

SpecFn = Callable[[tuple[int, ...], Mesh], P | None]
Rule = tuple[str, P | SpecFn]


def path_to_str(path: Sequence) -> str:
    """Turns a ``jax.tree_util`` key path into ``a/b/0/c`` (see the module docstring)."""
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.FlattenedIndexKey):
            parts.append(str(key.key))
        else:
            parts.append(str(key))
    if parts and parts[-1] == "value" and isinstance(path[-1], jax.tree_util.GetAttrKey):
        parts.pop()
    return "/".join(parts)


def _axis_names(entry) -> tuple[str, ...]:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, tuple | list) else (entry,)


def check_spec(spec: P, shape: Sequence[int], mesh: Mesh, path: str = "") -> None:
    """Raises ValueError when ``spec`` cannot shard an array of ``shape`` on ``mesh``."""
    where = f"leaf {path!r} " if path else ""
    if not isinstance(spec, P):
        raise ValueError(f"{where}sharding spec must be a PartitionSpec, got {spec!r}")
    if len(spec) > len(shape):
        raise ValueError(
            f"{where}of shape {tuple(shape)} has {len(shape)} dimensions but the spec "
            f"{spec} names {len(spec)}"
        )
    used: list[str] = []
    for dim, entry in enumerate(spec):
        names = _axis_names(entry)
        for name in names:
            if name not in mesh.shape:
                raise ValueError(
                    f"{where}spec {spec} names mesh axis {name!r}; the mesh has "
                    f"{tuple(mesh.axis_names)}"
                )
            if name in used:
                raise ValueError(f"{where}spec {spec} uses mesh axis {name!r} twice")
            used.append(name)
        size = math.prod(mesh.shape[name] for name in names)
        if shape[dim] % size:
            raise ValueError(
                f"{where}of shape {tuple(shape)}: dimension {dim} of size {shape[dim]} is "
                f"not divisible by {size}, the size of mesh axes {names} in spec {spec}"
            )


def _shape(leaf) -> tuple[int, ...]:
    shape = getattr(leaf, "shape", None)
    return tuple(shape) if shape is not None else tuple(np.shape(leaf))


def _compile(rules: Sequence[Rule]) -> list[tuple[re.Pattern, P | SpecFn]]:
    compiled = []
    for rule in rules:
        if not (isinstance(rule, tuple | list) and len(rule) == 2):
            raise ValueError(f"rules entries must be (regex, spec) pairs, got {rule!r}")
        pattern, spec = rule
        try:
            regex = re.compile(pattern)
        except (re.error, TypeError) as e:
            raise ValueError(f"rule pattern {pattern!r} is not a valid regex: {e}") from None
        if not (isinstance(spec, P) or callable(spec)):
            raise ValueError(
                f"rule {pattern!r} must map to a PartitionSpec or a function "
                f"(shape, mesh) -> PartitionSpec | None, got {spec!r}"
            )
        compiled.append((regex, spec))
    return compiled


def spec_for(path: str, shape: Sequence[int], mesh: Mesh, rules: Sequence[Rule] = ()) -> P:
    """The PartitionSpec the first applicable rule gives a leaf (replicated if none)."""
    for regex, spec in _compile(rules):
        if not regex.search(path):
            continue
        if callable(spec) and not isinstance(spec, P):
            spec = spec(tuple(shape), mesh)
            if spec is None:
                continue
        check_spec(spec, shape, mesh, path)
        return spec
    return P()


def partition_specs(tree, mesh: Mesh, rules: Sequence[Rule] = ()):
    """A pytree of PartitionSpecs with ``tree``'s structure, chosen by ``rules``."""
    compiled = _compile(rules)

    def one(path, leaf):
        return spec_for(path_to_str(path), _shape(leaf), mesh, compiled)

    return jax.tree_util.tree_map_with_path(one, tree)


def param_shardings(tree, mesh: Mesh, rules: Sequence[Rule] = ()):
    """A pytree of NamedShardings for ``tree`` (parameters, optimizer state, train state).

    Args:
      tree: any pytree whose leaves have a ``shape`` (arrays, ``jax.ShapeDtypeStruct``).
      mesh: the device mesh.
      rules: ``(regex, PartitionSpec | fn)`` pairs; first match wins, default replicated.
        :func:`fsdp_rules` gives a ready-made set.

    Returns:
      The same structure with a :class:`~jax.sharding.NamedSharding` per leaf, ready for
      ``jax.jit(..., in_shardings=..., out_shardings=...)`` or ``jax.device_put``.

    Raises:
      ValueError: a matching rule's spec does not fit the leaf (the error names its path).

    Example:
      >>> abstract = jax.eval_shape(init_fn)  # doctest: +SKIP
      >>> shardings = param_shardings(abstract, mesh, fsdp_rules(min_dim=1024))  # doctest: +SKIP
    """
    specs = partition_specs(tree, mesh, rules)
    return jax.tree.map(
        lambda spec: NamedSharding(mesh, spec), specs, is_leaf=lambda x: isinstance(x, P)
    )


def fsdp_spec(
    shape: Sequence[int], mesh: Mesh, axis: str | Sequence[str] = "fsdp", min_dim: int = 1024
) -> P | None:
    """FSDP spec for one array: its largest dimension that is >= ``min_dim`` and divisible
    by the size of ``axis`` is split over ``axis``; ``None`` when none qualifies, the array
    has fewer than two dimensions, or the axis is absent or of size one. Ties go to the
    later dimension (the output features of a ``[in, out]`` kernel).
    """
    names = _axis_names(tuple(axis) if not isinstance(axis, str) else axis)
    if len(shape) < 2 or any(name not in mesh.shape for name in names):
        return None
    size = math.prod(mesh.shape[name] for name in names)
    if size == 1:
        return None
    best = None
    for dim, n in enumerate(shape):
        if n >= min_dim and n % size == 0 and (best is None or n >= shape[best]):
            best = dim
    if best is None:
        return None
    entry = names[0] if len(names) == 1 else names
    return P(*([None] * best + [entry]))


def fsdp_rules(
    min_dim: int = 1024, axis: str | Sequence[str] = "fsdp", pattern: str = r".*"
) -> list[Rule]:
    """Fully sharded data parallelism: large matrices split over ``axis``, the rest whole.

    Every leaf whose path matches ``pattern`` and that has at least two dimensions
    (embeddings, input and recurrent kernels, their optimizer moments) is split on its
    largest dimension that is at least ``min_dim`` and divisible by the axis size (see
    :func:`fsdp_spec`). Biases, norms, scalars and small matrices stay replicated, since
    sharding them saves little memory and costs a gather each step. ``axis`` may be a tuple
    such as ``("data", "fsdp")`` to shard over both. Prepend your own rules to override.
    """
    if isinstance(min_dim, bool) or not isinstance(min_dim, int) or min_dim < 1:
        raise ValueError(f"min_dim must be a positive int, got {min_dim!r}")
    return [(pattern, lambda shape, mesh: fsdp_spec(shape, mesh, axis, min_dim))]
