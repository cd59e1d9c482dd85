"""File access for what a run writes and reads, local or on Cloud Storage, by one code path.

Every path goes through :mod:`etils.epath`: a local path uses the operating system, a
``gs://`` path (also ``s3://``, ``az://``) uses ``tf.io.gfile`` when TensorFlow is installed
and ``fsspec`` (``gcsfs``, the ``gcs`` extra) otherwise. Checkpoints go through orbax, which
uses the same paths. A file is written to a temporary name and then renamed over the old
one, so a reader (or a preempted run) never sees half a file. Files that grow
(``metrics.jsonl``) are appended to on local disks (:func:`append_text`); Cloud Storage
objects cannot be appended to, so there they are rewritten whole, batched (see
:mod:`rnnlab.train.metric_log`).
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from etils import epath


def path(p: str | os.PathLike) -> epath.Path:
    """``p`` as an ``epath.Path``; ``~`` expanded for local paths."""
    text = os.fspath(p)
    return epath.Path(text if "://" in text else os.path.expanduser(text))


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base/part/...`` as a string (``gs://`` prefixes kept)."""
    return os.fspath(path(base).joinpath(*parts))


def absolute(p: str | os.PathLike) -> str:
    """An absolute local path, or a remote one unchanged (for summaries and messages)."""
    text = os.fspath(p)
    return text if "://" in text else os.path.abspath(os.path.expanduser(text))


def exists(p: str | os.PathLike) -> bool:
    return path(p).exists()


def is_dir(p: str | os.PathLike) -> bool:
    return path(p).is_dir()


def makedirs(p: str | os.PathLike) -> None:
    path(p).mkdir(parents=True, exist_ok=True)


def read_text(p: str | os.PathLike) -> str:
    return path(p).read_text()


def write_bytes(p: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to a temporary sibling, then renames it over ``p``.

    Locally the temporary file is created exclusively and without following a symlink (a
    workdir from someone else may hold links), and the rename replaces a link at ``p``
    rather than writing through it. A failed write removes the temporary file and raises
    an OSError naming ``p`` (``No space left on device`` alone does not say where).
    """
    target = path(p)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        if is_remote(p):
            tmp.write_bytes(data)
        else:
            fd = os.open(os.fspath(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        tmp.replace(target)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise named(e, p) from e


def named(error: OSError, p: str | os.PathLike) -> OSError:
    """``error`` with ``p`` as its file name when it names none (same type and errno)."""
    if error.filename is not None or error.errno is None:
        return error
    return type(error)(error.errno, error.strerror, os.fspath(p))


def write_text(p: str | os.PathLike, text: str) -> None:
    """Atomic like :func:`write_bytes`."""
    write_bytes(p, text.encode("utf-8"))


def is_remote(p: str | os.PathLike) -> bool:
    """Whether ``p`` is a URL (``gs://`` ...) rather than a local path."""
    return "://" in os.fspath(p)


def append_text(p: str | os.PathLike, text: str) -> None:
    """Appends ``text`` to the local file ``p`` (created if missing) and flushes it to the
    operating system; remote objects cannot be appended to (NotImplementedError). A
    symlink at ``p`` is refused (:class:`SymlinkError`) rather than written through."""
    if is_remote(p):
        raise NotImplementedError(f"{os.fspath(p)}: remote objects cannot be appended to")
    fd = open_nofollow(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(text)


class BadPathError(ValueError):
    """A path rnnlab cannot hand to its storage libraries (bad input, exit status 2)."""


def check_path(p: str | os.PathLike, what: str = "workdir") -> str:
    """``p`` as text, or :class:`BadPathError` when it is not valid UTF-8: orbax and
    tensorstore take paths as UTF-8 strings, and such a path failed at the first checkpoint
    with a pybind11 cast error and advice to free disk space."""
    text = os.fsdecode(p)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise BadPathError(
            f"{what} path {shown} is not valid UTF-8, which the checkpoint library needs; rename it"
        ) from None
    return text


class SymlinkError(OSError):
    """A file rnnlab writes in a workdir is a symbolic link: refused, never followed."""


# O_NOFOLLOW is POSIX; elsewhere the lstat check in open_nofollow stands alone.
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def open_nofollow(p: str | os.PathLike, flags: int, mode: int = 0o644) -> int:
    """``os.open(p, flags | O_NOFOLLOW)``: a file descriptor of the local file ``p``, or
    :class:`SymlinkError` naming ``p`` when it is a symbolic link (dangling or not), so
    that a link planted in a workdir cannot make a run write elsewhere."""
    text = os.path.abspath(os.path.expanduser(os.fspath(p)))
    try:
        return os.open(text, flags | NOFOLLOW, mode)
    except OSError as e:
        if os.path.islink(text):
            raise SymlinkError(
                f"{text} is a symbolic link (to {os.readlink(text)!r}); rnnlab does not write "
                "through links in a workdir: remove it",
            ) from None
        raise named(e, text) from e


def write_json(p: str | os.PathLike, obj: Any) -> None:
    """Pretty, key-sorted JSON with a final newline, written atomically."""
    write_text(p, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(p: str | os.PathLike) -> Any:
    return json.loads(read_text(p))
