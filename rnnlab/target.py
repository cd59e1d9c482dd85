"""The platform a computation is built for, which is not always the one it is traced on.

Per-backend choices (the recurrence path, hoisting the input projection, prefetching, the
linear-scan method, the convolution method) are measured per platform: what is fastest on
XLA's CPU backend is slow on a TPU and the other way round. They ask :func:`platform`,
which is ``jax.default_backend()`` unless a caller compiling for another platform
(``rnnlab compile --topology v5e-16`` on a CPU-only machine) wraps the tracing in
:func:`compiling_for`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax

PLATFORMS = ("cpu", "gpu", "tpu")

_TARGET: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "rnnlab_target_platform", default=None
)
_DEVICES: contextvars.ContextVar[int] = contextvars.ContextVar("rnnlab_step_devices", default=1)
_PORTABLE: contextvars.ContextVar[bool] = contextvars.ContextVar("rnnlab_portable", default=False)


def platform() -> str:
    """``"cpu"``, ``"gpu"`` or ``"tpu"``: the platform being compiled for."""
    override = _TARGET.get()
    if override is not None:
        return override
    backend = jax.default_backend()
    return "gpu" if backend in ("cuda", "rocm") else backend


@contextlib.contextmanager
def compiling_for(name: str) -> Iterator[None]:
    """Within the block, :func:`platform` is ``name`` (traces made inside follow it)."""
    if name not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}, got {name!r}")
    token = _TARGET.set(name)
    try:
        yield
    finally:
        _TARGET.reset(token)


def devices() -> int:
    """How many devices the computation being traced is split over (1 unless a caller
    says otherwise with :func:`partitioned_over`)."""
    return _DEVICES.get()


def partitioned_over(n: int, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` traced with :func:`devices` equal to ``n``: a step jitted on a mesh of ``n``
    devices says so to the choices made while it is traced (a custom call without a
    partitioning rule would run whole on every device)."""

    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        token = _DEVICES.set(int(n))
        try:
            return fn(*args, **kwargs)
        finally:
            _DEVICES.reset(token)

    return traced


def portable() -> bool:
    """True while tracing a portable artifact (:func:`exporting`): no custom call of an
    optional native library may enter it, as it must run where that library is absent."""
    return _PORTABLE.get()


@contextlib.contextmanager
def exporting() -> Iterator[None]:
    """Within the block, :func:`portable` is True (``rnnlab export --format stablehlo``)."""
    token = _PORTABLE.set(True)
    try:
        yield
    finally:
        _PORTABLE.reset(token)
