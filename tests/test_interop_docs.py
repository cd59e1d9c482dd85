"""Every code block of docs/interop.md runs as printed, in order.

Shell blocks run with ``bash`` in one scratch directory (which sees the repository's
``experiments/``, as the repository root would); Python blocks run there too, in this
process, except those that start with ``# A fresh Python process``: each of those runs in a
new interpreter, which is the point of the example (nothing of the training run loaded).
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


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
def test_docs_examples_run_as_printed(tmp_path, monkeypatch):
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ)
    env["PATH"] = str(pathlib.Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("JAX_PLATFORMS", "cpu")
    for index, (kind, code) in enumerate(blocks()):
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
