"""What goes wrong with a checkpoint, said in one line.

A checkpoint that vanished while it was read (the run beside the reader rotated it away) is
not damage (:class:`CheckpointVanishedError`); one that could not be written says where and
what is still intact (:class:`CheckpointWriteError`). orbax's and tensorstore's messages can
run to many kilobytes over several lines; :func:`describe_error` keeps the reason and the
path.
"""

from __future__ import annotations

import os
import re

from rnnlab.train.messages import strip_reprs


class CheckpointVanishedError(FileNotFoundError):
    """A checkpoint deleted while it was read (the run training in the workdir rotated it
    away): not damage, and never reported as corruption."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the message names the step, the directory, the
    cause and the newest checkpoint that is still intact."""


_SPEC = re.compile(r"\s*\[tensorstore_spec='.*?'\]", re.S)
# Reprs that some bindings put in their messages (pybind11's bound methods, objects).
_REPRS = re.compile(r"<bound method [^<>]*(?:<[^<>]*>)?[^<>]*>|<[\w.]+ object at 0x[0-9a-f]+>")
_OS_CODE = re.compile(r"os_error_code='?(\d+)")


def describe_error(cause: BaseException, limit: int = 400) -> str:
    """``cause`` as one short line: tensorstore's JSON specs dropped, whitespace collapsed,
    cut at ``limit`` characters, the operating system's reason (``No space left on
    device``) kept even where the cut would lose it. orbax's messages can run to many
    kilobytes over several lines; the user needs the reason and the path."""
    raw = str(cause)
    text = " ".join(strip_reprs(_REPRS.sub("", _SPEC.sub("", raw))).split())
    if len(text) > limit:
        text = text[:limit] + " ..."
    reasons = [os.strerror(int(c)) for c in _OS_CODE.findall(raw)]
    errno_ = getattr(cause, "errno", None)
    if isinstance(errno_, int):
        reasons.append(os.strerror(errno_))
    for reason in dict.fromkeys(reasons):
        if reason not in text:
            text += f" ({reason})"
    return f"{type(cause).__name__}: {text}"
