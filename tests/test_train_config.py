"""Experiment configs: loading, command-line overrides and validation that names the key."""

import os

import pytest
from fake_data import FakeSource

from rnnlab.train import config as cfg_lib
from rnnlab.train import loop
from rnnlab.train.config import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHARLM = os.path.join(REPO, "experiments", "charlm.py")


def test_variants_load_locked():
    main, small = cfg_lib.load(CHARLM), cfg_lib.load(CHARLM + ":small")
    assert main.data.name == small.data.name == "austen"
    assert small.train.steps < main.train.steps
    with pytest.raises(AttributeError):
        main.new_key = 1  # locked: no new keys
    with pytest.raises(ValueError, match="variant"):
        cfg_lib.load(CHARLM + ":huge")


def test_overrides_are_parsed_as_the_field_type():
    c = cfg_lib.load(CHARLM + ":small")
    cfg_lib.override(
        c,
        [
            "optim.lr=3e-4",
            "config.train.steps=7",
            "train.async_checkpoints=false",
            "optim.freeze=('^embed/', 'head')",
            "sample.prompt=Emma",
        ],
    )
    assert c.optim.lr == 3e-4 and isinstance(c.optim.lr, float)
    assert c.train.steps == 7 and c.train.async_checkpoints is False
    assert c.optim.freeze == ("^embed/", "head") and c.sample.prompt == "Emma"


def test_command_line_overrides_are_split_from_other_arguments():
    rest, overrides = cfg_lib.split_argv(
        ["--workdir", "w", "--config.optim.lr=1e-3", "--config.train.steps", "5"]
    )
    assert rest == ["--workdir", "w"]
    assert overrides == ["config.optim.lr=1e-3", "config.train.steps=5"]


@pytest.mark.parametrize(
    "assignment, key, text",
    [
        ("optim.lrr=1e-3", "optim.lrr", "did you mean 'optim.lr'"),
        ("trian.steps=5", "trian.steps", "did you mean 'train.steps'"),
        ("train.steps=five", "train.steps", "expected a int"),
        ("train", "train", "key=value"),
    ],
)
def test_bad_overrides_name_the_key(assignment, key, text):
    with pytest.raises(ConfigError, match=text) as info:
        cfg_lib.override(cfg_lib.load(CHARLM), [assignment])
    assert info.value.key == key


def _fake(**changes):
    c = cfg_lib.base_config()
    c.data.name = "fake_lm"
    c.model.hidden_features = 8
    c.train.batch_size = 16
    for key, value in changes.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg_lib.lock(c)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"optim.lr": -1e-3}, "optim.lr"),
        ({"optim.optimizer": "adagrad"}, "optim.optimizer"),
        ({"optim.schedule": "cosine", "optim.warmup_steps": 5000}, "optim.total_steps"),
        ({"train.batch_size": 12}, "train.batch_size"),  # 8 devices in the tests
        ({"eval.batch_size": 4}, "eval.batch_size"),
        ({"train.steps": 0}, "train.steps"),
        ({"data.name": "no_such_dataset"}, "data.name"),
        ({"data.name": ""}, "data.name"),
        ({"model.hiden_features": 8}, "model.hiden_features"),
        ({"model.name": "transformer"}, "model.name"),
        ({"train.early_stopping.mode": "lowest"}, "train.early_stopping.mode"),
        ({"mesh.data": 3}, "mesh"),
    ],
)
def test_bad_values_fail_before_training_naming_the_key(tmp_path, changes, key):
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError) as info:
        loop.train(_fake(**changes), str(workdir), source=FakeSource())
    assert info.value.key == key or info.value.key.startswith(key + "."), str(info.value)
    assert key in str(info.value)
    assert not (workdir / "config.json").exists() and not (workdir / "metrics.jsonl").exists()


def test_missing_dataset_of_the_real_data_module_names_data_name(tmp_path):
    c = cfg_lib.load(CHARLM + ":small")
    cfg_lib.override(c, ["data.name=shakespeare_sonnets"])
    with pytest.raises(ConfigError, match="data.name") as info:
        loop.Run(c, str(tmp_path / "run"))
    assert "austen" in str(info.value)  # the message lists the datasets there are


def test_resolved_config_fills_derived_defaults():
    c = cfg_lib.resolved(_fake(**{"train.steps": 77}))
    assert c.optim.total_steps == 77 and c.eval.batch_size == 16
    again = cfg_lib.from_dict(cfg_lib.to_dict(c))
    assert cfg_lib.to_dict(again) == cfg_lib.to_dict(c)
