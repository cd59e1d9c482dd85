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


# What a walk-through (named by the workdir it trains) writes, and how that file starts.
PRODUCES = {
    "mine": ("mydata/new.csv", "id,prediction,p_0,p_1"),
    "sales": ("mydata/next.csv", "origin,step,sales,sales_q0.1,sales_q0.5,sales_q0.9"),
    "arrays": ("workdirs/arrays/summary.json", "{"),
}
WALKS = [("sh", code) for code in blocks("sh")] + [("python", code) for code in blocks("python")]


def _name(code: str) -> str:
    """A walk-through's id: the workdir it trains."""
    return re.search(r"workdirs/(\w+)", code).group(1)


@pytest.fixture
def scratch(tmp_path):
    """The scratch folder a reader would be in: the repository's experiments/ in view and
    ``mydata/`` made (by the first walk-through's first line, which the others follow)."""
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    (tmp_path / "mydata").mkdir()
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
    return tmp_path, env


# Each walk-through is independent of the others (each makes its own data), so each is a
# test of its own xdist group: `make test` runs them on several workers.
@pytest.mark.slow(3)
@pytest.mark.parametrize(
    "kind, code",
    [
        pytest.param(kind, code, id=_name(code),
                     marks=pytest.mark.xdist_group(f"data-walk-{_name(code)}"))
        for kind, code in WALKS
    ],
)  # fmt: skip
def test_the_walk_throughs_run_as_printed(scratch, kind, code):
    tmp_path, env = scratch
    if kind == "sh":
        code = re.sub(r"((?:own_data|forecast)\.py:\w+)", r"\1,small", code)
        cmd = ["bash", "-euo", "pipefail", "-c", code]
    else:
        code = code.replace("own_data.py:classification", "own_data.py:classification,small")
        cmd = [sys.executable, "-c", code]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, f"{code}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    if _name(code) in PRODUCES:
        path, head = PRODUCES[_name(code)]
        assert (tmp_path / path).read_text().startswith(head), path
