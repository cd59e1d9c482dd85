"""The work behind ``rnnlab compile``: build the run on a slice's devices, compile its steps,
read what the compiler says, and search the largest per-chip batch that fits."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax

from rnnlab import parallel, target
from rnnlab.cli.compile_shapes import DeclaredSource, source
from rnnlab.layers import dispatch
from rnnlab.parallel import compiled as analysis
from rnnlab.parallel.topology import Topology
from rnnlab.train import config as cfg_lib
from rnnlab.train import state as state_lib
from rnnlab.train.config import ConfigDict
from rnnlab.train.step import make_eval_step


@dataclasses.dataclass(frozen=True)
class Target:
    """The slice a run is compiled for."""

    topology: Topology
    devices: list
    slices: int = 1


def shapes_for(config: ConfigDict, dataset_info: str | None = None) -> DeclaredSource:
    """The shapes-only data source (:mod:`rnnlab.cli.compile_shapes`)."""
    return source(config, dataset_info)


def _abstract(tree: Any, shardings: Any) -> Any:
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings
    )


def _batch(shapes: DeclaredSource, rows: int, mesh) -> dict[str, jax.ShapeDtypeStruct]:
    sharding = parallel.data_sharding(mesh)
    return {
        k: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
        for k, (shape, dtype) in shapes.layout(rows).items()
    }


# libtpu's refusal of a program that cannot fit, e.g. "Ran out of memory on HBM, the total
# memory required for HLO temporaries (17.03G) exceeds available HBM (15.75G)".
_OUT_OF_MEMORY = re.compile(r"memory required[^(]*\(([\d.]+)([KMGT]?)\)")
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _compile(lowered) -> tuple[Any, dict[str, Any] | None]:
    """``(compiled, None)``, or ``(None, analysis)`` of a program libtpu refused for want of
    HBM: its memory total is the requirement libtpu names."""
    try:
        return lowered.compile(), None
    except Exception as e:  # noqa: BLE001 - jaxlib's error type differs between versions
        text = str(e)
        if "RESOURCE_EXHAUSTED" not in text:
            raise
        match = _OUT_OF_MEMORY.search(text)
        need = int(float(match.group(1)) * _UNITS[match.group(2)]) if match else 0
        memory = dict.fromkeys(("arguments", "outputs", "aliased", "temporaries", "code"), 0)
        memory["total"] = need
        return None, {
            "memory": memory,
            "cost": {"flops": 0.0, "bytes": 0.0},
            "collectives": {},
            "error": text.splitlines()[0][:300],
        }


def _analyse(compiled) -> dict[str, Any]:
    return {
        "memory": analysis.memory(compiled),
        "cost": analysis.cost(compiled),
        "collectives": analysis.collectives(compiled.as_text()),
    }


def compile_steps(config: ConfigDict, where: Target, shapes: DeclaredSource) -> dict[str, Any]:
    """Builds the run on the slice's devices and compiles its train and evaluation steps
    (the run's shardings and donation; per-backend choices for a TPU)."""
    from rnnlab.train.run import Run

    with target.compiling_for("tpu"):
        run = Run(config, "", source=shapes, devices=where.devices)
        state = _abstract(run.abstract, run.shardings)
        train_batch = _batch(shapes, int(run.config.train.batch_size), run.mesh)
        with dispatch.recording() as paths:
            train, refused = _compile(run.jit_train_step().lower(state, train_batch))
        step = make_eval_step(run.graphdef, run.task, stateful=run.stateful)
        eval_rows = int(run.config.eval.batch_size)
        carry = None
        if run.stateful:
            make_carry = state_lib.carry_initializer(run.graphdef, eval_rows)
            shape = jax.eval_shape(make_carry, run.abstract.params, run.abstract.rest)
            carry = _abstract(
                shape, jax.tree.map(lambda _: parallel.data_sharding(run.mesh), shape)
            )
        evaluate = jax.jit(step, out_shardings=(parallel.replicated(run.mesh), None))
        eval_compiled, eval_refused = _compile(
            evaluate.lower(state.params, state.rest, carry, _batch(shapes, eval_rows, run.mesh))
        )
    return {
        "run": run,
        "paths": paths,
        "train_step": refused or _analyse(train),
        "eval_step": eval_refused or _analyse(eval_compiled),
    }


def compile_run(config: ConfigDict, where: Target, shapes: DeclaredSource) -> dict[str, Any]:
    """The report of ``rnnlab compile`` (see :func:`rnnlab.cli.compile.render`)."""
    out = compile_steps(config, where, shapes)
    run = out.pop("run")
    paths = out.pop("paths")
    topo, chip = where.topology, where.topology.chip
    chips = len(where.devices)
    cfg = run.config
    batch = int(cfg.train.batch_size)
    dp = parallel.data_parallel_size(run.mesh)
    example, _ = shapes.layout(1)["inputs"]
    seq_len = int(example[1]) if len(example) > 1 else 1
    tokens = batch * seq_len
    flops = analysis.model_flops(run.abstract.params, tokens // dp)
    train = out["train_step"]
    total = max(train["memory"]["total"], out["eval_step"]["memory"]["total"])
    # XLA's cost model counts a loop body once, not once per time step: the recurrent
    # matmuls of all but one step are missing from its FLOPs; 6 N T counts them.
    roof = analysis.roofline(
        max(train["cost"]["flops"], flops),
        train["cost"]["bytes"],
        chip.peak_flops,
        chip.hbm_bandwidth,
        tokens=tokens,
        model_flops=flops,
    )
    verdict = analysis.verdict(total, chip.hbm_bytes)
    # libtpu's refusal is final even when what it names is just under the HBM it has.
    verdict["fits"] = verdict["fits"] and not any("error" in step for step in out.values())
    return {
        "topology": {
            "name": topo.name,
            "slices": where.slices,
            "chips": chips,
            "chip": chip.name,
            "hosts": len({d.process_index for d in where.devices}),
            "peak_flops": chip.peak_flops,
            "hbm_bandwidth": chip.hbm_bandwidth,
        },
        "mesh": " x ".join(f"{k}={v}" for k, v in run.mesh.shape.items()),
        "shapes_from": shapes.origin,
        "global_batch": batch,
        "per_chip_batch": batch // dp,
        "seq_len": seq_len,
        "dtype": str(cfg.model.get("dtype", "float32")),
        "recurrence": dispatch.summary(paths),
        "recurrence_per_layer": [
            {"cell": cell, "path": impl, "reason": reason} for cell, impl, reason in paths
        ],
        **out,
        "memory_per_chip_mib": total / 2**20,
        "verdict": verdict,
        "model_flops_per_chip": flops,
        "roofline": roof,
    }


def with_per_chip_batch(config: ConfigDict, per_chip: int, data_parallel: int) -> ConfigDict:
    """``config`` with a global train batch of ``per_chip x data_parallel`` (evaluation
    batch unchanged)."""
    cfg = cfg_lib.resolved(config)
    return cfg_lib.override(cfg, [f"train.batch_size={per_chip * data_parallel}"])


def _fits(config, where, shapes, per_chip: int, dp: int) -> tuple[bool, int]:
    train = compile_steps(with_per_chip_batch(config, per_chip, dp), where, shapes)["train_step"]
    total = train["memory"]["total"]
    fits = analysis.verdict(total, where.topology.chip.hbm_bytes)["fits"] and "error" not in train
    return fits, total


# How much the per-chip batch may grow in one round of the search before any batch has
# failed: a fixed cost that dominates the memory of small batches makes the line through
# them too flat to extrapolate far.
GROWTH = 16


def _next_guess(points: dict[int, tuple[bool, int]], usable: float, low: int, high: int | None):
    """The per-chip batch to compile next: where the straight line through the two known
    points nearest the boundary reaches the usable HBM (memory grows about linearly with
    the batch), kept strictly inside ``(low, high)``; the midpoint when the line says
    nothing useful."""
    known = sorted(points)
    below = [b for b in known if b <= low][-2:] if high is None else [low]
    above = [] if high is None else [high]
    pair = [b for b in below + above if b in points][-2:]
    guess = None
    if len(pair) == 2 and pair[0] != pair[1]:
        (b0, (_, m0)), (b1, (_, m1)) = (pair[0], points[pair[0]]), (pair[1], points[pair[1]])
        if m1 > m0:
            guess = b0 + int((usable - m0) * (b1 - b0) // (m1 - m0))
    if high is None:  # no batch has failed yet: grow, at most GROWTH-fold a round
        return min(guess, GROWTH * low) if guess and guess > low else 2 * low
    if guess is None or not low < guess < high:
        guess = (low + high) // 2
    return guess


def largest_batch(config: ConfigDict, where: Target, shapes: DeclaredSource) -> dict[str, Any]:
    """The largest per-chip train batch whose train step fits, found by compiling.

    Starts from the config's per-chip batch and its double, then compiles where the line
    through the nearest known points (memory per chip against batch) meets the usable HBM
    and the batch next to it; after three such rounds it bisects the bracket. It ends when a
    batch that fits and the batch one above it, which does not, have both been compiled.
    Memory grows monotonically with the batch, so that pair is the boundary. Returns the
    batch, the global batch, the memory per chip at it and one above it, and the number of
    compiles.

    Raises:
      ValueError: not even one example per chip fits.
    """
    from rnnlab.train.sharding import mesh_from_config

    dp = parallel.data_parallel_size(mesh_from_config(config, where.devices))
    start = max(1, int(cfg_lib.resolved(config).train.batch_size) // dp)
    usable = (1.0 - analysis.HEADROOM) * where.topology.chip.hbm_bytes
    points: dict[int, tuple[bool, int]] = {}

    def fits(b: int) -> bool:
        if b not in points:
            points[b] = _fits(config, where, shapes, b, dp)
        return points[b][0]

    low, high = (start, None) if fits(start) else (0, start)
    rounds = 0
    while high is None or high - low > 1:
        guess = _next_guess(points, usable, low, high)
        if rounds >= 3 and high is not None:  # the line has not closed it: bisect
            guess = (low + high) // 2
        rounds += 1
        if fits(guess):
            low, probe = guess, guess + 1
        else:
            high, probe = guess, guess - 1
        # A good guess lands next to the boundary: its neighbour settles it.
        if high is not None and low < probe < high:
            if fits(probe):
                low = probe
            else:
                high = probe
    if low == 0:
        raise ValueError("not even one example per chip fits in the chip's HBM")
    return {
        "per_chip_batch": low,
        "global_batch": low * dp,
        "memory_bytes": points[low][1],
        "above_memory_bytes": points[high][1],
        "compiles": len(points),
    }
