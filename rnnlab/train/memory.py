"""Will the run fit? The train state's memory, known from its shapes before anything is
allocated, against what the devices (or, on CPU, the process) can still take.

A model too large for memory used to hang with no output: the allocation failed in the
runtime's dispatch thread and the loop waited forever in ``device_get(state.step)``.
:func:`check` runs before the state is created or restored and refuses with the numbers
instead. It counts the state (parameters, optimizer state, model variables, carries, laid
out by their shardings: a sharded array costs each device its shard) plus one set of
gradients (the size of the parameters), which every step holds at once; the step's
activations come on top, so a run that passes can still fail later, but one that fails
here could never have taken a step.

Available memory: on accelerators ``bytes_limit - bytes_in_use`` from the device's memory
statistics; on CPU (all local devices share the host) the smaller of the host's
``MemAvailable`` and what the address-space limit (``ulimit -v``) leaves above the
process's current size.
"""

from __future__ import annotations

import math
import resource
from typing import Any

import jax

GiB = 1024**3
HINT = (
    "lower model.hidden_features (or the layers, embedding, batch), or shard the state "
    "over more devices (sharding.rules=fsdp)"
)


class OutOfMemoryError(RuntimeError):
    """The run cannot fit in memory; the message gives the numbers."""


def _gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"


def per_device_bytes(abstract: Any, shardings: Any) -> int:
    """Bytes of the largest per-device share of ``abstract`` laid out by ``shardings``."""
    total = 0
    for leaf, sharding in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings), strict=True):
        shape = sharding.shard_shape(leaf.shape) if leaf.shape else leaf.shape
        total += math.prod(shape) * leaf.dtype.itemsize
    return total


def _proc_kib(path: str, key: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def host_available() -> tuple[int | None, str]:
    """Bytes this process can still allocate on the host, and how that was found."""
    limits = []
    avail = _proc_kib("/proc/meminfo", "MemAvailable")
    if avail is not None:
        limits.append((avail, f"{_gib(avail)} of host memory available"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft not in (resource.RLIM_INFINITY, -1):
        size = _proc_kib("/proc/self/status", "VmSize") or 0
        left = max(soft - size, 0)
        limits.append(
            (
                left,
                f"{_gib(left)} left under the address-space limit of {_gib(soft)} "
                f"(ulimit -v; {_gib(size)} in use)",
            )
        )
    if not limits:
        return None, "unknown"
    return min(limits, key=lambda x: x[0])


def device_available(device: Any) -> tuple[int | None, str]:
    """Bytes still free on ``device`` (None when it keeps no statistics)."""
    try:
        stats = device.memory_stats()
    except Exception:  # CPU and some backends keep none
        stats = None
    if not stats or "bytes_limit" not in stats:
        return None, "unknown"
    free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return free, f"{_gib(free)} free of {_gib(stats['bytes_limit'])} on {device}"


def _available(devices: list[Any]) -> tuple[int | None, str, int]:
    """``(bytes free, how that was found, how many devices share it)`` for ``devices``."""
    if devices[0].platform == "cpu":  # simulated CPU devices share the host's memory
        available, where = host_available()
        return available, where, len(devices)
    available, where = device_available(devices[0])
    return available, where, 1


def check_step(step: Any, *args: Any, hint: str = "") -> Any:
    """Compiles ``step`` (a jitted function) for ``args`` and raises
    :class:`OutOfMemoryError` when what one call allocates beyond its arguments (XLA's
    memory analysis of the compiled executable: temporaries plus outputs not aliased to
    donated inputs) does not fit in what is free now. Returns the compiled executable;
    calling ``step`` afterwards reuses it (JAX caches the compilation)."""
    compiled = step.lower(*args).compile()
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # some backends do not analyse
        analysis = None
    if analysis is None:
        return compiled
    temp = int(analysis.temp_size_in_bytes)
    out = int(analysis.output_size_in_bytes) - int(analysis.alias_size_in_bytes)
    devices = jax.local_devices()
    available, where, sharing = _available(devices)
    need = (temp + max(out, 0)) * sharing
    if available is None or need <= available:
        return compiled
    raise OutOfMemoryError(
        f"a training step does not fit in memory: the compiled step needs {_gib(temp)} of "
        f"temporaries and {_gib(max(out, 0))} of new outputs per device, {_gib(need)} for "
        f"{sharing} device(s) sharing it, but only {where}" + (f"; {hint}" if hint else "")
    )


def _signature(tree: Any) -> tuple:
    return jax.tree.structure(tree), tuple((x.shape, x.dtype) for x in jax.tree.leaves(tree))


def reusing(compiled: Any, step: Any, batch: Any) -> Any:
    """``fn(state, batch)``: ``compiled`` (from :func:`check_step`) for batches of ``batch``'s
    shapes and dtypes, the jitted ``step`` for any other (a batch padded to another length
    is traced and compiled then, as it would be without the check): a compiled executable
    refuses arguments of other shapes."""
    signature = _signature(batch)

    def run(state: Any, b: Any) -> Any:
        return (compiled if _signature(b) == signature else step)(state, b)

    return run


def check(abstract: Any, shardings: Any, *, hint: str = "") -> None:
    """Raises :class:`OutOfMemoryError` when the train state and its gradients cannot fit.

    Args:
      abstract: the train state's ``jax.ShapeDtypeStruct`` tree (``jax.eval_shape``).
      shardings: its shardings (same structure).
      hint: what to change, appended to the message.
    """
    state = per_device_bytes(abstract, shardings)
    grads = per_device_bytes(abstract.params, shardings.params)
    need = state + grads
    # The run's own devices on this host (a mesh may use fewer than the host has).
    used = set().union(*(s.device_set for s in jax.tree.leaves(shardings)))
    devices = (
        sorted((d for d in used if d.process_index == jax.process_index()), key=lambda d: d.id)
        or jax.local_devices()
    )
    available, where, sharing = _available(devices)
    need *= sharing
    if devices[0].platform == "cpu":
        what = f"{len(devices)} CPU device(s) on this host"
    else:
        what = f"each of {len(devices)} {devices[0].platform} device(s)"
    if available is None or need <= available:
        return
    raise OutOfMemoryError(
        f"the run does not fit in memory: its train state takes {_gib(state)} per device and "
        f"a step's gradients {_gib(grads)} more, {_gib(need)} for {what}, but only {where}"
        + (f"; {hint}" if hint else "")
    )
