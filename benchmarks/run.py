"""``make bench``: rnnlab's recurrent layers against PyTorch and stock Flax, side by side.

Every implementation of a configuration runs in its own process (so peak memory is its own)
and all of them stay alive while they are timed in interleaved rounds: each round visits
every implementation for about ``--visit-s`` seconds of steps, so that load from other
processes on a shared machine hits all of them alike. Figures are medians over all timed
steps after compilation (at least ``--rounds`` visits of at least one step each); minima are
kept as well. The matmul peak of the machine is measured in the same run.

Writes ``benchmarks/results/<date>.json`` and the Markdown table in ``benchmarks/README.md``.

Usage: ``python -m benchmarks.run [--only lstm:A,gru:A] [--rounds 3] [--budget-min 12]
[--no-readme]``. The defaults are sized for about 12 minutes on a quiet 2-core machine:
two end-to-end rounds of 100 steps per implementation, three rounds per layer group, and peers
whose timing would run past the budget dropped with a note (rnnlab's own rows never are).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.configs import CONFIGS, IMPLEMENTATIONS, flops
from benchmarks.report import write_readme

ROOT = Path(__file__).resolve().parent

# (cell, config, implementations, modes, setting). The long sequence is training only: its
# point is memory. The scan path without remat is left out there: autodiff through lax.scan
# keeps every step's intermediates and needs several GiB at T = 8192; PyTorch runs there with
# passive OpenMP waiting only, its default spins itself to minutes per step on a loaded
# machine. The "malloc" setting reruns configs A, B and C with glibc told to keep freed
# memory (same for every peer): the kernel's LSTM goal is read there (report.py), and A's
# group shows what the per-step page faults of fresh temporaries cost each peer.
TORCH = ["torch", "torch-passive"]
PLAN = [
    (
        "lstm",
        "A",
        [*TORCH, "flax", "rnnlab-scan", "rnnlab-fused", "rnnlab-kernel", "rnnlab-fused-bf16"],
        None,
        "",
    ),
    ("lstm", "A", [*TORCH, "flax", "rnnlab-fused", "rnnlab-kernel"], ["train"], "malloc"),
    ("lstm", "B", [*TORCH, "rnnlab-kernel"], ["train"], "malloc"),
    ("lstm", "C", [*TORCH, "rnnlab-kernel"], ["train"], "malloc"),
    ("gru", "A", [*TORCH, "flax", "rnnlab-fused", "rnnlab-kernel"], None, ""),
    ("gru", "C", [*TORCH, "rnnlab-fused", "rnnlab-kernel"], None, ""),
    ("lstm", "B", [*TORCH, "flax", "rnnlab-fused", "rnnlab-kernel"], None, ""),
    ("lstm", "C", [*TORCH, "flax", "rnnlab-scan", "rnnlab-fused", "rnnlab-kernel"], None, ""),
    ("gru", "B", [*TORCH, "rnnlab-fused", "rnnlab-kernel"], None, ""),
    (
        "lstm",
        "long",
        ["torch-passive", "rnnlab-fused", "rnnlab-fused-remat", "rnnlab-scan-remat"],
        ["train"],
        "",
    ),
]

# rnnlab's own implementations: always measured, whatever the time budget. The groups run
# in PLAN's order, those the kernel's goals read first (LSTM A, B and C with freed memory
# kept, GRU A and C), so that the peers a tight budget drops are those of the later groups.
OWN = ("rnnlab-fused", "rnnlab-kernel")

# Wall time kept back from the layer groups for the regulariser and family tables, which
# run after them (about a minute each on a quiet 2-core machine).
RESERVE_S = 150.0

SETTINGS = {
    "": {},
    "malloc": {
        "MALLOC_MMAP_THRESHOLD_": str(2**30),
        "MALLOC_TRIM_THRESHOLD_": str(2**32),
    },
}

# Time an idle OpenMP or Eigen worker keeps spinning after its last parallel region; the
# orchestrator waits this long between implementations so that none runs against another's
# spinning threads.
SETTLE_S = 0.25
# A start-up estimate above this is re-measured with one step, not two (the long sequence).
REESTIMATE_SLOW_S = 2.0


def _env(setting: str = "", impl: str = "") -> dict:
    env = dict(os.environ)
    env.update(SETTINGS[setting])
    if impl == "torch-passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    if impl == "rnnlab-kernel":
        # Its forward column times the kernel's forward loop, which auto's forward passes
        # (not differentiated) leave to the fused XLA loops: the figures that rule rests on.
        env["RNNLAB_KERNEL_FORWARD"] = "1"
    env.setdefault("JAX_PLATFORMS", "cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT.parent), env.get("PYTHONPATH", "")])
    return env


class Worker:
    """A running ``benchmarks.worker`` process."""

    def __init__(self, spec: dict, setting: str = ""):
        self.spec = spec
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(setting, spec.get("impl", "")),
        )
        self.info: dict | None = None
        self.error: str | None = None

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"worker {self.spec} exited with code {self.proc.returncode}")
        return json.loads(line)

    def ready(self, deadline: float = math.inf) -> dict:
        """The start-up reply; a worker not ready by ``deadline`` is stopped and raises."""
        if self.info is None:
            wait = None if deadline == math.inf else max(0.0, deadline - time.time())
            if not select.select([self.proc.stdout], [], [], wait)[0]:
                self.proc.kill()
                self.proc.wait()
                raise TimeoutError("skipped: not compiled and warmed up within the time budget")
            self.info = self._reply()
        return self.info

    def run(self, mode: str, count: int) -> tuple[list[float], list[float]]:
        """Wall and process CPU seconds of ``count`` steps of ``mode``."""
        self.proc.stdin.write(f"run {mode} {count}\n")
        self.proc.stdin.flush()
        reply = self._reply()
        return reply["times"], reply["cpu"]

    def finish(self) -> dict:
        self.proc.stdin.write("done\n")
        self.proc.stdin.flush()
        reply = self._reply()
        self.proc.wait()
        return reply


def measure_peaks() -> dict:
    """Best float32 2048^3 matmul rate of jax and of torch, each in a fresh process."""
    peaks = {}
    for framework in ("jax", "torch"):
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.worker", json.dumps({"peak": framework})],
            capture_output=True,
            text=True,
            env=_env(),
            check=True,
        )
        peaks[framework] = json.loads(out.stdout.strip().splitlines()[-1])["gflops"]
    return peaks


def _visits(estimate: float, visit_s: float) -> int:
    return max(1, min(50, math.ceil(visit_s / max(estimate, 1e-4))))


def bench_group(
    cell: str,
    config: str,
    impls: list[str],
    modes,
    rounds: int,
    visit_s: float,
    deadline: float = math.inf,
    setting: str = "",
):
    """Times ``impls`` on one configuration in interleaved rounds; returns one record each.

    A peer whose estimated measuring time would run past ``deadline`` (a ``time.time()``)
    is dropped with a note rather than timed with fewer steps; rnnlab's own fused and
    kernel implementations are always kept.
    """
    modes = modes or ["train", "forward"]
    workers = {}
    for impl in impls:
        workers[impl] = Worker(dict(impl=impl, cell=cell, config=config, modes=modes), setting)
    records = {}
    for impl, w in list(workers.items()):
        try:
            w.ready(math.inf if impl.startswith(OWN) else deadline)
        except Exception as err:  # a peer that cannot run here is reported, not fatal
            w.error = str(err)
            records[impl] = dict(
                impl=impl, cell=cell, config=config, setting=setting, error=w.error
            )
            del workers[impl]
    # The workers start together, so each one's start-up estimate was taken while the
    # others compiled beside it: up to ten times its step (LSTM A: 0.4 s against 40 ms),
    # which cut the visits to one step each, every one the first after an idle pause. One
    # untimed visit each, one worker at a time, estimates the step again.
    for w in workers.values():
        for mode in modes:
            slow = w.info["estimate_s"][mode] >= REESTIMATE_SLOW_S
            w.info["estimate_s"][mode] = min(w.run(mode, 1 if slow else 2)[0])

    def cost(impl):
        est = workers[impl].info["estimate_s"]
        return sum(rounds * (SETTLE_S + _visits(est[m], visit_s) * est[m]) for m in modes)

    for impl in sorted(workers, key=cost, reverse=True):
        if time.time() + sum(cost(i) for i in workers) <= deadline:
            break
        if not impl.startswith(OWN):
            records[impl] = dict(
                impl=impl,
                cell=cell,
                config=config,
                setting=setting,
                error=f"skipped: about {cost(impl):.0f} s of steps would exceed the time budget",
            )
            workers.pop(impl).finish()
    times = {(impl, m): [] for impl in workers for m in modes}
    cpu = {(impl, m): [] for impl in workers for m in modes}
    for _ in range(rounds):
        for mode in modes:
            for impl, w in workers.items():
                count = _visits(w.info["estimate_s"][mode], visit_s)
                time.sleep(SETTLE_S)
                wall, work = w.run(mode, count)
                times[(impl, mode)].extend(wall)
                cpu[(impl, mode)].extend(work)
    cfg = CONFIGS[config]
    for impl, w in workers.items():
        end = w.finish()
        rec = dict(
            impl=impl,
            cell=cell,
            config=config,
            setting=setting,
            **cfg.as_dict(),
            setup_s=w.info["setup_s"],
            peak_rss_mb=end["peak_rss_mb"],
            rss_start_mb=w.info["rss_start_mb"],
        )
        for mode in modes:
            ts = times[(impl, mode)]
            med, best = statistics.median(ts), min(ts)
            rec[mode] = dict(
                steps=len(ts),
                median_s=med,
                min_s=best,
                tokens_per_s=cfg.tokens / med,
                tokens_per_s_at_min=cfg.tokens / best,
                cpu_median_s=statistics.median(cpu[(impl, mode)]),
                gflops=flops(cell, cfg, mode) / med / 1e9,
            )
        records[impl] = rec
    return [records[i] for i in impls]


def machine() -> dict:
    """CPU model, core count, memory and load of this machine."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_gib = int(f.readline().split()[1]) / 2**20
    except OSError:
        mem_gib = float("nan")
    return dict(
        cpu=model,
        cores=os.cpu_count(),
        memory_gib=round(mem_gib, 1),
        platform=platform.platform(),
        python=platform.python_version(),
        free_page_reporting=free_page_reporting(),
    )


def free_page_reporting() -> bool:
    """Whether this virtual machine hands the memory it frees back to its host (a
    virtio balloon with free page reporting, feature bit 5): a page freed and written
    again then faults in through the host, so the rows with glibc's default allocator
    policy, whose large buffers are mapped afresh at every step, vary from run to run
    (decision 148)."""
    for device in Path("/sys/bus/virtio/devices").glob("*"):
        try:
            kind = (device / "device").read_text().strip()
            features = (device / "features").read_text().strip()
        except OSError:
            continue
        if kind == "0x0005" and len(features) > 5 and features[5] == "1":
            return True
    return False


def versions() -> dict:
    out = {}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "torch"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


def run_regularizers() -> list[dict]:
    """The regulariser cost table, when ``benchmarks/regularizers.py`` is present."""
    if importlib.util.find_spec("benchmarks.regularizers") is None:
        return []
    code = "import json; from benchmarks import regularizers; print(json.dumps(regularizers.run()))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_families() -> list[dict]:
    """The families' training throughput beside the LSTM's (``benchmarks/families.py``)."""
    code = "import json; from benchmarks import families; print(json.dumps(families.run()))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default="", help="comma-separated cell:config, e.g. lstm:A,lstm:A+malloc"
    )
    parser.add_argument("--impls", default="", help="comma-separated implementations to keep")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--visit-s", type=float, default=0.4)
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--no-regularizers", action="store_true")
    parser.add_argument("--no-families", action="store_true", help="skip the cell families")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end group")
    parser.add_argument("--e2e-rounds", type=int, default=2)
    parser.add_argument("--e2e-impls", default="", help="comma-separated benchmarks.e2e.IMPLS")
    parser.add_argument("--e2e-steps", type=int, default=100)
    parser.add_argument(
        "--note", action="append", default=[], help="a line for the report (e.g. the load)"
    )
    parser.add_argument("--out-dir", default=str(ROOT / "results"))
    parser.add_argument(
        "--budget-min",
        type=float,
        default=12.0,
        help="the run's wall-time budget: peers that would run past it are dropped",
    )
    args = parser.parse_args(argv)
    only = {tuple(s.split(":")) for s in args.only.split(",") if s}
    keep = {s for s in args.impls.split(",") if s}
    unknown = keep - set(IMPLEMENTATIONS)
    if unknown:
        raise ValueError(f"--impls must name {sorted(IMPLEMENTATIONS)}, got {sorted(unknown)}")

    started = time.time()
    result = dict(
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine=machine(),
        versions=versions(),
        load_before=os.getloadavg(),
        notes=[
            "jax.experimental.rnn (cuDNN) is a GPU-only peer and is skipped on CPU.",
            *args.note,
        ],
    )
    print(f"machine: {result['machine']['cpu']}, load {result['load_before']}", flush=True)
    result["matmul_peak_gflops"] = measure_peaks()
    print(f"matmul peak (GFLOP/s): {result['matmul_peak_gflops']}", flush=True)
    if not args.no_e2e:
        # First, while the machine is as idle as it will be: the group users feel.
        from benchmarks import e2e

        t = time.time()
        result["e2e"] = e2e.run(steps=args.e2e_steps, rounds=args.e2e_rounds, only=args.e2e_impls)
        ratios = {k: round(v, 2) for k, v in result["e2e"].items() if k.startswith("ratio_")}
        print(f"end to end: {ratios} ({time.time() - t:.0f} s)")
    records = []
    deadline = started + 60 * args.budget_min
    if not (args.no_regularizers and args.no_families):
        deadline -= RESERVE_S
    for cell, config, impls, modes, setting in PLAN:
        if only and (cell, config) not in only and (cell, f"{config}+{setting}") not in only:
            continue
        impls = [i for i in impls if not keep or i in keep]
        t = time.time()
        group = bench_group(
            cell, config, impls, modes, args.rounds, args.visit_s, deadline, setting
        )
        records.extend(group)
        for rec in group:
            line = {m: round(rec[m]["tokens_per_s"]) for m in ("train", "forward") if m in rec}
            label = f"{config}+{setting}" if setting else config
            print(f"{cell} {label} {rec['impl']:20s} {line or rec.get('error')}", flush=True)
        print(f"  ({time.time() - t:.0f} s)", flush=True)
    result["records"] = records
    if not args.no_regularizers:
        result["regularizers"] = run_regularizers()
    if not args.no_families:
        result["families"] = run_families()
    result["load_after"] = os.getloadavg()
    result["wall_s"] = time.time() - started
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["date"].replace(":", "").replace("+0000", "Z")
    path = out_dir / f"{stamp}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path} ({result['wall_s']:.0f} s)", flush=True)
    if not args.no_readme:
        write_readme(result, ROOT / "README.md")
        print(f"wrote {ROOT / 'README.md'}", flush=True)
    return result


if __name__ == "__main__":
    main()
