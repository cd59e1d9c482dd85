"""Device meshes and the shardings of batches on them.

A mesh names the axes along which devices are laid out, for example ``{"data": -1}`` (pure
data parallelism over every device) or ``{"data": 2, "fsdp": 4}`` (parameters sharded over
groups of four devices, the batch over all eight). One device is a mesh of size one: the
same jitted code serves every scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

# Mesh axes over which the batch dimension is split. "fsdp" is data-parallel for the
# activations even though it also shards the parameters.
DATA_AXES: tuple[str, ...] = ("data", "fsdp")

AxesSpec = Mapping[str, int] | Sequence[tuple[str, int]]


def _bad_axis(axis: str, message: str) -> ValueError:
    """A ValueError whose ``.axis`` names the offending axis ("" for the spec as a whole),
    so that a config layer can name its key."""
    err = ValueError(message)
    err.axis = axis  # type: ignore[attr-defined]
    return err


def check_axes(axes: AxesSpec | None) -> list[tuple[str, int]]:
    """Validates a mesh axes spec: ``[(name, size), ...]`` in the given order.

    The one check of mesh axes: names non-empty and distinct, sizes positive ints or ``-1``,
    at most one ``-1``. ``None`` is ``{"data": -1}``.

    Raises:
      ValueError: with ``.axis`` naming the bad axis ("" when the spec itself is bad).
    """
    if axes is None:
        return [("data", -1)]
    if hasattr(axes, "items"):  # dict, ml_collections.ConfigDict
        pairs = list(axes.items())
    elif isinstance(axes, Sequence) and not isinstance(axes, str):
        pairs = list(axes)
    else:
        raise _bad_axis(
            "", f"axes must be a mapping or a sequence of (name, size) pairs, got {axes!r}"
        )
    if not pairs:
        raise _bad_axis("", "axes must name at least one mesh axis, got an empty spec")
    out: list[tuple[str, int]] = []
    for pair in pairs:
        if not (isinstance(pair, Sequence) and len(pair) == 2):
            raise _bad_axis("", f"axes entries must be (name, size) pairs, got {pair!r}")
        name, size = pair
        if not isinstance(name, str) or not name:
            raise _bad_axis("", f"mesh axis names must be non-empty strings, got {name!r}")
        if isinstance(size, bool) or not isinstance(size, int) or (size < 1 and size != -1):
            raise _bad_axis(
                name, f"mesh axis {name!r} must have a positive int size or -1, got {size!r}"
            )
        out.append((name, int(size)))
    names = [name for name, _ in out]
    if len(set(names)) != len(names):
        raise _bad_axis("", f"mesh axis names must be distinct, got {names}")
    if sum(size == -1 for _, size in out) > 1:
        fill = [name for name, size in out if size == -1]
        raise _bad_axis(fill[-1], f"at most one mesh axis may be -1, got {fill}")
    return out


def mesh_shape(axes: AxesSpec | None, num_devices: int) -> dict[str, int]:
    """Resolves an axes spec (``-1`` fills the rest) against a device count.

    Raises:
      ValueError: an axis size does not divide the device count, or the sizes multiply to
        something other than the device count.
    """
    pairs = check_axes(axes)
    for name, size in pairs:
        if size != -1 and num_devices % size:
            raise ValueError(
                f"mesh axis {name!r} has size {size}, which does not divide the "
                f"{num_devices} devices"
            )
    fixed = math.prod(size for _, size in pairs if size != -1)
    described = " x ".join(f"{name}={size}" for name, size in pairs)
    if any(size == -1 for _, size in pairs):
        if num_devices % fixed:
            raise ValueError(
                f"mesh axes {described} need a device count divisible by {fixed}, "
                f"got {num_devices} devices"
            )
        return {name: (num_devices // fixed if size == -1 else size) for name, size in pairs}
    if fixed != num_devices:
        raise ValueError(
            f"mesh axes {described} multiply to {fixed} but there are {num_devices} devices; "
            "use -1 for one axis to fill the rest"
        )
    return dict(pairs)


def make_mesh(axes: AxesSpec | None = None, devices: Sequence | None = None) -> Mesh:
    """Builds a mesh over all devices (of every process) or the given ones.

    The device order comes from :func:`jax.make_mesh`, which on TPU follows the physical
    interconnect (rings and tori) so that collectives along each axis are fast. Devices of
    several slices (multi-slice TPU, joined by the data-centre network) get a hybrid mesh:
    the first axis is split over the slices first, so that only it crosses the slower
    network, and each slice keeps its torus order
    (:func:`jax.experimental.mesh_utils.create_hybrid_device_mesh`).

    Args:
      axes: ``{"name": size}`` or ``[(name, size), ...]`` in major-to-minor order; one size
        may be ``-1`` to take the remaining devices. Defaults to ``{"data": -1}``.
      devices: the devices to use; defaults to ``jax.devices()``.

    Returns:
      A :class:`jax.sharding.Mesh` whose axes are all of type ``Auto`` (shardings given to
      ``jax.jit`` are honoured and XLA propagates the rest).

    Example:
      >>> mesh = make_mesh({"data": -1, "fsdp": 2})  # doctest: +SKIP
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must not be empty")
    shape = mesh_shape(axes, len(devices))
    names = tuple(shape)
    slices = len({getattr(d, "slice_index", 0) for d in devices})
    if slices > 1:
        return _multi_slice_mesh(shape, devices, slices)
    return jax.make_mesh(
        tuple(shape.values()),
        names,
        axis_types=(AxisType.Auto,) * len(names),
        devices=devices,
    )


def _multi_slice_mesh(shape: dict[str, int], devices: list, slices: int) -> Mesh:
    from jax.experimental import mesh_utils

    names, sizes = tuple(shape), list(shape.values())
    if sizes[0] % slices:
        raise ValueError(
            f"mesh axis {names[0]!r} of size {sizes[0]} must be divisible by the {slices} "
            "slices it spans"
        )
    per_slice = [sizes[0] // slices, *sizes[1:]]
    across = [slices] + [1] * (len(sizes) - 1)
    grid = mesh_utils.create_hybrid_device_mesh(per_slice, across, devices)
    return Mesh(grid, names, axis_types=(AxisType.Auto,) * len(names))


def data_axes(mesh: Mesh, batch_axes: Sequence[str] = DATA_AXES) -> tuple[str, ...]:
    """The mesh's axes that split the batch, in mesh order."""
    return tuple(name for name in mesh.axis_names if name in batch_axes)


def data_parallel_size(mesh: Mesh, batch_axes: Sequence[str] = DATA_AXES) -> int:
    """Number of batch shards: the product of the sizes of the data-like axes."""
    return math.prod(mesh.shape[name] for name in data_axes(mesh, batch_axes))


def data_sharding(mesh: Mesh, batch_axes: Sequence[str] = DATA_AXES) -> NamedSharding:
    """Sharding of a batch: leading dimension split over all data-like axes, rest whole.

    With axes ``("data", "fsdp")`` of sizes 2 and 4, example ``i`` of a global batch of 16
    lives on the device at ``data = i // 8``, ``fsdp = (i // 2) % 4``.
    """
    axes = data_axes(mesh, batch_axes)
    return NamedSharding(mesh, P(axes) if axes else P())


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device (small parameters, metrics, RNG)."""
    return NamedSharding(mesh, P())
