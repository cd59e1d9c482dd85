"""A run's device mesh and the layout of its state on it, from ``config.mesh`` and
``config.sharding``.

``config.mesh`` names the mesh axes and their sizes, one of them ``-1`` for the devices left
over (``{"data": -1}``: data parallelism over every device of every process). New axes can
be added from the command line: ``--config.mesh.fsdp=2``. An ``ml_collections`` config does
not keep the order of its keys, so the axes are laid out in a fixed order, major to minor:
``data``, then ``fsdp``, then any other axes in alphabetical order. ``data`` comes first so
that it is the axis spanning the hosts of a multi-host run (each host then reads its own
rows of the batch); ``fsdp``, which gathers parameters at every step, is laid out over
neighbouring devices.

``config.sharding.rules`` picks how the train state (parameters, model variables such as
batch-norm statistics, optimizer state) is placed:

- ``"replicated"``: a full copy on every device (plain data parallelism);
- ``"fsdp"``: every array with at least two dimensions is split over the mesh axes named by
  ``sharding.fsdp_axis`` (``"fsdp"``, or ``"data,fsdp"`` for ZeRO stage 3 over every device;
  Rajbhandari et al., 2020) on its largest dimension that is ``>= sharding.fsdp_min_dim``
  and divisible by the axes' size; smaller arrays stay replicated. Optimizer moments follow
  their parameter (see :func:`rnnlab.parallel.fsdp_rules`).

The batch (and the recurrent carry of stateful models) is always split over the ``data``
and ``fsdp`` axes. The maths does not depend on the layout: under ``jax.jit`` XLA inserts
the all-gathers and reductions, so means over the batch (losses, metrics, batch-norm
statistics) are global means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from rnnlab import parallel
from rnnlab.train.options import SHARDING_RULES, ConfigDict, ConfigError

RULES: tuple[str, ...] = SHARDING_RULES

# Major-to-minor order of the axes the trainer knows; other axes follow alphabetically.
AXIS_ORDER: tuple[str, ...] = ("data", "fsdp")


def mesh_axes(mesh_config: Any) -> list[tuple[str, int]]:
    """``config.mesh`` as ``[(name, size), ...]`` in the trainer's order (module docstring).

    Raises:
      ConfigError: a size that is not a positive int or ``-1`` (the key names the axis;
        the check itself is :func:`rnnlab.parallel.check_axes`).
    """
    items = dict(mesh_config.items() if hasattr(mesh_config, "items") else mesh_config)
    if not items:
        raise ConfigError("mesh", "names no mesh axis; give at least one, e.g. mesh.data=-1")
    try:
        parallel.check_axes(items)
    except ValueError as e:
        axis = getattr(e, "axis", "")
        raise ConfigError(f"mesh.{axis}" if axis else "mesh", str(e)) from e
    known = [name for name in AXIS_ORDER if name in items]
    others = sorted(name for name in items if name not in AXIS_ORDER)
    return [(name, int(items[name])) for name in known + others]


def mesh_from_config(config: ConfigDict, devices: Sequence[Any] | None = None) -> Mesh:
    """The run's mesh over ``devices`` (default: every device of every process): the axes of
    ``config.mesh`` in the trainer's order, built by :func:`rnnlab.parallel.make_mesh` (the
    one place meshes are made), its errors named by config key.

    Raises:
      ConfigError: the axis sizes do not fit the number of devices (key ``mesh``).
    """
    axes = mesh_axes(config.mesh)
    try:
        return parallel.make_mesh(axes, devices)
    except ValueError as e:
        count = len(devices) if devices is not None else jax.device_count()
        raise ConfigError("mesh", f"{e} (mesh {dict(axes)} on {count} devices)") from e


def fsdp_axes(config: ConfigDict) -> tuple[str, ...]:
    """``sharding.fsdp_axis`` as a tuple of axis names (``"data,fsdp"`` -> two axes)."""
    text = str(config.sharding.fsdp_axis)
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ConfigError("sharding.fsdp_axis", f"expected mesh axis names, got {text!r}")
    return names


def rules(config: ConfigDict, mesh: Mesh) -> list[parallel.Rule]:
    """The sharding rules ``config.sharding`` asks for on ``mesh``.

    Raises:
      ConfigError: an unknown ``sharding.rules``, or ``fsdp`` over axes the mesh lacks.
    """
    kind = config.sharding.rules
    if kind == "replicated":
        return []
    if kind != "fsdp":
        raise ConfigError("sharding.rules", f"expected one of {list(RULES)}, got {kind!r}")
    axes = fsdp_axes(config)
    missing = [name for name in axes if name not in mesh.shape]
    if missing:
        raise ConfigError(
            "sharding.fsdp_axis",
            f"names mesh axes {missing} that the mesh {dict(mesh.shape)} lacks; add them, "
            f"e.g. --config.mesh.{missing[0]}=2",
        )
    axis = axes[0] if len(axes) == 1 else axes
    return parallel.fsdp_rules(min_dim=int(config.sharding.fsdp_min_dim), axis=axis)


def _ways(sharding) -> int:
    """Into how many pieces ``sharding`` splits an array (1: replicated)."""
    ways = 1
    for entry in sharding.spec:
        if entry is None:
            continue
        names = entry if isinstance(entry, tuple) else (entry,)
        ways *= math.prod(sharding.mesh.shape[name] for name in names)
    return ways


def describe(abstract: Any, shardings: Any) -> str:
    """One line for the log: the mesh, and how much of the state is split across devices.

    ``abstract`` and ``shardings`` are trees of the same structure (``jax.eval_shape`` of the
    state and its :class:`~jax.sharding.NamedSharding`\\ s).
    """
    leaves = jax.tree.leaves(abstract)
    shards = jax.tree.leaves(shardings)
    total = per_device = 0.0
    split = 0
    mesh = None
    for leaf, sharding in zip(leaves, shards, strict=True):
        size = math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
        ways = _ways(sharding)
        mesh = sharding.mesh
        total += size
        per_device += size / ways
        split += ways > 1
    axes = " x ".join(f"{k}={v}" for k, v in mesh.shape.items()) if mesh is not None else "-"
    return (
        f"mesh {axes}; state {total / 2**20:.2f} MiB, {per_device / 2**20:.2f} MiB per device, "
        f"{split} of {len(leaves)} arrays split across devices"
    )


def check(config: ConfigDict, context: dict[str, Any]) -> None:
    """The fsdp axes and the mesh's axes (a run config's check, see
    :func:`rnnlab.train.config.validate`)."""
    del context  # the rules and fsdp_min_dim are checked with their fields
    fsdp_axes(config)
    mesh_axes(config.mesh)
