"""The TPU variants of the experiments (docs/tpu.md, "TPU recipes"): each loads, is checked
by the trainer's config validation for its slice, and has the documented sizes."""

import pytest

from experiments import tpu_slices
from rnnlab.train import config as cfg_lib

# (spec, model size, batch per chip on v5e / v6e), as the experiments' docstrings state them.
RECIPES = [
    ("experiments/charlm.py:tpu", "v5e", {"hidden_features": 1024, "num_layers": 2}, 32),
    ("experiments/charlm.py:tpu,v6e", "v6e", {"hidden_features": 1024, "num_layers": 2}, 64),
    ("experiments/wordlm.py:tpu", "v5e", {"hidden_features": 1500, "num_layers": 2}, 16),
    ("experiments/wordlm.py:tpu,v6e", "v6e", {"hidden_features": 1500, "num_layers": 2}, 32),
    ("experiments/seqmnist.py:tpu", "v5e", {"hidden_features": 100, "cell": "irnn"}, 16),
    ("experiments/seqmnist.py:irnn,tpu", "v5e", {"hidden_features": 100, "cell": "irnn"}, 16),
    (
        "experiments/seqmnist.py:bn_lstm,permuted,tpu,v6e",
        "v6e",
        {"hidden_features": 100, "cell": "bn_lstm"},
        32,
    ),
]


@pytest.mark.parametrize("spec, generation, model, per_chip", RECIPES)
def test_tpu_variant_loads_and_fits_its_slice(spec, generation, model, per_chip):
    config = cfg_lib.load(spec)
    chips = tpu_slices.SLICES[generation]["chips"]
    hosts = {"v5e": 4, "v6e": 1}[generation]  # v5litepod-16: 4 hosts; v6e-8: 1 host
    assert config.train.batch_size == per_chip * chips
    assert config.eval.batch_size == config.train.batch_size
    assert config.model.dtype == "bfloat16"
    assert dict(config.mesh) == {"data": -1}
    for key, value in model.items():
        assert config.model[key] == value, key
    # The trainer's own checks for this slice: every chip on the data axis, one process a host.
    cfg_lib.validate(
        cfg_lib.resolved(config),
        {"num_devices": chips, "data_parallel": chips, "process_count": hosts},
    )


def test_permuted_and_cell_parts_survive_the_tpu_parts():
    config = cfg_lib.load("experiments/seqmnist.py:bn_lstm,permuted,tpu,v6e")
    assert config.data.permuted and config.model.cell == "bn_lstm"
    assert config.model.cell_kwargs["max_stat_steps"] == 784


def test_the_other_variants_are_unchanged():
    assert cfg_lib.load("experiments/charlm.py").train.batch_size == 32
    assert cfg_lib.load("experiments/charlm.py").model.dtype == "float32"
    assert cfg_lib.load("experiments/wordlm.py:large").train.batch_size == 20
    assert cfg_lib.load("experiments/seqmnist.py:irnn").train.batch_size == 64


@pytest.mark.parametrize(
    "spec, message",
    [
        ("experiments/charlm.py:tpu,v7", "charlm variant must be"),
        ("experiments/charlm.py:v6e", "a TPU generation needs the 'tpu' part"),
        ("experiments/wordlm.py:large,tpu", "wordlm variant must be one of"),
        ("experiments/seqmnist.py:irnn,tpu,v5e,v6e", "one TPU generation"),
    ],
)
def test_bad_tpu_variants_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        cfg_lib.load(spec)
