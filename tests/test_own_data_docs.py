"""The "Your own data" walk-throughs of docs/data.md run as printed (with the ``,small``
variant of each model so that they take seconds), in one scratch directory."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "data.md"


def section() -> str:
    text = DOC.read_text()
    start = text.index("## Your own data")
    return text[start : text.index("\n## ", start + 1)]


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", section(), re.S)


def test_every_path_has_a_walk_through():
    shell = "\n".join(blocks("sh"))
    for what in ("train.npz", "series.csv", "sales.csv", "pairs.tsv", "speech.tsv",
                 "tfds_classification"):  # fmt: skip
        assert what in shell
    assert shell.count("rnnlab predict") == 6 and len(blocks("python")) == 1


@pytest.mark.slow
def test_the_walk_throughs_run_as_printed(tmp_path):
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    env = dict(os.environ)
    env["PATH"] = str(pathlib.Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("JAX_PLATFORMS", "cpu")
    shim = tmp_path / "bin"
    shim.mkdir()
    # The checkout's rnnlab even where a block sets its own PYTHONPATH (the builder's folder).
    (shim / "rnnlab").write_text(
        f'#!/bin/sh\nexport PYTHONPATH="{ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"\n'
        f'exec {sys.executable} -m rnnlab.cli "$@"\n'
    )
    (shim / "rnnlab").chmod(0o755)
    env["PATH"] = f"{shim}{os.pathsep}{env['PATH']}"
    for code in blocks("sh"):
        code = re.sub(r"((?:own_data|forecast)\.py:\w+)", r"\1,small", code)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"{code}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    code = blocks("python")[0].replace(
        "own_data.py:classification", "own_data.py:classification,small"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "mydata" / "new.csv").read_text().startswith("id,prediction,p_0,p_1")
    head = "origin,step,sales,sales_q0.1,sales_q0.5,sales_q0.9"
    assert (tmp_path / "mydata" / "next.csv").read_text().startswith(head)
    assert (tmp_path / "workdirs" / "arrays" / "summary.json").exists()
