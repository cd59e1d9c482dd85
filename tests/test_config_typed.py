"""The config converted once into typed groups: what ``validate`` returns holds the values
``config.json`` records, and a value a model refuses is an error of the model group."""

import dataclasses
import json

import pytest

from rnnlab.models.language_model import LanguageModelConfig
from rnnlab.train import config as cfg_lib
from rnnlab.train.config import ConfigError


def test_validate_returns_the_typed_groups_with_the_recorded_values():
    config = cfg_lib.resolved(cfg_lib.override(cfg_lib.load("charlm:small"), ["train.steps=70"]))
    options = cfg_lib.validate(config)
    recorded = json.loads(json.dumps(cfg_lib.to_dict(config)))  # as config.json holds it
    for group in ("train", "eval", "sharding", "sample", "debug", "optim"):
        typed = json.loads(json.dumps(dataclasses.asdict(getattr(options, group))))
        assert typed == recorded[group], group
    assert isinstance(options.model, LanguageModelConfig)
    model = {k: v for k, v in recorded["model"].items() if k != "name"}
    assert dataclasses.asdict(options.model) == model
    assert options.train.steps == 70 and options.model_name == "language_model"
    assert json.loads(json.dumps(dict(options.data))) == recorded["data"]
    assert options.seed == recorded["seed"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.train.steps = 80  # type: ignore[misc]


def test_a_model_that_refuses_a_value_is_an_error_of_the_model_group():
    from fake_data import FakeSource

    from rnnlab.train import loop

    c = cfg_lib.base_config()
    c.data.name = "fake_lm"
    c.model.hidden_features = 8
    c.model.dropout = 1.5  # the right type, a value LanguageModel refuses
    with pytest.raises(ConfigError, match="dropout must be in") as info:
        loop.Run(cfg_lib.lock(c), "/tmp/unused-run", source=FakeSource())
    assert info.value.key == "model"
