"""Third-party chatter kept out of a library call.

TFDS announces "Using custom data configuration ..." for every builder config, and orbax
warns "Given directory is read only" each time it opens checkpoints for reading; both go
through absl's Python logger. Neither says anything wrong to a caller of ``rnnlab.data`` or
``rnnlab.train.export``: :func:`absl_quiet` holds that logger at ERROR for the call's
duration. Errors still show.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def absl_quiet() -> Iterator[None]:
    """Inside the block, absl's logger passes errors only; its level is restored after."""
    logger = logging.getLogger("absl")
    before = logger.level
    logger.setLevel(max(logging.ERROR, before))
    try:
        yield
    finally:
        logger.setLevel(before)
