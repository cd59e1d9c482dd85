"""Compiled CPU recurrence loops for rnnlab (XLA FFI handlers in one shared library).

rnnlab loads the library with :mod:`ctypes` and registers its handlers with
``jax.ffi.register_ffi_target`` (``rnnlab.fused.kernel``); this package only ships it.
"""

from __future__ import annotations

import pathlib

__version__ = "0.1.0"

LIBRARY = "librnnlab_kernels.so"


def library_path() -> str:
    """Absolute path of the shared library holding the ``Rnnlab*`` FFI handlers."""
    path = pathlib.Path(__file__).with_name(LIBRARY)
    if not path.exists():
        raise ImportError(f"{LIBRARY} is missing next to {__file__}: rebuild rnnlab-kernels")
    return str(path)
