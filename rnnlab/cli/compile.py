"""``rnnlab compile``: compiles a run for a Cloud TPU slice on any machine, before booking it.

::

    rnnlab compile --config experiments/charlm.py:tpu --topology v5e-16 [--slices N]
                   [--config.KEY=VALUE ...] [--dataset-info FILE] [--report FILE]
                   [--largest-batch]

The run is built as ``train`` builds it (same config, overrides, model, optimizer, mesh,
state shardings and donation) on the compile-only devices of the slice
(:mod:`rnnlab.parallel.topology`), and its train and evaluation steps are compiled by
libtpu's compiler. Per-backend choices follow the slice, not this machine
(:func:`rnnlab.target.compiling_for`). No data is read unless it is on the machine
(:mod:`rnnlab.cli.compile_shapes`).

It prints memory per chip against the chip's HBM with a verdict, FLOPs and bytes per step,
the roofline step time with its bound, an upper bound on tokens/s and the MFU at that bound,
the collectives of the compiled train step and the recurrence path of every layer; with
``--largest-batch``, the largest per-chip batch that fits, found by compiling. ``--report``
writes the same as JSON. Exit status 2 when the run does not fit (or on bad input).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from rnnlab.cli.workdir import load_config
from rnnlab.train import config as cfg_lib

MiB = 2**20


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compile",
        help="compile a run for a Cloud TPU slice on this machine (memory, roofline)",
        description=__doc__.split("\n\n")[2],
    )
    p.add_argument("--config", required=True, help="NAME[:variant] or PATH.py[:variant]")
    p.add_argument("--topology", required=True, help="Cloud TPU accelerator type, e.g. v5e-16")
    p.add_argument("--slices", type=int, default=1, help="number of slices (multi-slice)")
    p.add_argument("--dataset-info", help="a run's dataset_info.json (shapes without data)")
    p.add_argument("--report", help="also write the report as JSON to this file")
    p.add_argument(
        "--largest-batch",
        action="store_true",
        help="also find the largest per-chip batch that fits, by compiling",
    )
    p.set_defaults(func=cmd_compile, accepts_overrides=True)


def _cpu_host() -> None:
    """This machine's own backend stays the CPU: with libtpu installed, JAX would otherwise
    try to open a TPU it does not have. The slice's devices come from the topology."""
    import jax

    if os.environ.get("JAX_PLATFORMS") is None:
        jax.config.update("jax_platforms", "cpu")


def cmd_compile(args: argparse.Namespace) -> int:
    from rnnlab.cli import compile_run
    from rnnlab.parallel import topology

    _cpu_host()
    try:
        topo = topology.get(args.topology)
    except ValueError as e:
        raise cfg_lib.ConfigError("topology", str(e)) from None
    if args.slices < 1:
        raise cfg_lib.ConfigError("slices", f"must be a positive int, got {args.slices}")
    config = load_config(args)
    devices = topology.devices(topo.name, args.slices)
    target = compile_run.Target(topo, devices, args.slices)
    shapes = compile_run.shapes_for(config, args.dataset_info)
    report = compile_run.compile_run(config, target, shapes)
    report["command"] = _command(args)
    if args.largest_batch:
        report["largest_batch"] = compile_run.largest_batch(config, target, shapes)
    print(render(report))
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
    if not report["verdict"]["fits"]:
        print(
            f"rnnlab: error: the run does not fit: {report['memory_per_chip_mib']:.0f} MiB per "
            f"chip against {report['verdict']['hbm_bytes'] / MiB:.0f} MiB of HBM",
            file=sys.stderr,
        )
        return 2
    return 0


def _command(args: argparse.Namespace) -> str:
    parts = ["rnnlab compile", f"--config {args.config}", f"--topology {args.topology}"]
    if args.slices != 1:
        parts.append(f"--slices {args.slices}")
    parts += list(args.overrides or [])
    return " ".join(parts)


def _mib(n: float) -> str:
    return f"{n / MiB:,.0f} MiB"


def _cost_lines(report: dict[str, Any]) -> list[str]:
    """FLOPs, bytes, the roofline and the collectives of the compiled train step."""
    if "error" in report["train_step"]:
        return ["no cost or roofline: the train step did not compile"]
    c, r = report["train_step"]["cost"], report["roofline"]
    coll = report["train_step"]["collectives"]
    text = ", ".join(f"{op} x{v['count']} ({_mib(v['bytes'])})" for op, v in coll.items())
    return [
        f"train step per chip: {c['flops'] / 1e9:,.1f} GFLOP, {c['bytes'] / 1e9:,.2f} GB of "
        f"HBM traffic; model FLOPs (6 N T) {report['model_flops_per_chip'] / 1e9:,.1f} GFLOP",
        f"roofline: {r['step_time_s'] * 1e3:,.2f} ms per step, {r['bound']}-bound (compute "
        f"{r['compute_s'] * 1e3:,.2f} ms, memory {r['memory_s'] * 1e3:,.2f} ms); at most "
        f"{r['tokens_per_s']:,.0f} tokens/s; MFU at that bound {100 * r['mfu']:.0f} %",
        f"collectives per train step: {text or 'none'}",
    ]


def render(report: dict[str, Any]) -> str:
    """The report as the lines the command prints."""
    t = report["topology"]
    v = report["verdict"]
    lines = [
        f"topology {t['name']} x {t['slices']} slice(s): {t['chips']} chips of {t['chip']} on "
        f"{t['hosts']} host(s), mesh {report['mesh']}",
        f"shapes from {report['shapes_from']}",
        f"global batch {report['global_batch']} ({report['per_chip_batch']} per chip) x "
        f"{report['seq_len']} steps; compute {report['dtype']}",
        f"recurrence: {report['recurrence']}",
    ]
    for name in ("train_step", "eval_step"):
        m = report[name]["memory"]
        if "error" in report[name]:
            lines.append(
                f"{name.replace('_', ' ')}: libtpu refused it, needing {_mib(m['total'])} per "
                f"chip ({report[name]['error']})"
            )
            continue
        lines.append(
            f"{name.replace('_', ' ')} memory per chip: {_mib(m['total'])} (arguments "
            f"{_mib(m['arguments'])}, outputs {_mib(m['outputs'])}, aliased "
            f"{_mib(m['aliased'])}, temporaries {_mib(m['temporaries'])}, code {_mib(m['code'])})"
        )
    refused = any("error" in report[name] for name in ("train_step", "eval_step"))
    if v["fits"]:
        verdict = f"fits, {_mib(v['headroom_bytes'])} of HBM left"
    elif refused:
        verdict = "does NOT fit: libtpu refused the program"
    elif v["headroom_bytes"] < 0:
        verdict = f"does NOT fit ({_mib(-v['headroom_bytes'])} over)"
    else:
        verdict = f"does NOT fit (only {_mib(v['headroom_bytes'])} left, under the reserve)"
    lines.append(
        f"verdict: {_mib(report['memory_per_chip_mib'] * MiB)} of {_mib(v['hbm_bytes'])}"
        f" HBM per chip ({100 * v['fraction_of_hbm']:.0f} %): {verdict}"
    )
    lines += _cost_lines(report)
    if "largest_batch" in report:
        lb = report["largest_batch"]
        lines.append(
            f"largest per-chip batch that fits: {lb['per_chip_batch']} (global "
            f"{lb['global_batch']}, {_mib(lb['memory_bytes'])} per chip); "
            f"{lb['per_chip_batch'] + 1} per chip needs {_mib(lb['above_memory_bytes'])}"
        )
    lines.append("(compile-time estimates: XLA's memory and cost analysis, not a measured run)")
    return "\n".join(lines)
