"""Any TFDS dataset by name: a user's own builder trained through ``rnnlab train`` and
scored against NumPy on ``rnnlab predict``'s output, and a catalog set under
``tfds.testing.mock_data``."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds

from rnnlab import cli, data

BUILDER = '''
import numpy as np
import tensorflow_datasets as tfds


class ToySigns(tfds.core.GeneratorBasedBuilder):
    """Variable-length 2-channel sequences; the label is the sign of channel 0's mean."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "inputs": tfds.features.Tensor(shape=(None, 2), dtype=np.float32),
                "label": tfds.features.ClassLabel(names=["neg", "pos"]),
            }),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 96), "test": self._generate_examples(1, 32)}

    def _generate_examples(self, seed, n):
        rng = np.random.default_rng(seed)
        for i in range(n):
            x = rng.normal(size=(int(rng.integers(3, 10)), 2)).astype(np.float32)
            yield i, {"inputs": x, "label": int(x[:, 0].mean() > 0)}
'''


def test_own_builder_trains_by_name_and_matches_numpy(tmp_path, monkeypatch, capsys):
    (tmp_path / "toy_signs.py").write_text(textwrap.dedent(BUILDER))
    monkeypatch.syspath_prepend(str(tmp_path))
    import toy_signs  # the user's module: defining the class registers the builder

    tfds_dir = tmp_path / "tfds"
    builder = toy_signs.ToySigns(data_dir=str(tfds_dir), file_format="array_record")
    builder.download_and_prepare(file_format="array_record")  # what `tfds build` does
    workdir = tmp_path / "run"
    args = ["train", "--config", "experiments/own_data.py:classification,small",
            "--workdir", str(workdir), "--config.data.name=tfds_classification",
            "--config.data.tfds_name=toy_signs", "--config.data.tfds_module=toy_signs",
            f"--config.data.tfds_data_dir={tfds_dir}"]  # fmt: skip
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(["eval", "--workdir", str(workdir), "--split", "test"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    # The test split read straight from TFDS, written as arrays for rnnlab predict.
    src = tfds.data_source("toy_signs", split="test", data_dir=str(tfds_dir))
    seqs = [np.asarray(src[i]["inputs"]) for i in range(len(src))]
    labels = np.array([int(src[i]["label"]) for i in range(len(src))])
    lengths = np.array([len(s) for s in seqs])
    np.savez(tmp_path / "test.npz", inputs=np.concatenate(seqs), lengths=lengths)
    out = tmp_path / "pred.npz"
    args = ["predict", "--workdir", str(workdir), "--input", str(tmp_path / "test.npz"),
            "--output", str(out), "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    with np.load(out) as p:
        probs = p["probabilities"]
        assert list(p["classes"]) == ["neg", "pos"]
    assert metrics["accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == labels)), abs=1e-6)
    assert metrics["loss"] == pytest.approx(
        float(-np.mean(np.log(probs[np.arange(len(labels)), labels]))), rel=1e-4
    )
    sys.modules.pop("toy_signs", None)


def test_catalog_dataset_with_a_feature_mapping_under_mock_data(tmp_path):
    cfg = {"name": "tfds_classification", "tfds_name": "mnist", "data_dir": str(tmp_path),
           "features": {"inputs": "image", "labels": "label"}, "scale": 1 / 255}  # fmt: skip
    with tfds.testing.mock_data(num_examples=16):
        info = data.info(cfg)
        batch = next(data.load(cfg, split="test", batch_size=16, seed=0, repeat=False))
        src = tfds.data_source("mnist", split="test", data_dir=str(tmp_path))
        images = np.stack([src[i]["image"] for i in range(16)])
        labels = np.array([src[i]["label"] for i in range(16)])
    assert info["num_classes"] == 10 and info["input_features"] == 28 and info["seq_len"] == 28
    # Row-by-row sequences: image [28, 28, 1] / 255 as 28 steps of 28 values, in order.
    np.testing.assert_allclose(batch["inputs"], images[..., 0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(batch["labels"], labels)


def test_an_unknown_feature_is_named(tmp_path):
    cfg = {"name": "tfds_classification", "tfds_name": "mnist", "data_dir": str(tmp_path),
           "features": {"inputs": "pixels"}}  # fmt: skip
    with tfds.testing.mock_data(num_examples=4), pytest.raises(ValueError, match="'pixels'"):
        data.info(cfg)


SORTED_BUILDER = '''
import numpy as np
import tensorflow_datasets as tfds


class SortedSigns(tfds.core.GeneratorBasedBuilder):
    """Train sorted by class (30 of class 0, then 10 of class 1), no validation split."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "inputs": tfds.features.Tensor(shape=(None, 1), dtype=np.float32),
                "label": tfds.features.ClassLabel(names=["a", "b"]),
            }),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(40), "test": self._generate_examples(8)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"inputs": np.full((3, 1), i, np.float32), "label": int(i >= 3 * n // 4)}
'''


def test_a_validation_split_carved_from_a_sorted_train_holds_every_class(tmp_path, monkeypatch):
    (tmp_path / "sorted_signs.py").write_text(textwrap.dedent(SORTED_BUILDER))
    monkeypatch.syspath_prepend(str(tmp_path))
    import sorted_signs

    from rnnlab.data import tfds_sequences

    tfds_dir = tmp_path / "tfds"
    sorted_signs.SortedSigns(
        data_dir=str(tfds_dir), file_format="array_record"
    ).download_and_prepare(file_format="array_record")
    cfg = {"tfds_name": "sorted_signs", "tfds_module": "sorted_signs",
           "tfds_data_dir": str(tfds_dir), "validation_fraction": 0.2}  # fmt: skip
    splits = ["train", "test"]
    val = tfds_sequences._source(cfg, "validation", splits, "classification")
    train = tfds_sequences._source(cfg, "train", splits, "classification")
    val_labels = sorted(int(val[i]["label"]) for i in range(len(val)))
    # 20 % of each class, counted by hand: 6 of the 30 a's and 2 of the 10 b's.
    assert val_labels == [0] * 6 + [1] * 2
    seen = [float(val[i]["inputs"][0, 0]) for i in range(len(val))]
    seen += [float(train[i]["inputs"][0, 0]) for i in range(len(train))]
    assert sorted(seen) == list(range(40))  # every record once, none lost


# A builder of 2-channel sequences of 3 to 9 steps, whose "label" feature is {feature}
# computed by {label} from the inputs x; one module per builder, since a module imported
# twice would register its builder twice.
TEMPLATE = """
import numpy as np
import tensorflow_datasets as tfds


class {name}(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({{
                "inputs": tfds.features.Tensor(shape=(None, 2), dtype=np.float32),
                "label": {feature},
            }}),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {{"train": self._generate_examples(0, 96), "test": self._generate_examples(1, 32)}}

    def _generate_examples(self, seed, n):
        rng = np.random.default_rng(seed)
        for i in range(n):
            x = rng.normal(size=(int(rng.integers(3, 10)), 2)).astype(np.float32)
            yield i, {{"inputs": x, "label": {label}}}
"""
BUILDERS = {
    # Regression: the sum of channel 0.
    "toy_sums": TEMPLATE.format(
        name="ToySums",
        feature="tfds.features.Tensor(shape=(), dtype=np.float32)",
        label="np.float32(x[:, 0].sum())",
    ),
    # Tagging: each step is "up" when channel 0 is positive.
    "toy_tags": TEMPLATE.format(
        name="ToyTags",
        feature='tfds.features.Sequence(tfds.features.ClassLabel(names=["down", "up"]))',
        label="(x[:, 0] > 0).astype(np.int64)",
    ),
}


def _train_builder(tmp_path, monkeypatch, capsys, builder: str, name: str, task: str):
    """Prepares ``builder`` of :data:`BUILDERS` (module ``name``), trains ``tfds_<task>`` on
    it by name, and returns ``rnnlab eval``'s test metrics, the test split's examples and
    ``rnnlab predict``'s arrays on them."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(BUILDERS[name]))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)

    tfds_dir = tmp_path / "tfds"
    getattr(module, builder)(
        data_dir=str(tfds_dir), file_format="array_record"
    ).download_and_prepare(file_format="array_record")
    workdir = tmp_path / "run"
    args = ["train", "--config", f"experiments/own_data.py:{task},small",
            "--workdir", str(workdir), f"--config.data.name=tfds_{task}",
            f"--config.data.tfds_name={name}", f"--config.data.tfds_module={name}",
            f"--config.data.tfds_data_dir={tfds_dir}"]  # fmt: skip
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(["eval", "--workdir", str(workdir), "--split", "test"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    src = tfds.data_source(name, split="test", data_dir=str(tfds_dir))
    examples = [src[i] for i in range(len(src))]
    seqs = [np.asarray(e["inputs"]) for e in examples]
    np.savez(tmp_path / "test.npz", inputs=np.concatenate(seqs), lengths=[len(s) for s in seqs])
    args = ["predict", "--workdir", str(workdir), "--input", str(tmp_path / "test.npz"),
            "--output", str(tmp_path / "pred.npz"), "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    sys.modules.pop(name, None)
    with np.load(tmp_path / "pred.npz") as p:
        return metrics, examples, {k: p[k] for k in p.files}


def test_own_regression_builder_trains_by_name_and_matches_numpy(tmp_path, monkeypatch, capsys):
    metrics, examples, pred = _train_builder(
        tmp_path, monkeypatch, capsys, "ToySums", "toy_sums", "regression"
    )
    truth = np.array([float(e["label"]) for e in examples])
    mse = float(np.mean((pred["predictions"][:, 0] - truth) ** 2))
    assert metrics["mse"] == pytest.approx(mse, rel=1e-4)


def test_own_tagging_builder_trains_by_name_and_matches_numpy(tmp_path, monkeypatch, capsys):
    metrics, examples, pred = _train_builder(
        tmp_path, monkeypatch, capsys, "ToyTags", "toy_tags", "tagging"
    )
    tags = np.concatenate([np.asarray(e["label"]) for e in examples])  # every valid step
    assert list(pred["classes"]) == ["down", "up"] and len(pred["predictions"]) == len(tags)
    assert metrics["accuracy"] == pytest.approx(float(np.mean(pred["predictions"] == tags)))
    p_true = pred["probabilities"][np.arange(len(tags)), tags]
    assert metrics["loss"] == pytest.approx(float(-np.mean(np.log(p_true))), rel=1e-4)


def test_tags_that_do_not_match_the_steps_are_named(tmp_path):
    from rnnlab.data import tfds_sequences

    mapping = {"inputs": "inputs", "labels": "label", "lengths": None}
    example = {"inputs": np.zeros((4, 2)), "label": np.array([0, 1, 1])}
    with pytest.raises(ValueError, match=r"^toy train example 5: 3 tags for 4 steps of 'inputs'$"):
        tfds_sequences.tags(example, mapping, 4, 2, "toy train example 5")
    example["label"] = np.array([0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"tag 2 at time 2 is outside the 2 classes"):
        tfds_sequences.tags(example, mapping, 4, 2, "toy train example 5")
