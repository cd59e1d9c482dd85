"""The resolved config of every experiment and variant, the help of every key and the
messages of bad configs, as one JSON-able snapshot.

``tests/data/config_golden.json`` holds the snapshot written by the config code before the
typed groups replaced it (``python tests/config_golden.py --write`` rewrites it; do so only
for a change meant to alter a resolved config, and say which in the commit).
``tests/test_config_golden.py`` compares today's snapshot against it.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "config_golden.json"


def _variants() -> dict[str, list[str]]:
    """Every experiment's variants, spelt out from each file's own lists."""
    from experiments import classify, forecast, gradient_variants, own_data, seqmnist, spoken_digits

    sweep = gradient_variants.sweep((100, 200, 400))
    forecasts = ["", "small"] + [
        ",".join(filter(None, (series, ar, head, small)))
        for series in forecast.SERIES
        for ar in ("", "ar")
        for head in ("", "point", "gaussian")
        for small in ("", "small")
    ]
    flags = spoken_digits.FLAGS
    spoken = [
        ",".join(combo) for n in range(len(flags) + 1) for combo in itertools.combinations(flags, n)
    ]
    seq = ["", "small"] + [
        ",".join(filter(None, (cell, permuted, tpu)))
        for cell in seqmnist.CELLS
        for permuted in ("", "permuted")
        for tpu in ("", "tpu", "tpu,v5e", "tpu,v6e")
    ]
    return {
        "adding": ["", "small", "ci", *sweep],
        "copy": ["", "small", "ci", *sweep],
        "charlm": ["", "small", "tpu", "tpu,v5e", "tpu,v6e", "huge"],
        "classify": ["", "small"]
        + [
            f"{d},{p}{b}" for d in classify.DATASETS for p in classify.POOLINGS for b in ("", ",bi")
        ],
        "faults": [""],
        "forecast": forecasts,
        "own_data": ["", *own_data.TASKS, *(f"{t},small" for t in own_data.TASKS)],
        "seqmnist": seq,
        "spoken_digits": spoken,
    }


def specs() -> list[str]:
    """``<experiment>:<variant>`` of every experiment file defining ``get_config``; files
    listing ``VARIANTS`` take each of them (and ``""``)."""
    import importlib

    listed = _variants()
    out = []
    for path in sorted((REPO / "experiments").glob("*.py")):
        if "def get_config" not in path.read_text():
            continue
        name = path.stem
        variants = listed.get(name)
        if variants is None:
            module = importlib.import_module(f"experiments.{name}")
            variants = ["", *getattr(module, "VARIANTS", ())]
        out += [f"{name}:{v}" for v in dict.fromkeys(variants)]
    return out


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


def _resolve(spec: str, overrides: list[str] = ()) -> dict[str, Any]:
    """The resolved config as ``config.json`` records it, the result of validating it
    (with no mesh), or the error the loading raised."""
    from rnnlab.train import config as cfg_lib

    try:
        config = cfg_lib.override(cfg_lib.load(spec), list(overrides))
        resolved = cfg_lib.resolved(config)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return {"error": _error(e)}
    try:
        cfg_lib.validate(resolved, {})
        valid = "ok"
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        valid = _error(e)
    return {"config": cfg_lib.to_dict(resolved), "validate": valid}


# Command-line overrides on charlm:small: misspelled keys, wrong types, values the checks
# refuse, and swaps of the model or dataset.
OVERRIDES = [
    "model.hiden_features=8",
    "model.tie_embedings=true",
    "data.seqlen=8",
    "data.novel=persuasion",
    "optim.warmup_step=3",
    "optim.lrr=1e-3",
    "train.step=3",
    "trian.steps=5",
    "train.steps=five",
    "train.async_checkpoints=maybe",
    "model.hidden_features=2.5",
    "model.dropout=high",
    "train",
    "train.early_stopping=3",
    "train.steps=0",
    "train.batch_size=-2",
    "optim.lr=-1",
    "optim.optimizer=adagrad",
    "sharding.rules=everywhere",
    "train.divergence_factor=0.5",
    "train.nonfinite_action=retry",
    "sample.top_p=2.0",
    "train.early_stopping.mode=lowest",
    "mesh.fsdp=2",
    "model.name=transformer",
    "data.name=text_dir",
    "data.name=adding",
    "model.cell_kwargs={'forget_bias': 2.0}",
    "model.rnn_kwargs={'unroll': 2}",
    "optim.freeze=('^embed/', 'head')",
]

# Lines of an experiment file (on top of a valid adding config): typos and wrong types.
FILE_LINES = [
    "c.data.seq_lenn = 5",
    "c.model.num_layer = 2",
    "c.model.hidden_features = 2.5",
    "c.model.tie_embeddings = 'yes'",
    "c.train.steps = 'ten'",
    "c.train.eval_every = 1.5",
    "c.optim.lr = float('nan')",
    "c.model.name = 'classifier'",
]


def _file_case(line: str, folder: Path) -> dict[str, Any]:
    path = folder / "golden_case.py"
    path.write_text(
        "from rnnlab.train.config import base_config\n"
        "def get_config(arg=''):\n"
        "    c = base_config()\n"
        "    c.data.name = 'adding'\n"
        f"    {line}\n"
        "    return c\n"
    )
    out = json.dumps(_resolve(str(path)))
    return json.loads(out.replace(str(folder), "<tmp>"))


def snapshot(folder: Path) -> dict[str, Any]:
    """Everything the golden file holds; ``folder``: scratch space for experiment files."""
    import benchmarks.flax_peer  # noqa: F401 (registers flax_classifier, as mnist1d does)
    from rnnlab import models
    from rnnlab.train import config as cfg_lib

    small = "charlm:small"
    helps: dict[str, dict[str, str]] = {}
    renames = [f"model.name={name}" for name in models.model_names()]
    for spec, overrides in [(s, []) for s in specs()] + [(small, [r]) for r in renames]:
        try:
            config = cfg_lib.override(cfg_lib.load(spec), overrides)
        except ValueError:
            continue
        for key, text in cfg_lib.help_strings(config).items():
            group = key.split(".")[0]
            owner = f"{group}:{config[group].name}" if group in ("model", "data") else "engine"
            helps.setdefault(owner, {})[key] = text
    return {
        "experiments": {spec: _resolve(spec) for spec in specs()},
        "overrides": {o: _resolve(small, [o]) for o in OVERRIDES + renames},
        "file_lines": {line: _file_case(line, folder) for line in FILE_LINES},
        "help": helps,
        "describe": cfg_lib.describe(cfg_lib.load(small)).splitlines(),
    }


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/config_golden.py --write")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        snap = snapshot(Path(tmp))
    # One case per line: a changed case is one changed line of the diff.
    parts = []
    for part, value in sorted(snap.items()):
        if isinstance(value, dict):
            cases = (
                f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}"
                for k, v in sorted(value.items())
            )
            value_text = "{\n" + ",\n".join(cases) + "\n}"
        else:
            value_text = json.dumps(value)
        parts.append(f"{json.dumps(part)}: {value_text}")
    GOLDEN.write_text("{\n" + ",\n".join(parts) + "\n}\n")
    print(f"wrote {GOLDEN} ({len(snap['experiments'])} experiment variants)")
