"""Default validation splits of the classification datasets hold every training class,
and a split that does not is warned about."""

import warnings

import numpy as np
import pytest
import tensorflow_datasets as tfds

import rnnlab.data as data
from rnnlab.data import registry, splits

# The user's own files and TFDS datasets by name have no default data to load here: their
# carved splits are checked in tests/data/test_data_own_splits.py and
# tests/test_own_data_tfds.py.
USER_DATA = ("sequence_classification", "tfds_classification")
ALL = sorted(n for n in registry.names() if registry.get(n).task == "classification")
CLASSIFICATION = [n for n in ALL if n not in USER_DATA]


def _labels(cfg, split):
    """Every label of ``split``, read through the public loader (one unshuffled pass)."""
    out = []
    batches = data.load(cfg, split=split, batch_size=64, seed=0, repeat=False)
    for batch in batches:
        out += batch["labels"][batch["weights"] > 0].tolist()
    return np.array(out)


def test_every_classification_dataset_is_covered_here():
    assert CLASSIFICATION == ["basic_motions", "japanese_vowels", "mnist", "mnist1d"]
    assert sorted(set(ALL) - set(CLASSIFICATION)) == sorted(USER_DATA)


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_default_validation_split_holds_every_training_class(name, data_root, tmp_path):
    cfg = {"name": name, "data_dir": str(data_root)}
    if name == "mnist":  # catalog data: offline, under TFDS's mock data
        cfg["data_dir"] = str(tmp_path)
        with tfds.testing.mock_data(num_examples=200):
            train, validation = _labels(cfg, "train"), _labels(cfg, "validation")
    else:
        train, validation = _labels(cfg, "train"), _labels(cfg, "validation")
    assert set(validation.tolist()) == set(train.tolist())
    # Per class, about the documented 10 %: never all of a class, never none of it.
    for c in np.unique(train):
        share = (validation == c).sum() / ((validation == c).sum() + (train == c).sum())
        assert 0.04 < share < 0.25, (c, share)


def test_japanese_vowels_validation_is_no_longer_one_speaker(data_root):
    cfg = {"name": "japanese_vowels", "data_dir": str(data_root)}
    validation = _labels(cfg, "validation")
    assert len(validation) == 27 and np.bincount(validation).tolist() == [3] * 9


def test_stratified_split_against_a_naive_count():
    labels = [0] * 30 + [1] * 10 + [2] * 1 + [3] * 2
    train, validation = splits.stratified(labels, 0.1)
    counts = np.bincount(np.asarray(labels)[validation], minlength=4).tolist()
    assert counts == [3, 1, 0, 1]  # round(3.0), round(1.0), one example stays, max(1, .2)
    assert sorted(train.tolist() + validation.tolist()) == list(range(len(labels)))
    # Spread through the class, not its tail: the first class's picks are 5, 15, 25.
    assert validation[:3].tolist() == [5, 15, 25]


def test_a_validation_split_without_some_classes_is_warned_about():
    with pytest.warns(splits.SplitCoverageWarning, match=r"lacks 2 of .*\(b, c\)"):
        missing = splits.check_coverage("toy", [0, 1, 2, 0], [0, 0], names=["a", "b", "c"])
    assert missing == [1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert splits.check_coverage("toy", [0, 1], [1, 0]) == []
