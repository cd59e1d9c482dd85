"""When rnnlab may prepare a dataset, and what the prepared copy may reveal.

Preparing a dataset reads the files its config names (``data.path``) and writes array_record
copies under its data directory (``data.data_dir``). A workdir's ``config.json`` names both,
and a workdir may come from someone else: a reader of the workdir (``rnnlab eval``,
``sample``) must not copy a private file to a place that config chooses. Inside
:func:`prepared_only` a dataset that is not prepared yet raises :class:`NotPreparedError`
instead of being prepared; the command line enters it when the data options come from the
workdir alone, not from the user's ``--config``.

The prepared copy holds the source's text or numbers, so it is no more readable than its
sources: :func:`restrict_to_sources` clears every permission bit that some source lacks
(a 0600 file prepares to 0600 array_record files, not 0644).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

_REASON: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "rnnlab_prepared_only", default=None
)


class NotPreparedError(ValueError):
    """A dataset would have to be prepared where preparing is not allowed."""


@contextlib.contextmanager
def prepared_only(reason: str) -> Iterator[None]:
    """Within the block, datasets are only opened, never prepared; ``reason`` ends the
    error (what the user can do instead)."""
    token = _REASON.set(reason)
    try:
        yield
    finally:
        _REASON.reset(token)


def check_may_prepare(what: str) -> None:
    """Raises :class:`NotPreparedError` naming ``what`` inside :func:`prepared_only`."""
    reason = _REASON.get()
    if reason is not None:
        raise NotPreparedError(f"{what} is not prepared; {reason}")


def restrict_to_sources(directory: str | os.PathLike, sources: Sequence[Path]) -> None:
    """Clears, on every file under ``directory``, the permission bits that any of the local
    ``sources`` lacks (no-op without sources or for remote directories)."""
    text = os.fspath(directory)
    if not sources or "://" in text or not os.path.isdir(text):
        return
    allowed = 0o777
    for source in sources:
        allowed &= stat.S_IMODE(os.stat(source).st_mode)
    for root, _, names in os.walk(text):
        for name in names:
            path = os.path.join(root, name)
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if mode & ~allowed and not os.path.islink(path):
                os.chmod(path, mode & allowed)
