"""Host memory policy of a training process: keep freed memory instead of returning it.

XLA on CPU allocates each step's temporaries (gate pre-activations, their gradients, the
optimiser's updates) afresh and frees them at the end of the step. glibc serves blocks of
at least ``M_MMAP_THRESHOLD`` bytes with a fresh ``mmap`` and hands them back with
``munmap``, and it returns the free top of the heap above ``M_TRIM_THRESHOLD`` to the
kernel; the next step then takes a page fault for every 4 KiB page it touches again. Its
dynamic threshold (which rises after the first large free) does not help once a block is
bigger than its 32 MiB cap, or when blocks of many sizes are freed in turn.

:func:`keep_freed_memory` sets both thresholds once, at start-up (``mallopt``, glibc
only): blocks up to 1 GiB come from the main heap (a thread's own arena still maps
blocks above its 64 MiB heap), and the heap is never trimmed, so steady-state steps
reuse pages that are already mapped. The resident set then stays at its peak instead of
falling between steps; the peak itself does not grow, since freed blocks are reused.
Measured on ``rnnlab train --config experiments/charlm.py`` (benchmarks/README.md, "End
to end").

The policy is on by default in the ``rnnlab`` command and off for a library import.
``RNNLAB_MALLOC=default`` (or ``off``, ``0``) leaves glibc's behaviour alone, as do the
user's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` / ``GLIBC_TUNABLES``
settings, which always win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

ENV = "RNNLAB_MALLOC"
OFF = ("default", "off", "0", "false", "no")
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

# <malloc.h> parameter numbers.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks up to 1 GiB come from the heap: larger than any per-step temporary of a CPU run;
# 32 MiB (glibc's cap before 2.35's larger heaps) where 1 GiB is refused.
MMAP_THRESHOLDS = (2**30, 32 * 2**20)
# Largest value an ``int`` argument of mallopt holds: "never trim".
TRIM_NEVER = 2**31 - 1

_applied: str | None = None


def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def keep_freed_memory(environ: dict | None = None) -> str:
    """Applies the policy of the module docstring once per process; returns what was done:
    ``"kept"`` (thresholds set), ``"off"`` (``RNNLAB_MALLOC`` says so), ``"user"`` (the
    user's own glibc settings apply), ``"unsupported"`` (not glibc) or ``"refused"``
    (glibc rejected a value). Later calls return the first answer."""
    global _applied
    if _applied is not None:
        return _applied
    env = os.environ if environ is None else environ
    if env.get(ENV, "").strip().lower() in OFF:
        _applied = "off"
    elif any(env.get(name) for name in USER_SETTINGS[:2]) or "glibc.malloc." in env.get(
        "GLIBC_TUNABLES", ""
    ):
        _applied = "user"
    elif (libc := _libc()) is None:
        _applied = "unsupported"
    else:
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        # Older glibc caps the mmap threshold at 32 MiB; setting the trim threshold alone
        # would pin the mmap threshold at its 128 KiB start, worse than the default.
        ok = any(libc.mallopt(M_MMAP_THRESHOLD, v) == 1 for v in MMAP_THRESHOLDS)
        ok = ok and libc.mallopt(M_TRIM_THRESHOLD, TRIM_NEVER) == 1
        _applied = "kept" if ok else "refused"
    return _applied
