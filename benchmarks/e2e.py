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

Usage: ``python -m benchmarks.e2e [--steps 120] [--rounds 2]``; prints a JSON summary and
writes ``benchmarks/results/e2e-<date>.json``.
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
RNNLAB = {
    "rnnlab": "experiments/charlm.py",
    "rnnlab-recipe": "experiments/charlm_regularized.py:recipe",
}


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


def run_torch(steps: int, log_every: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.e2e_torch", "--steps", str(steps)]
    cmd += ["--log-every", str(log_every)]
    out = subprocess.run(cmd, check=True, env=_env(), capture_output=True, text=True)
    reply = json.loads(out.stdout.strip().splitlines()[-1])
    return {"window_s": reply["window_s"][1:]}  # the first window holds start-up


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from rnnlab.train import config as cfg_lib

    tokens = {}
    for name, spec in RNNLAB.items():
        c = cfg_lib.load(spec)
        tokens[name] = int(c.train.batch_size) * int(c.data.seq_len) * args.log_every
    tokens["torch"] = tokens["rnnlab"]
    windows: dict[str, list[float]] = {name: [] for name in ("torch", *RNNLAB)}
    for _ in range(args.rounds):
        windows["torch"] += run_torch(args.steps, args.log_every)["window_s"]
        for name, spec in RNNLAB.items():
            windows[name] += run_rnnlab(spec, args.steps, args.log_every)["window_s"]
    result = {
        name: {
            "tokens_per_second": tokens[name] / statistics.median(w),
            "step_ms": 1000 * statistics.median(w) / args.log_every,
            "windows": len(w),
        }
        for name, w in windows.items()
    }
    result["ratio_rnnlab_vs_torch"] = (
        result["rnnlab"]["tokens_per_second"] / result["torch"]["tokens_per_second"]
    )
    result["ratio_recipe_vs_rnnlab"] = (
        result["rnnlab-recipe"]["tokens_per_second"] / result["rnnlab"]["tokens_per_second"]
    )
    result["load_average"] = os.getloadavg()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    out = ROOT / "results" / f"e2e-{stamp}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
