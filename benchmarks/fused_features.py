"""Training throughput of the fused kernels' features against the scan path (configuration A).

One training step is the forward and backward pass of one recurrent layer under
``sum(y * w)`` (no optimizer: the layer is what is compared). Each case is compiled once,
warmed up, then timed over ``--steps`` steps, ``--repeats`` times; the median is reported
with the load average seen before the first case.

    PYTHONPATH=$PWD python benchmarks/fused_features.py                 # every case
    PYTHONPATH=$PWD python benchmarks/fused_features.py --cases plain   # the plain fused path

Cases (LSTM unless named): ``plain`` (no resets, no masks, through ``rnnlab.RNN``),
``resets`` (a new segment every 32 steps, reset carry zeros), ``masks`` (Gal recurrent mask
and weight drop), ``update`` (Semeniuta update mask), ``proj`` (LSTMP, P = 128),
``gru-resets-masks``. Each feature case runs as ``fused``
(``rnnlab.layers.fused_path.run_fused``) and ``scan`` (``rnnlab.RNN(..., implementation="scan")``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import rnnlab
from benchmarks.configs import CONFIGS
from rnnlab.layers import fused_path

CASES = ("plain", "resets", "masks", "update", "proj", "gru-resets-masks")


def _setup(case: str, cfg):
    """``(cell, extra params, resets [B, T] or None)`` for one case."""
    rng = np.random.default_rng(0)
    kind = "gru" if case.startswith("gru") else "lstm"
    proj = 128 if case == "proj" else None
    if kind == "gru":
        cell = rnnlab.GRUCell(cfg.input, cfg.hidden, rngs=nnx.Rngs(0))
    else:
        cell = rnnlab.LSTMCell(cfg.input, cfg.hidden, proj_features=proj, rngs=nnx.Rngs(0))
    out = cell.output_features
    extra = {}
    if case in ("masks", "gru-resets-masks"):
        keep = rng.random((cfg.batch, out)) > 0.25
        extra["recurrent_mask"] = jnp.asarray(keep / 0.75, jnp.float32)
        w = cell.kernel_hh[...]
        extra["kernel_hh"] = w * jnp.asarray(rng.random(w.shape) > 0.5, w.dtype) / 0.5
    if case == "update":
        keep = rng.random((cfg.batch, cfg.hidden)) > 0.25
        extra["update_mask"] = jnp.asarray(keep / 0.75, jnp.float32)
    resets = None
    if case in ("resets", "gru-resets-masks"):
        resets = jnp.zeros((cfg.batch, cfg.time), bool).at[:, ::32].set(True)
    return cell, extra, resets


def _step_fn(case: str, impl: str, cfg):
    cell, extra, resets = _setup(case, cfg)
    layer = rnnlab.RNN(cell, implementation=impl)
    graphdef, state = nnx.split(layer)
    weights = jnp.cos(jnp.arange(cfg.batch * cfg.time * cell.output_features, dtype=jnp.float32))
    weights = weights.reshape(cfg.batch, cfg.time, cell.output_features)

    def forward(state, x):
        model = nnx.merge(graphdef, state)
        params = {**model.cell.cell_params(), **extra}
        if case == "plain":
            return model(x)
        if impl == "scan":
            return model(x, params=params, resets=resets)
        carry = cell.initialize_carry((cfg.batch, cfg.input))
        zeros = jax.tree.map(jnp.zeros_like, carry)
        reset_tm = None if resets is None else resets.T
        _, ys = fused_path.run_fused(
            cell, params, jnp.swapaxes(x, 0, 1), carry, resets=reset_tm, reset_carry=zeros
        )
        return jnp.swapaxes(ys, 0, 1)

    loss = lambda state, x: jnp.sum(forward(state, x) * weights)
    return jax.jit(jax.grad(loss, argnums=(0, 1))), state


def measure(case: str, impl: str, cfg, steps: int, repeats: int) -> dict:
    step, state = _step_fn(case, impl, cfg)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(cfg.batch, cfg.time, cfg.input)))
    x = x.astype(jnp.float32)
    jax.block_until_ready(step(state, x))
    jax.block_until_ready(step(state, x))
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            out = step(state, x)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / steps)
        cpu.append((time.process_time() - start_cpu) / steps)
    median = statistics.median(times)
    # Process CPU time (all threads) is disturbed far less than wall time by other tenants
    # of a shared machine; compare variants by it when the load average is high.
    return dict(
        case=case,
        impl=impl,
        step_ms=round(1e3 * median, 2),
        tokens_per_s=round(cfg.tokens / median),
        cpu_ms=round(1e3 * statistics.median(cpu), 2),
        all_ms=[round(1e3 * t, 2) for t in times],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    parser.add_argument("--config", default="A", choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = CONFIGS[args.config]
    print(json.dumps(dict(config=cfg.as_dict(), load_average=os.getloadavg())), flush=True)
    for case in args.cases:
        for impl in ("fused",) if case == "plain" else ("fused", "scan"):
            print(json.dumps(measure(case, impl, cfg, args.steps, args.repeats)), flush=True)
    print(json.dumps(dict(load_average_after=os.getloadavg())), flush=True)


if __name__ == "__main__":
    main()
