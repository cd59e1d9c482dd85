"""Splits carved from a user's own classification file hold every class in proportion,
whatever the file's order (a file sorted by class is the common case)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from rnnlab.data import own, sequence_files
from rnnlab.data.splits import SplitCoverageWarning


def _sorted_by_class(counts):
    labels = np.repeat(np.arange(len(counts)), counts)
    seqs = [np.full((4, 2), float(i), np.float32) for i in range(len(labels))]
    return sequence_files.Records(seqs, labels, list(range(len(labels))), "own.npz")


def test_carved_validation_and_test_take_the_fraction_of_every_class():
    counts = [40, 20, 60, 30]
    records = _sorted_by_class(counts)
    cfg = {"validation_fraction": 0.1, "test_fraction": 0.2, "split_seed": 3}
    split = own.split_records(cfg, {"train": records}, stratify=True)
    for name, fraction in (("validation", 0.1), ("test", 0.2)):
        held = np.bincount(split[name].labels, minlength=4)
        # Counted by hand: the fraction of each class (rounded), never a class left out.
        np.testing.assert_allclose(held, np.array(counts) * fraction, atol=1)
        assert held.min() >= 1
    seen = np.concatenate([s.labels for s in split.values()])
    assert np.array_equal(np.bincount(seen), counts)  # nothing lost, nothing repeated
    ids = np.concatenate([s.ids for s in split.values()])
    assert len(set(ids.tolist())) == sum(counts)


def test_a_validation_file_lacking_classes_of_training_is_named_in_a_warning():
    train = _sorted_by_class([5, 5, 5])
    validation = sequence_files.Records(
        [np.zeros((4, 2), np.float32)] * 2, np.array([0, 0]), [0, 1], "val.npz"
    )
    splits = {"train": train, "validation": validation, "test": validation}
    with pytest.warns(SplitCoverageWarning, match="lacks 2 of the training split's classes"):
        own.Prepared("classification", {}, splits)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SplitCoverageWarning)
        own.Prepared("classification", {}, {**splits, "validation": train})
