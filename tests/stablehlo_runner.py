"""Runs exported StableHLO functions in a fresh interpreter that imports only jax and numpy
(and proves that rnnlab was never imported), for the export round-trip tests."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from flax import nnx

# Cases are named "<function>/<case>/<input index>"; results "<function>/<case>/out<k>".
RUNNER = r"""
import json, sys
import jax, numpy as np
from jax import export
out_dir, case_file, result_file = sys.argv[1:]
sig = json.load(open(f"{out_dir}/signature.json"))
cases = dict(np.load(case_file))
results = {}
for name, fn in sig["functions"].items():
    exp = export.deserialize(bytearray(open(f"{out_dir}/{fn['file']}", "rb").read()))
    # The file carries exactly the platforms its signature names.
    assert [p.lower() for p in exp.platforms] == fn["platforms"], (exp.platforms, fn)
    results[f"{name}/platforms"] = np.asarray([p.lower() for p in exp.platforms])
    for key in sorted(k for k in cases if k.startswith(name + "/") and k.endswith("/0")):
        prefix = key[: -len("/0")]
        args = [cases[f"{prefix}/{i}"] for i in range(len(fn["inputs"]))]
        outs = exp.call(*args)
        for i, o in enumerate(outs):
            results[f"{prefix}/out{i}"] = np.asarray(o)
np.savez(result_file, **results)
assert not any(m == "rnnlab" or m.startswith("rnnlab.") for m in sys.modules), "rnnlab imported"
"""


def run_script(script: str, args: list[str], tmp_path) -> str:
    """Runs ``script`` with ``args`` in a fresh interpreter with a bare environment (no
    PYTHONPATH: rnnlab cannot be found); returns its stdout. JAX's own settings of the
    caller pass through (``make test``'s ``JAX_DISABLE_MOST_OPTIMIZATIONS`` and compilation
    cache): they change how fast the artifacts compile, not where rnnlab can be found."""
    path = tmp_path / "runner.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k.startswith("JAX_")}
    env.update(PATH="/usr/bin:/bin", JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, timeout=300,
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def run_outside(out_dir, cases: dict, tmp_path) -> dict:
    """The exported functions of ``out_dir`` called on ``cases`` outside rnnlab."""
    np.savez(tmp_path / "cases.npz", **cases)
    args = [str(out_dir), str(tmp_path / "cases.npz"), str(tmp_path / "results.npz")]
    run_script(RUNNER, args, tmp_path)
    return dict(np.load(tmp_path / "results.npz"))


def compiled(model, method: str = "__call__", **static):
    """``model.<method>`` as one compiled program per input shape, with the keyword
    arguments ``static`` fixed (the reference outputs of the round-trip tests). Run op by
    op, the trained model compiles each of its primitives at each of the four input shapes
    the tests feed it: hundreds of small programs, most of those tests' time."""

    @nnx.jit
    def call(m, *args):
        return getattr(m, method)(*args, **static)

    return lambda *args: call(model, *args)
