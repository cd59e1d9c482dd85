"""Multi-process start-up: the one place that calls ``jax.distributed.initialize``.

Three situations are told apart:

* a Cloud TPU VM (single host or pod slice): JAX discovers its peers from the TPU metadata,
  so ``initialize()`` needs no arguments;
* any other multi-process run (GPU hosts, CPU processes on localhost): the coordinator
  address, the process count and this process's id come from the arguments or from the
  environment (``RNNLAB_COORDINATOR``, ``RNNLAB_NUM_PROCESSES``, ``RNNLAB_PROCESS_ID``,
  ``RNNLAB_LOCAL_DEVICE_IDS``, or JAX's own ``JAX_COORDINATOR_ADDRESS``,
  ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, ``JAX_LOCAL_DEVICE_IDS``);
* a single process: nothing to do.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

# First name wins; the project's own names come before JAX's.
ENV_NAMES: dict[str, tuple[str, ...]] = {
    "coordinator_address": ("RNNLAB_COORDINATOR", "JAX_COORDINATOR_ADDRESS"),
    "num_processes": ("RNNLAB_NUM_PROCESSES", "JAX_NUM_PROCESSES"),
    "process_id": ("RNNLAB_PROCESS_ID", "JAX_PROCESS_ID"),
    "local_device_ids": ("RNNLAB_LOCAL_DEVICE_IDS", "JAX_LOCAL_DEVICE_IDS"),
}

_GOOGLE_PCI_VENDOR = "0x1ae0"


@dataclasses.dataclass(frozen=True)
class DistributedSettings:
    """Resolved start-up settings.

    ``mode`` is ``"single"`` (no runtime needed), ``"tpu"`` (JAX discovers the TPU slice)
    or ``"explicit"`` (coordinator, process count and id are all given).
    """

    mode: str
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None


_active: DistributedSettings | None = None


def on_cloud_tpu_vm(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs on a Cloud TPU VM (or a TPU node of GKE).

    A TPU VM is recognised the way JAX itself does it: ``libtpu`` is installed and a Google
    TPU device sits on the PCI bus, or the TPU runtime exported its worker list. Setting
    ``JAX_PLATFORMS`` without ``tpu`` in it (for example ``cpu`` in tests) turns this off.
    """
    env = os.environ if environ is None else environ
    platforms = env.get("JAX_PLATFORMS", "")
    if platforms and "tpu" not in platforms.lower():
        return False
    if env.get("TPU_WORKER_HOSTNAMES") or env.get("TPU_PROCESS_ADDRESSES"):
        return True
    if importlib.util.find_spec("libtpu") is None:
        return False
    for vendor_file in glob.glob("/sys/bus/pci/devices/*/vendor"):
        try:
            with open(vendor_file) as f:
                if f.read().strip() == _GOOGLE_PCI_VENDOR:
                    return True
        except OSError:
            continue
    return False


def _from_env(name: str, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    for var in ENV_NAMES[name]:
        value = environ.get(var, "")
        if value.strip():
            return value.strip(), var
    return None, None


def _as_int(value, source: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{source} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{source} must be an integer, got {value!r}") from None


def _as_device_ids(value, source: str) -> tuple[int, ...]:
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
        return tuple(_as_int(p, source) for p in parts)
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, Sequence):
        return tuple(_as_int(p, source) for p in value)
    raise ValueError(
        f"{source} must be an int, a sequence of ints or a comma-separated string, got {value!r}"
    )


def resolve_settings(
    coordinator_address: str | None = None,
    num_processes: int | str | None = None,
    process_id: int | str | None = None,
    local_device_ids: int | str | Sequence[int] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    tpu_vm: bool | None = None,
) -> DistributedSettings:
    """Combines arguments, environment variables and platform detection into settings.

    Arguments win over environment variables. Pure apart from reading the environment and
    the PCI bus; :func:`initialize` acts on the result.

    Raises:
      ValueError: a setting is malformed, or only some of coordinator address, process count
        and process id are given (each names where it came from).
    """
    env = os.environ if environ is None else environ
    raw = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
        "local_device_ids": local_device_ids,
    }
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name, value in raw.items():
        if value is not None and value != "":
            values[name], sources[name] = value, f"argument {name}"
        else:
            env_value, var = _from_env(name, env)
            if env_value is not None:
                values[name], sources[name] = env_value, f"environment variable {var}"

    if "num_processes" in values:
        values["num_processes"] = n = _as_int(values["num_processes"], sources["num_processes"])
        if n < 1:
            raise ValueError(f"{sources['num_processes']} must be >= 1, got {n}")
    if "process_id" in values:
        values["process_id"] = _as_int(values["process_id"], sources["process_id"])
    if "local_device_ids" in values:
        values["local_device_ids"] = _as_device_ids(
            values["local_device_ids"], sources["local_device_ids"]
        )
    device_ids = values.get("local_device_ids")

    core = ("coordinator_address", "num_processes", "process_id")
    given = [name for name in core if name in values]
    if not given:
        if tpu_vm if tpu_vm is not None else on_cloud_tpu_vm(env):
            return DistributedSettings("tpu", local_device_ids=device_ids)
        return DistributedSettings("single", local_device_ids=device_ids)

    n = values.get("num_processes")
    pid = values.get("process_id")
    if n == 1 and "coordinator_address" not in values:
        if pid not in (None, 0):
            raise ValueError(f"{sources['process_id']} must be 0 for a single process, got {pid}")
        return DistributedSettings("single", num_processes=1, process_id=0)

    missing = [name for name in core if name not in values]
    if missing:
        have = ", ".join(f"{name} (from {sources[name]})" for name in given)
        want = ", ".join(f"{name} (argument or {' / '.join(ENV_NAMES[name])})" for name in missing)
        raise ValueError(
            f"multi-process settings are incomplete: got {have} but not {want}; "
            "give all three, or none on a Cloud TPU VM or for a single process"
        )
    address = str(values["coordinator_address"])
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"{sources['coordinator_address']} must look like 'host:port', got {address!r}"
        )
    if not 0 <= pid < n:
        raise ValueError(
            f"{sources['process_id']} must be in [0, {n}) for {n} processes, got {pid}"
        )
    if n == 1:
        return DistributedSettings("single", num_processes=1, process_id=0)
    return DistributedSettings("explicit", address, n, pid, device_ids)


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | str | None = None,
    process_id: int | str | None = None,
    local_device_ids: int | str | Sequence[int] | None = None,
) -> bool:
    """Starts JAX's distributed runtime when this run spans several processes.

    Call it first, before anything touches a device (``jax.devices()``, array creation).
    On a Cloud TPU VM no argument is needed. Elsewhere give the coordinator address
    (``"host:port"`` of process 0), the number of processes and this process's id, as
    arguments or through the environment (see the module docstring). With none of them, or
    a single process, nothing happens. Calling it again is harmless: a second call with no
    settings, or the same ones, returns the first call's result.

    Args:
      coordinator_address: ``"host:port"`` where process 0 serves the coordinator.
      num_processes: number of processes in the run.
      process_id: this process's id in ``[0, num_processes)``.
      local_device_ids: devices this process may use (GPU hosts running one process per
        device); an int, a sequence or a comma-separated string.

    Returns:
      Whether a multi-process runtime is active after the call.

    Raises:
      ValueError: half-specified or malformed settings (see :func:`resolve_settings`).
      RuntimeError: a second call asks for different settings than the first.
    """
    global _active
    settings = resolve_settings(coordinator_address, num_processes, process_id, local_device_ids)
    if _active is not None:
        nothing_asked = settings == DistributedSettings("single")
        if nothing_asked or settings == _active:
            return True
        raise RuntimeError(
            f"the distributed runtime is already running with {_active}; "
            f"cannot start it again with {settings}"
        )
    if jax.distributed.is_initialized():
        # Started by the caller's own launcher; respect it.
        return True
    if settings.mode == "single":
        return False
    kwargs = {}
    if settings.local_device_ids is not None:
        kwargs["local_device_ids"] = list(settings.local_device_ids)
    if settings.mode == "explicit":
        kwargs.update(
            coordinator_address=settings.coordinator_address,
            num_processes=settings.num_processes,
            process_id=settings.process_id,
        )
    jax.distributed.initialize(**kwargs)
    _active = settings
    return True


def process_index() -> int:
    """This process's index (0 on a single process)."""
    return jax.process_index()


def process_count() -> int:
    """Number of processes in the run (1 on a single process)."""
    return jax.process_count()


def is_main_process() -> bool:
    """Whether this is process 0, the one that logs and writes summaries."""
    return jax.process_index() == 0


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is true on any process; the same answer on every process.

    A collective: every process must call it at the same point. It lets the processes of a
    multi-host run agree on a decision only some of them observed, such as a SIGTERM that
    reached one host a step before the others, so that all of them save and stop at the
    same step. Without it, one process would enter the checkpoint's collectives while the
    others enter the next training step's, and the run would hang.
    """
    if jax.process_count() == 1:
        return bool(flag)
    flags = multihost_utils.process_allgather(np.asarray(bool(flag), np.int32))
    return bool(np.any(flags))
