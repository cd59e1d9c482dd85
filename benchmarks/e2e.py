"""``make bench`` end-to-end group: what ``rnnlab train`` itself sustains, beside its peer.

Measures the training throughput (tokens per second) of the real command, ``rnnlab train
--config experiments/charlm.py`` (data pipeline, host synchronisation, metric logging
included; start-up and compilation excluded), against the same character LM written plainly
in PyTorch (:mod:`benchmarks.e2e_torch`), and of the AWD-LSTM recipe
(``experiments/charlm_regularized.py:recipe``) against the plain main job. Each run trains
``--steps`` steps with a log every ``--log-every``; evaluation and checkpoints happen only
after the last log, so every window after the first (which holds the compilation) is pure
training. Runs alternate between the implementations for ``--rounds`` rounds, so load from
other processes hits all of them alike; figures are medians over all windows.

Each side also runs with freed memory kept and with glibc's default (``IMPLS``).

Usage: ``python -m benchmarks.e2e [--steps 120] [--rounds 2] [--only rnnlab,torch]``;
prints a JSON summary and writes ``benchmarks/results/e2e-<date>.json``. ``make bench``
runs it as its end-to-end group (:func:`run`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PLAIN, RECIPE = "experiments/charlm.py", "experiments/charlm_regularized.py:recipe"
# name -> (runner, config, environment). "rnnlab" is the command as users run it (freed
# memory kept by default, rnnlab.train.allocator; the compiled CPU loops where
# rnnlab-kernels is installed); "rnnlab-no-kernel" runs the XLA loops of the fused path
# instead (RNNLAB_KERNELS=0); "rnnlab-glibc" turns the allocator policy off; the torch
# peer runs both ways, with the same policy set through glibc's environment variables.
KEPT = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}
IMPLS = {
    "torch": ("torch", PLAIN, {}),
    "torch-kept": ("torch", PLAIN, KEPT),
    # Idle OpenMP threads sleep instead of spinning: PyTorch's usable policy on a loaded
    # machine (spinning threads there slow each step by orders of magnitude).
    "torch-passive": ("torch", PLAIN, {**KEPT, "OMP_WAIT_POLICY": "PASSIVE"}),
    "rnnlab": ("rnnlab", PLAIN, {}),
    "rnnlab-no-kernel": ("rnnlab", PLAIN, {"RNNLAB_KERNELS": "0"}),
    "rnnlab-glibc": ("rnnlab", PLAIN, {"RNNLAB_MALLOC": "default"}),
    "rnnlab-recipe": ("rnnlab", RECIPE, {}),
}
# ratio name -> (numerator, denominator); the goals: rnnlab_vs_torch >= 1.0 (the peer as
# users run it) and recipe_vs_rnnlab >= 0.8.
RATIOS = {
    "rnnlab_vs_torch": ("rnnlab", "torch"),
    "rnnlab_vs_torch_kept": ("rnnlab", "torch-kept"),
    "rnnlab_vs_no_kernel": ("rnnlab", "rnnlab-no-kernel"),
    "rnnlab_vs_torch_passive": ("rnnlab", "torch-passive"),
    "glibc_vs_torch": ("rnnlab-glibc", "torch"),
    "kept_vs_glibc": ("rnnlab", "rnnlab-glibc"),
    "recipe_vs_rnnlab": ("rnnlab-recipe", "rnnlab"),
}
GOALS = {"rnnlab_vs_torch": 1.0, "recipe_vs_rnnlab": 0.8}


def _env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT.parent), env.get("PYTHONPATH", "")])
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.update(extra or {})
    return env


def run_rnnlab(spec: str, steps: int, log_every: int, env: dict | None = None) -> dict:
    """Trains ``spec`` for ``steps`` in a fresh workdir; the window times of its log."""
    with tempfile.TemporaryDirectory() as workdir:
        cmd = [
            sys.executable, "-m", "rnnlab.cli", "train", "--config", spec,
            "--workdir", workdir, f"--config.train.steps={steps}",
            f"--config.train.log_every={log_every}", "--config.train.eval_every=0",
            "--config.train.checkpoint_every=0", "--config.eval.max_batches=1",
            "--config.sample.length=0",
        ]  # fmt: skip
        subprocess.run(cmd, check=True, env=_env(env), capture_output=True, text=True)
        records = [json.loads(line) for line in open(Path(workdir) / "metrics.jsonl")]
    train = [r for r in records if r["split"] == "train"]
    times = [r["time"] for r in train]
    # The first record closes the window that holds start-up and compilation.
    return {"window_s": [b - a for a, b in zip(times, times[1:], strict=False)]}


def run_torch(steps: int, log_every: int, env: dict | None = None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.e2e_torch", "--steps", str(steps)]
    cmd += ["--log-every", str(log_every)]
    out = subprocess.run(cmd, check=True, env=_env(env), capture_output=True, text=True)
    reply = json.loads(out.stdout.strip().splitlines()[-1])
    return {"window_s": reply["window_s"][1:]}  # the first window holds start-up


def run(steps: int = 120, log_every: int = 20, rounds: int = 2, only: str = "") -> dict:
    """Times every implementation of :data:`IMPLS` (or those named in ``only``) in
    alternating rounds; medians per implementation and the ratios the goals read."""
    from rnnlab.train import config as cfg_lib

    names = [n for n in only.split(",") if n] or list(IMPLS)
    unknown = sorted(set(names) - set(IMPLS))
    if unknown:
        raise ValueError(f"unknown end-to-end implementations {unknown}; known: {list(IMPLS)}")
    tokens = {}
    for name in names:
        c = cfg_lib.load(IMPLS[name][1])
        tokens[name] = int(c.train.batch_size) * int(c.data.seq_len) * log_every
    windows: dict[str, list[float]] = {name: [] for name in names}
    load_before = os.getloadavg()
    for _ in range(rounds):
        for name in names:
            runner, spec, env = IMPLS[name]
            if runner == "torch":
                windows[name] += run_torch(steps, log_every, env)["window_s"]
            else:
                windows[name] += run_rnnlab(spec, steps, log_every, env)["window_s"]
    result: dict = {
        name: {
            "tokens_per_second": tokens[name] / statistics.median(w),
            "step_ms": 1000 * statistics.median(w) / log_every,
            "best_step_ms": 1000 * min(w) / log_every,
            "windows": len(w),
        }
        for name, w in windows.items()
    }
    for key, (a, b) in RATIOS.items():
        if a in result and b in result:
            result[f"ratio_{key}"] = result[a]["tokens_per_second"] / result[b]["tokens_per_second"]
    result.update(
        steps=steps, log_every=log_every, rounds=rounds, load_before=load_before,
        load_after=os.getloadavg(),
    )  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated names of IMPLS")
    args = parser.parse_args()
    result = run(args.steps, args.log_every, args.rounds, args.only)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    out = ROOT / "results" / f"e2e-{stamp}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
