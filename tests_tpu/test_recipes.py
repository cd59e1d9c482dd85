"""Every TPU recipe compiles for the slice it is sized for, and fits (``rnnlab compile``).

The reports land in ``$TPU_REPORTS`` when it is set (``make tpu-compile``: build/tpu-compile),
the figures the recipes' docstrings, docs/tpu.md and docs/scaling.md quote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from experiments import tpu_slices
from rnnlab.cli import main


def compile_report(tmp_path, capsys, *args: str) -> tuple[int, dict, str]:
    path = tmp_path / "report.json"
    status = main(["compile", *args, "--report", str(path)])
    out = capsys.readouterr()
    report = json.loads(path.read_text()) if path.exists() else {}
    return status, report, out.out + out.err


@pytest.mark.parametrize("recipe, generation", tpu_slices.RECIPES)
def test_recipe_compiles_and_fits_its_slice(recipe, generation, tmp_path, capsys):
    slice_ = tpu_slices.SLICES[generation]
    status, report, text = compile_report(
        tmp_path, capsys, "--config", recipe, "--topology", slice_["accelerator_type"]
    )
    assert status == 0, text
    assert report["topology"]["chips"] == slice_["chips"]
    assert report["verdict"]["fits"] and report["verdict"]["hbm_bytes"] == slice_["hbm_gib"] * 2**30
    assert report["per_chip_batch"] * slice_["chips"] == report["global_batch"]
    # Data parallelism over every chip: the gradients are all-reduced.
    assert report["train_step"]["collectives"]["all-reduce"]["count"] >= 1
    assert report["roofline"]["step_time_s"] > 0 and report["roofline"]["bound"] in (
        "compute",
        "memory",
    )
    # The path of each recurrent layer is the one chosen for a TPU, not for this CPU.
    assert report["recurrence_per_layer"] and "recurrence: " in text
    assert "fits," in text and "roofline:" in text and "collectives per train step" in text
    if os.environ.get("TPU_REPORTS"):
        os.makedirs(os.environ["TPU_REPORTS"], exist_ok=True)
        name = recipe.split("/")[-1].replace(".py:", "-").replace(",", "-") + ".json"
        shutil.copy(tmp_path / "report.json", os.path.join(os.environ["TPU_REPORTS"], name))


def test_two_slices_compile_with_the_data_axis_across_them(tmp_path, capsys):
    status, report, text = compile_report(
        tmp_path,
        capsys,
        *("--config", "experiments/seqmnist.py:tpu", "--topology", "v5litepod-16"),
        *("--slices", "2", "--config.train.batch_size=512", "--config.eval.batch_size=512"),
    )
    assert status == 0, text
    assert report["topology"]["chips"] == 32 and report["topology"]["hosts"] == 8
    assert report["mesh"] == "data=32" and report["per_chip_batch"] == 16


def test_unknown_topology_is_a_one_line_error(capsys):
    status = main(["compile", "--config", "experiments/seqmnist.py:tpu", "--topology", "v9-8"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err
    assert "unknown TPU topology 'v9-8'" in err and "v5e-16" in err and "v6e-8" in err


def test_libtpu_start_up_warnings_do_not_reach_the_user():
    # A fresh process: libtpu warns once, when it first starts (no TPU, no worker hostnames).
    result = subprocess.run(
        [sys.executable, "-m", "rnnlab.cli", "compile", "--config", "experiments/seqmnist.py:tpu"]
        + ["--topology", "v5e-8"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "verdict:" in result.stdout
    for noise in ("TPU_WORKER_HOSTNAMES", "TPU_ACCELERATOR_TYPE", "host bounds", "InitGoogle"):
        assert noise not in result.stderr + result.stdout
