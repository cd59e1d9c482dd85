"""Validation splits carved from a training split, stratified by class.

A dataset without its own validation split gives ``validation_fraction`` of every class to
validation, spread evenly over the class's examples in file order. Carving the tail of the
file instead fails on archives sorted by speaker or class: JapaneseVowels' last 10 % is 27
examples of one speaker, so validation then holds a single class and training keeps three
examples of it. :func:`check_coverage` names the classes a validation split lacks.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np


class SplitCoverageWarning(UserWarning):
    """A validation split lacks classes that the training split holds."""


def stratified(labels: Sequence[int], fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` indices into ``labels``, each sorted.

    Every class of ``n >= 2`` examples gives ``max(1, round(fraction * n))`` of them (at
    most ``n - 1``) to validation, evenly spaced through the class in file order; a class
    of one example stays in training.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), received {fraction}")
    labels = np.asarray(labels)
    held = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n = len(members)
        if n < 2:
            continue
        m = min(max(1, int(round(fraction * n))), n - 1)
        # The middle of each of m equal slices of the class: spread, and deterministic.
        picks = ((2 * np.arange(m) + 1) * n) // (2 * m)
        held[members[picks]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


class Subset:
    """``source[indices[i]]`` as a random-access source of ``len(indices)`` examples."""

    def __init__(self, source: Any, indices: np.ndarray):
        self.source, self.indices = source, np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.source[int(self.indices[i])]


def check_coverage(
    name: str, train_labels: Sequence[int], validation_labels: Sequence[int], names=None
) -> list[int]:
    """Warns (:class:`SplitCoverageWarning`) when validation lacks classes of training;
    returns the missing classes. Accuracy measured on such a split, and the best checkpoint
    chosen on it, say nothing about the missing classes."""
    missing = sorted(
        set(np.asarray(train_labels).tolist()) - set(np.asarray(validation_labels).tolist())
    )
    if missing:
        shown = [names[c] if names is not None else c for c in missing[:8]]
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        warnings.warn(
            f"{name}: the validation split lacks {len(missing)} of the training split's "
            f"classes ({', '.join(map(str, shown))}{more}); its accuracy and the best "
            "checkpoint chosen on it ignore them. Set data.validation_fraction higher.",
            SplitCoverageWarning,
            stacklevel=2,
        )
    return missing
