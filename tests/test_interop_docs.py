"""Every code block of docs/interop.md runs as printed, in order.

Shell blocks run with ``bash`` in a scratch directory (which sees the repository's
``experiments/``, as the repository root would); Python blocks run there too, in this
process, except those that start with ``# A fresh Python process``: each of those runs in a
new interpreter, which is the point of the example (nothing of the training run loaded).

A shell block starts a run that the blocks after it read, up to the next shell block; the
blocks before the first shell block read nothing. Each such stretch is a test of its own,
in its own scratch directory and its own xdist group, so that ``make test`` runs them on
several workers.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "interop.md"
FRESH = "# A fresh Python process"


def blocks():
    return re.findall(r"```(python|bash)\n(.*?)```", DOC.read_text(), re.S)


def test_the_page_has_the_examples_it_promises():
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("bash") == 2 and kinds.count("python") >= 9
    assert sum(code.startswith(FRESH) for _, code in blocks()) == 4
    assert [_name(s) for s in stretches()] == ["library", "tiny", "pairs"]
    assert sum(map(len, stretches())) == len(blocks())


def stretches() -> list[list[tuple[int, str, str]]]:
    """The blocks, numbered, cut before each shell block."""
    out: list[list[tuple[int, str, str]]] = [[]]
    for index, (kind, code) in enumerate(blocks()):
        if kind == "bash" and out[-1]:
            out.append([])
        out[-1].append((index, kind, code))
    return out


def _name(stretch) -> str:
    """A stretch's id: the workdir its shell block trains, or ``library`` before any."""
    found = re.search(r"--workdir workdirs/(\w+)", stretch[0][2])
    return found.group(1) if found else "library"


def _param(stretch):
    # A stretch that trains is slow: a run and the processes that read it.
    marks = [pytest.mark.xdist_group(f"interop-{_name(stretch)}")]
    if stretch[0][1] == "bash":
        marks.append(pytest.mark.slow(len(stretch)))
    return pytest.param(stretch, id=_name(stretch), marks=marks)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
@pytest.mark.parametrize("stretch", [_param(s) for s in stretches()])
def test_docs_examples_run_as_printed(tmp_path, monkeypatch, stretch):
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ)
    env["PATH"] = str(pathlib.Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("JAX_PLATFORMS", "cpu")
    for index, kind, code in stretch:
        where = f"{DOC}:example{index}"
        if kind == "bash":
            cmd = ["bash", "-euo", "pipefail", "-c", code]
        elif code.startswith(FRESH):
            cmd = [sys.executable, "-c", code]
        else:
            exec(compile(code, where, "exec"), {})
            continue
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, f"{where} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
