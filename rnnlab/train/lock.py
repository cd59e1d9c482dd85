"""One run per workdir: an exclusive lock, ``<workdir>/run.lock``, held while a run trains.

Two runs on one workdir would interleave their metric records and checkpoints and overwrite
each other's config and summary, so the second one is refused in one line that names the
host and process holding the lock.

- **Local disks** (and any POSIX file system with working ``flock``): the lock is an
  ``flock`` on ``run.lock``, which holds the holder's host, pid and start time as JSON. The
  kernel drops the ``flock`` when its process dies, however it dies (SIGKILL included), so a
  stale file left by a dead run is simply taken over, with a note naming the dead run. NFS
  before v4 may not honour ``flock`` across machines.
- **Cloud Storage** (``gs://``, through fsspec): the lock is an object created with mode
  ``"xb"``, which gcsfs turns into a write with the precondition ``ifGenerationMatch=0``: of
  two runs creating it, exactly one succeeds. Nothing releases an object when its process is
  killed, so a leftover lock is taken over only when it names a process of *this* host that
  no longer runs; one written by another host is refused with its host and pid and the
  advice to delete the object once that run is known to be gone.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from rnnlab.train import files

LOCK_FILE = "run.lock"


class WorkdirLockedError(RuntimeError):
    """Another live run holds the workdir's lock."""


def _me() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": round(time.time(), 3)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"


def _parse(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


class WorkdirLock:
    """The exclusive lock of ``workdir`` (module docstring); a context manager.

    Args:
      workdir: the run's directory (local or ``gs://``); created if missing.
      note: called with a one-line note when a stale lock is taken over.
    """

    def __init__(self, workdir: str, *, note: Callable[[str], None] = print):
        self._remote = files.is_remote(workdir)
        # Remote paths are joined as text: fsspec, not etils, opens them here.
        self.path = (
            f"{workdir.rstrip('/')}/{LOCK_FILE}" if self._remote else files.join(workdir, LOCK_FILE)
        )
        self.workdir = workdir
        self.note = note
        self._fd: int | None = None
        self.held = False

    def refused(self, holder: dict[str, Any]) -> WorkdirLockedError:
        what = "delete it if that run is gone" if self._remote else "wait for it or stop it"
        return WorkdirLockedError(
            f"workdir {self.workdir} is in use by another run ({_describe(holder)}, lock "
            f"{self.path}): {what}, or train in another workdir"
        )

    def acquire(self) -> WorkdirLock:
        """Takes the lock or raises :class:`WorkdirLockedError`."""
        if self._remote:  # object stores have no folders to create
            self._acquire_remote()
        else:
            files.makedirs(self.workdir)
            self._acquire_local()
        self.held = True
        return self

    # -- local: flock ------------------------------------------------------------------------
    def _acquire_local(self) -> None:
        import fcntl

        path = os.path.abspath(os.path.expanduser(self.path))
        while True:
            # A link planted at run.lock would make the lock truncate its target.
            fd = files.open_nofollow(path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _parse(os.pread(fd, 4096, 0).decode(errors="replace"))
                os.close(fd)
                raise self.refused(holder) from None
            # A holder that released (unlinked) the file between our open and our flock
            # leaves us locking an orphan inode: start again on the file now at the path.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _parse(os.pread(fd, 4096, 0).decode(errors="replace"))
        if previous:
            self.note(
                f"took over the lock of an earlier run that ended without releasing it "
                f"({_describe(previous)}, no longer running)"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_me()).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    # -- remote: create-if-absent ------------------------------------------------------------
    def _acquire_remote(self) -> None:
        import fsspec

        fs, path = fsspec.core.url_to_fs(self.path)
        for _ in range(2):
            try:
                with fs.open(path, "xb") as f:
                    f.write(json.dumps(_me()).encode())
                return
            except FileExistsError:
                holder = _parse(fs.cat_file(path).decode(errors="replace"))
            same_host = holder.get("host") == socket.gethostname()
            if not (same_host and isinstance(holder.get("pid"), int)) or _alive(holder["pid"]):
                raise self.refused(holder)
            self.note(f"took over the lock of an earlier run ({_describe(holder)}, not running)")
            fs.rm_file(path)
        raise self.refused({})

    def release(self) -> None:
        """Gives the lock up (idempotent)."""
        if not self.held:
            return
        self.held = False
        if self._remote:
            import fsspec

            fs, path = fsspec.core.url_to_fs(self.path)
            try:
                fs.rm_file(path)
            except FileNotFoundError:
                pass
            return
        # Unlink while still holding the flock: a run waiting on this inode re-checks it.
        try:
            os.unlink(os.path.abspath(os.path.expanduser(self.path)))
        except FileNotFoundError:
            pass
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
