"""Directories that appear whole or not at all: write into a temporary sibling, then rename.

A reader (or a later :func:`rnnlab.train.export.load`) must never see a directory that
mixes two versions, such as new weights beside an old manifest naming the old step, and a
writer that dies half way must leave the previous version intact. orbax does the same for
checkpoints (``<step>.orbax-checkpoint-tmp`` renamed when complete).

Locally the new directory is written as ``.<name>.<hex>.tmp`` beside the target. A target
that does not exist yet is created by one ``rename``. An existing one is swapped with the
new one by ``renameat2(RENAME_EXCHANGE)`` (Linux 3.15+, one atomic step) and the old
version, now at the temporary name, is deleted. Where the kernel or file system lacks the
exchange, the old version is first renamed to ``.<name>.<hex>.old`` and the new one renamed
into place: a death between the two renames leaves no target but the old version kept
under that name.

On object stores (``gs://``) nothing renames a folder in one step: the manifest (the file a
reader checks first) is deleted before the other files are rewritten and written last, so
a death half way leaves a directory that reads as "not an export" rather than a mix.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import uuid
from collections.abc import Callable

from rnnlab.train import files

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Swaps the paths ``a`` and ``b`` atomically; False where the system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # no exchange here
        return False
    raise OSError(code, os.strerror(code), a, None, b)


def directory(out: str, write: Callable[[str], None], manifest: str | None = None) -> str:
    """Calls ``write(tmp)`` to fill a new folder, then makes it ``out`` in one step.

    Args:
      out: the target directory (local or ``gs://``).
      write: fills the directory it is given with every file of the new version.
      manifest: on object stores, the file written last and deleted first (module
        docstring); ignored locally.

    Returns:
      ``out``. On failure the temporary folder is removed and ``out`` is as it was.
    """
    if files.is_remote(out):
        if manifest is not None:
            old = files.path(files.join(out, manifest))
            if old.exists():
                old.unlink()
        files.makedirs(out)
        write(out)
        return out
    target = os.path.abspath(os.path.expanduser(out))
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    os.mkdir(tmp)
    try:
        write(tmp)
        if not os.path.lexists(target):
            os.rename(tmp, target)
            return out
        if not os.path.isdir(target) or os.path.islink(target):
            raise NotADirectoryError(f"{target} exists and is not a directory; remove it")
        if _exchange(tmp, target):
            shutil.rmtree(tmp)
            return out
        old = os.path.join(parent, f".{name}.{uuid.uuid4().hex[:8]}.old")
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old)
        return out
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
