"""One source of defaults per config group: the model group from each model's config class
(held equal to its constructor's keyword defaults), the data group from each dataset's
declared options, the optimiser's from ``rnnlab.optim.Options``; every key recorded, every
typo named with the closest key."""

import importlib.util
import inspect
import json
import os
import typing

import numpy as np
import pytest

import rnnlab.data as data
from rnnlab import models, optim
from rnnlab.train import config as cfg_lib
from rnnlab.train import loop, state
from rnnlab.train.config import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(REPO, "experiments")
CHARLM = os.path.join(EXPERIMENTS, "charlm.py")


def _experiment_module(name):
    spec = importlib.util.spec_from_file_location(f"_schema_{name}", f"{EXPERIMENTS}/{name}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _specs() -> list[str]:
    """Every experiment file with each variant it declares (VARIANTS), else its default."""
    out = []
    for name in sorted(os.listdir(EXPERIMENTS)):
        if not name.endswith(".py") or name.startswith("_"):
            continue
        with open(os.path.join(EXPERIMENTS, name)) as f:
            text = f.read()
        if "def get_config" not in text:
            continue
        variants = [""]
        if "\nVARIANTS" in text:
            variants = list(_experiment_module(name).VARIANTS)
        out += [f"experiments/{name}:{v}" if v else f"experiments/{name}" for v in variants]
    return out


def _rows():
    try:
        from experiments import rows
    except ImportError:  # the results machinery in its own folder
        from experiments.results import rows  # type: ignore[no-redef]
    return [r for r in rows.ROWS] if hasattr(rows, "ROWS") else rows.all_rows()


# -- model ----------------------------------------------------------------------------------


def _constructor_defaults(name: str) -> dict:
    """Keyword arguments with defaults of the class the factory returns, by hand: the
    signature of every ``__init__`` along the ``**kwargs`` chain (dtypes by name)."""
    cls = typing.get_type_hints(models.config_class(name).build)["return"]
    out = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        for p in params:
            if p.default is not p.empty and p.name != "rngs" and p.kind is not p.VAR_KEYWORD:
                plain = p.default is None or isinstance(p.default, bool | int | float | str | tuple)
                out.setdefault(p.name, p.default if plain else np.dtype(p.default).name)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return out


@pytest.mark.parametrize("name", models.model_names())
def test_every_model_config_has_its_constructor_keywords_and_defaults(name):
    options = models.options(name)
    assert {k: o.default for k, o in options.items()} == _constructor_defaults(name)
    assert all(o.help for o in options.values())
    json.dumps({k: o.default for k, o in options.items()})  # recordable in config.json
    assert "dtype" in options  # base_config's model.dtype is a key of every model


def test_model_keys_left_out_take_the_config_default_and_are_recorded():
    c = cfg_lib.load(CHARLM + ":small")
    for key in models.options("language_model"):
        assert key in c.model
    assert c.model.tie_embeddings is False and c.model.param_dtype == "float32"
    # charlm.py names neither key: they come from LanguageModel's signature.
    cfg_lib.override(c, ["config.model.tie_embeddings=true", "model.rnn_kwargs={'unroll': 2}"])
    assert c.model.tie_embeddings is True
    built = state.model_config(c)  # every key reaches the model, the defaults too
    assert built.tie_embeddings is True and built.param_dtype == "float32"
    assert built.rnn_kwargs == {"unroll": 2}


def test_tie_embeddings_override_trains_and_lands_in_config_json(tmp_path):
    c = cfg_lib.load(CHARLM + ":small")
    cfg_lib.override(
        c,
        [
            "model.tie_embeddings=true",
            "train.steps=2",
            "optim.warmup_steps=0",
            "train.eval_every=0",
            "eval.max_batches=1",
            "train.batch_size=8",
        ],
    )
    with c.unlocked():
        c.data.name = "fake_lm"  # the engine's fake data: no corpus to prepare
        for key in list(c.data.keys()):
            if key != "name":
                del c.data[key]
    from fake_data import FakeSource

    loop.train(c, str(tmp_path / "run"), source=FakeSource())
    with open(tmp_path / "run" / "config.json") as f:
        saved = json.load(f)
    assert saved["model"]["tie_embeddings"] is True
    assert set(models.options("language_model")) <= set(saved["model"])
    assert set(optim.defaults()) == set(saved["optim"])
    again = cfg_lib.from_dict(saved)  # a resumed run reads back the same config
    assert cfg_lib.to_dict(again) == saved


def test_changing_the_model_name_swaps_the_defaults():
    c = cfg_lib.load(CHARLM + ":small")
    cfg_lib.override(c, ["model.name=video_predictor"])
    # Keys only the language model takes go; the ones charlm set stay; the rest are the
    # video predictor's defaults.
    assert set(c.model) == {"name", *models.options("video_predictor")}
    assert c.model.hidden_features == 64 and c.model.kernel_size == 5
    c = cfg_lib.load(CHARLM + ":small")
    cfg_lib.override(c, ["model.name=regularized_language_model"])
    assert c.model.regularization is None and c.model.hidden_features == 64


def test_changing_the_dataset_name_swaps_its_options():
    c = cfg_lib.load(CHARLM + ":small")
    cfg_lib.override(c, ["data.name=text_dir", "data.path=/tmp/corpus"])
    assert "novels" not in c.data and c.data.pattern == "**/*.txt"
    assert (
        c.data.path == "/tmp/corpus"
        and c.data.seq_len == cfg_lib.load(CHARLM + ":small").data.seq_len
    )


# -- typos in every group name the closest key -------------------------------------------------


@pytest.mark.parametrize(
    "assignment, key, closest",
    [
        ("model.tie_embedings=true", "model.tie_embedings", "model.tie_embeddings"),
        ("model.hiden_features=8", "model.hiden_features", "model.hidden_features"),
        ("data.seqlen=8", "data.seqlen", "data.seq_len"),
        ("data.novel=persuasion", "data.novel", "data.novels"),
        ("optim.warmup_step=3", "optim.warmup_step", "optim.warmup_steps"),
        ("train.step=3", "train.step", "train.steps"),
    ],
)
def test_override_typos_name_the_closest_key(assignment, key, closest):
    with pytest.raises(ConfigError, match=f"did you mean '{closest}'") as info:
        cfg_lib.override(cfg_lib.load(CHARLM + ":small"), [assignment])
    assert info.value.key == key


@pytest.mark.parametrize(
    "line, key, closest",
    [
        ("data.seq_lenn = 5", "data.seq_lenn", "data.seq_len"),
        ("model.num_layer = 2", "model.num_layer", "model.num_layers"),
    ],
)
def test_typos_in_an_experiment_file_are_errors_at_load(tmp_path, line, key, closest):
    path = tmp_path / "bad.py"
    path.write_text(
        "from rnnlab.train.config import base_config\n"
        "def get_config(arg=''):\n"
        "    c = base_config()\n"
        "    c.data.name = 'adding'\n"
        f"    c.{line}\n"
        "    return c\n"
    )
    with pytest.raises(ConfigError, match=f"did you mean '{closest}'") as info:
        cfg_lib.load(str(path))
    assert info.value.key == key


def test_a_typo_in_a_data_key_of_the_library_api_names_the_closest_option():
    with pytest.raises(ValueError, match="'seq_lenn': no such option.*'seq_len'"):
        data.info({"name": "adding", "seq_lenn": 10})


def test_unknown_optimiser_options_name_the_closest():
    with pytest.raises(TypeError, match="did you mean 'clip_norm'"):
        optim.build(clipnorm=1.0)


def test_optimiser_defaults_are_build_defaults():
    # The same chain from no arguments and from every default spelt out.
    assert optim.check() == optim.check(**optim.defaults())
    assert dict(cfg_lib.base_config().optim) == optim.defaults()


def test_every_base_key_and_option_has_a_help_line():
    c = cfg_lib.load(CHARLM + ":small")
    helps = cfg_lib.help_strings(c)
    # A dict-valued option (the regularisation recipe) is documented as one key.
    keys = {
        k.split(".regularization.")[0] + (".regularization" if ".regularization." in k else "")
        for k in cfg_lib.flat_keys(c)
    }
    assert not [k for k in keys if not helps.get(k)]
    assert "tie_embeddings" in cfg_lib.describe(c)


@pytest.mark.parametrize("name", data.names())
def test_every_registered_dataset_declares_its_options(name):
    options = data.options(name)
    assert "name" in options and all(o.help for o in options.values())
    json.dumps({k: o.default for k, o in options.items()})


# -- every experiment still loads, with the values it had ------------------------------------


@pytest.mark.parametrize("spec", _specs())
def test_every_experiment_and_variant_loads_complete(spec):
    c = cfg_lib.load(os.path.join(REPO, spec))
    assert set(models.options(c.model.name)) <= set(c.model)
    if c.data.name in data.names():
        assert set(data.options(c.data.name)) == set(c.data)
    cfg_lib.validate(cfg_lib.resolved(c), {})


def _compare(recorded, now, prefix=""):
    for key, value in recorded.items():
        assert key in now, f"{prefix}{key} missing"
        if isinstance(value, dict) and isinstance(now[key], dict):
            _compare(value, now[key], f"{prefix}{key}.")
        else:
            assert now[key] == value, f"{prefix}{key}: {now[key]!r} != recorded {value!r}"


def _moved(recorded: dict, now: dict) -> dict:
    """``recorded`` without the keys whose value now lives elsewhere, each checked there:
    ``baselines.period`` is the forecast dataset's seasonal period (``data.seasonal_period``,
    by default the series' own, ``rnnlab.data.forecast.SEASONAL_PERIOD``)."""
    from rnnlab.data.forecast import SEASONAL_PERIOD

    recorded = json.loads(json.dumps(recorded))
    period = recorded.get("baselines", {}).pop("period", None)
    if period is not None:
        data = now["data"]
        seasonal = data.get("seasonal_period") or SEASONAL_PERIOD.get(data["name"], 1)
        assert seasonal == period, f"data.seasonal_period: {seasonal} != recorded {period}"
    return recorded


def test_resolved_configs_keep_the_recorded_values():
    """The committed resolved configs (experiments/results/configs/<row>.json, written by runs
    before the defaults moved) hold the same values for every key they have."""
    checked = 0
    for row in _rows():
        path = os.path.join(EXPERIMENTS, "results", "configs", f"{row.key}.json")
        if not os.path.exists(path):
            continue
        spec = os.path.join(REPO, row.config)
        config = cfg_lib.override(cfg_lib.load(spec), list(row.overrides))
        now = cfg_lib.to_dict(cfg_lib.resolved(config))
        with open(path) as f:
            _compare(_moved(json.load(f), now), now)
        checked += 1
    assert checked >= 15
