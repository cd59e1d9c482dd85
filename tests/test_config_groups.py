"""Every group is a frozen dataclass read through the one conversion: a dataset's options
come back from ``rnnlab.data.resolve`` as its group, and a model's group builds the model
the engine trains."""

import dataclasses
import re

import jax
import pytest
from flax import nnx

from rnnlab import data
from rnnlab.models.language_model import LanguageModelConfig
from rnnlab.options import ConfigError, Group
from rnnlab.train import config as cfg_lib
from rnnlab.train import state as state_lib


@pytest.mark.parametrize("name", data.names())
def test_every_dataset_declares_a_frozen_group_read_as_a_mapping(name):
    group = data.resolve({"name": name})
    assert dataclasses.is_dataclass(group) and isinstance(group, Group)
    fields = [f.name for f in dataclasses.fields(group)]
    assert sorted(group) == sorted(fields) == sorted(data.options(name))
    for key in fields:  # attribute, item and get read the same value
        assert getattr(group, key) is group[key] is group.get(key)
    with pytest.raises(dataclasses.FrozenInstanceError):
        group.name = "other"  # type: ignore[misc]


def test_a_dataset_group_fills_defaults_and_names_the_closest_unknown_key():
    group = data.resolve({"name": "adding", "seq_len": 7, "data_dir": None})
    assert (group.seq_len, group.eval_examples, group.num_threads) == (7, 1000, 2)
    with pytest.raises(
        ValueError, match="'seq_lenn': no such option of data 'adding'; did you mean 'seq_len'"
    ):
        data.resolve({"name": "adding", "seq_lenn": 7})


def test_the_converted_run_holds_the_dataset_group():
    config = cfg_lib.resolved(cfg_lib.override(cfg_lib.load("adding:ci"), ["data.seq_len=9"]))
    options = cfg_lib.validate(config)
    assert type(options.data).__name__ == "Adding" and options.data.seq_len == 9


# A dataset's value checks are its fields': refused where the group is resolved, by the
# library call (the key as given) and by validation (the key in the run config), before
# any data are read. The expected texts are written out here, not taken from the fields.
BAD_DATA = [
    ("adding", "seq_len", 0, "expected a positive integer, got 0"),
    ("copy", "copy_len", 2.5, "expected type int (default 10), got 2.5 of type float"),
    ("austen", "level", "token", "expected one of ['char', 'word'], got 'token'"),
    ("mnist", "pad_to", "longest", "expected one of ['batch', 'max'], got 'longest'"),
    ("spoken_digits", "synthesis_seed", -1, "expected an integer >= 0, got -1"),
    ("spoken_digits", "noisy_train", "yes", "expected type bool (default True), got 'yes'"),
]


@pytest.mark.parametrize("name, key, value, expected", BAD_DATA)
def test_a_dataset_value_its_field_refuses_names_the_key(name, key, value, expected):
    with pytest.raises(ConfigError, match=re.escape(f"config key {key!r}: {expected}")):
        data.info({"name": name, key: value, "data_dir": "/nonexistent"})
    config = cfg_lib.base_config()
    config.data.name = name
    cfg_lib.fill_defaults(config)
    with config.data.ignore_type():  # as a hand-written config may hold it
        config.data[key] = value
    with pytest.raises(ConfigError, match=re.escape(expected)) as info:
        cfg_lib.validate(cfg_lib.resolved(config))
    assert info.value.key == f"data.{key}"


@pytest.mark.parametrize(
    "shares, ok",
    [((0.8, 0.1, 0.1), True), ((0.8, 0.2, 0.0), False), ((0.5, 0.3, 0.3), False), ((1.0,), False)],
)
def test_split_fractions_are_three_positive_shares_summing_to_one(shares, ok):
    options = {"name": "austen", "split_fractions": shares}
    if ok:
        assert data.resolve(options).split_fractions == shares
        return
    with pytest.raises(ConfigError, match="'split_fractions': expected three positive"):
        data.resolve(options)


def test_the_model_group_builds_the_model_with_its_sizes():
    # The carry of an L-layer LSTM stack of width H is L pairs (c, h) of shape [B, H].
    cfg = LanguageModelConfig(embed_features=4, hidden_features=6, num_layers=2)
    model = cfg.build({"vocab_size": 11}, nnx.Rngs(0))
    shapes = [x.shape for x in jax.tree.leaves(model.init_carry(3))]
    assert shapes == [(3, 6)] * 4
    assert model.embed.embedding[...].shape == (11, 4)


def test_the_engine_builds_the_model_from_the_typed_group():
    config = cfg_lib.load("charlm:small")
    cfg_lib.override(config, ["model.hidden_features=12", "model.embed_features=5"])
    options = cfg_lib.convert(config)
    model = state_lib.build_model(options, {"vocab_size": 7, "task": "lm"})
    assert [x.shape for x in jax.tree.leaves(model.init_carry(2))] == [(2, 12)] * 2
    assert model.embed.embedding[...].shape == (7, 5)


def test_an_any_typed_field_without_a_check_keeps_its_defaults_type():
    """``param_dtype`` is typed ``Any`` but has no check, so its default's type (a dtype
    name) is still required; ``novels`` (typed ``Any`` with a check) takes a list."""
    config = cfg_lib.load("charlm:small")
    with config.model.ignore_type():
        config.model.param_dtype = 3
    with pytest.raises(ConfigError, match=re.escape("expected type str")):
        cfg_lib.validate(cfg_lib.resolved(config))
    assert data.resolve({"name": "austen", "novels": ["emma"]}).novels == ("emma",)
    with pytest.raises(ConfigError, match="'novels': expected \"all\" or a list of names"):
        data.resolve({"name": "austen", "novels": 3})
