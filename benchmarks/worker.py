"""One implementation in one process: builds it, then times steps on request.

The orchestrator (:mod:`benchmarks.run`) starts ``python -m benchmarks.worker SPEC`` for each
implementation of a configuration and keeps them all alive, so that it can time them in
interleaved rounds: load from other processes on a shared machine then hits every
implementation alike. Protocol, one JSON object per line on stdout:

* start-up: build, compile and warm up both steps; reply ``{"ready": ...}``;
* ``run MODE K`` on stdin (``MODE`` is ``train`` or ``forward``): time ``K`` steps and
  reply ``{"times": [...], "cpu": [...]}`` (wall seconds, and CPU seconds of the whole
  process: the work, which other tenants of a loaded machine disturb far less);
* ``done``: reply the peak resident memory of the process and exit.

Peak memory is the process's high-water resident set size (``getrusage``), so each
implementation runs in a fresh process.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from benchmarks.configs import CONFIGS

SLOW_STEP_S = 3.0


def _rss_mb() -> float:
    """Current resident set size in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_torch(cell: str, cfg):
    """Training and forward step closures for PyTorch ``nn.LSTM`` / ``nn.GRU``."""
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    layer = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(
        cfg.input, cfg.hidden, batch_first=True
    )
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
    x = torch.randn(cfg.batch, cfg.time, cfg.input)

    def train():
        opt.zero_grad(set_to_none=True)
        y, _ = layer(x)
        loss = (y * y).mean()
        loss.backward()
        opt.step()
        return loss.item()

    def forward():
        with torch.inference_mode():
            y, _ = layer(x)
        return float(y[0, 0, 0])

    info = {"torch": torch.__version__, "mkldnn": torch.backends.mkldnn.is_available()}
    return train, forward, info


def _jax_model(impl: str, cell: str, cfg):
    import jax.numpy as jnp
    from flax import nnx

    rngs = nnx.Rngs(0)
    if impl == "flax":
        make = nnx.OptimizedLSTMCell if cell == "lstm" else nnx.GRUCell
        flax_cell = make(cfg.input, cfg.hidden, rngs=rngs)
        # A zero carry made once outside: nnx.RNN would otherwise draw it from an RNG
        # stream whose counter cannot be updated inside a jitted step.
        carry = flax_cell.initialize_carry((cfg.batch, cfg.input), rngs=rngs)
        return nnx.RNN(flax_cell, rngs=False), carry
    import rnnlab

    dtype = jnp.bfloat16 if impl.endswith("bf16") else None
    make = rnnlab.LSTMCell if cell == "lstm" else rnnlab.GRUCell
    layer_cell = make(cfg.input, cfg.hidden, dtype=dtype, rngs=rngs)
    layer = rnnlab.RNN(
        layer_cell,
        implementation={"rnnlab-scan": "scan", "rnnlab-kernel": "kernel"}.get(
            impl.removesuffix("-remat"), "fused"
        ),
        remat="full" if impl.endswith("remat") else None,
    )
    return layer, layer_cell.initialize_carry((cfg.batch, cfg.input))


def build_jax(impl: str, cell: str, cfg):
    """Training and forward step closures for a JAX implementation (jitted, buffers donated)."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    model, carry = _jax_model(impl, cell, cfg)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)
    x = jax.random.normal(jax.random.key(0), (cfg.batch, cfg.time, cfg.input), jnp.float32)

    def loss_fn(params, x):
        y = nnx.merge(graphdef, params, rest)(x, initial_carry=carry)
        return jnp.mean(jnp.square(y.astype(jnp.float32)))

    @jax.jit
    def forward_fn(params, x):
        return nnx.merge(graphdef, params, rest)(x, initial_carry=carry)

    def step_fn(params, opt_state, x):
        loss, grads = jax.value_and_grad(loss_fn)(params, x)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step_jit = jax.jit(step_fn, donate_argnums=(0, 1))
    state = {"params": params, "opt": tx.init(params)}

    def train():
        state["params"], state["opt"], loss = step_jit(state["params"], state["opt"], x)
        return float(loss)

    def forward():
        return jax.block_until_ready(forward_fn(state["params"], x))

    import flax

    info = {"jax": jax.__version__, "flax": flax.__version__, "backend": jax.default_backend()}
    return train, forward, info


def matmul_peak(framework: str, size: int = 2048, repeats: int = 10) -> dict:
    """Best float32 ``size^3`` matmul rate in GFLOP/s: the machine's practical peak."""
    if framework == "torch":
        import torch

        torch.set_num_threads(2)
        a = torch.randn(size, size)
        run = lambda: torch.mm(a, a)
    else:
        import jax
        import jax.numpy as jnp

        a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
        dot = jax.jit(jnp.dot)
        run = lambda: dot(a, a).block_until_ready()
    run()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return {"framework": framework, "size": size, "gflops": 2.0 * size**3 / best / 1e9}


def main() -> None:
    spec = json.loads(sys.argv[1])
    if "peak" in spec:
        print(json.dumps(matmul_peak(spec["peak"])), flush=True)
        return
    cfg = CONFIGS[spec["config"]]
    impl, cell = spec["impl"], spec["cell"]
    modes = spec.get("modes", ["train", "forward"])
    rss_start = _rss_mb()
    t0 = time.perf_counter()
    if impl.startswith("torch"):
        train, forward, info = build_torch(cell, cfg)
    else:
        train, forward, info = build_jax(impl, cell, cfg)
    steps = {"train": train, "forward": forward}
    # Warm-up: the first call compiles; a second (skipped for slow steps, whose first call
    # is dominated by the step itself) settles allocations and estimates the step time.
    estimate = {}
    for mode in modes:
        t = time.perf_counter()
        steps[mode]()
        estimate[mode] = time.perf_counter() - t
        if estimate[mode] < SLOW_STEP_S:
            t = time.perf_counter()
            steps[mode]()
            estimate[mode] = time.perf_counter() - t
    reply = dict(
        ready=True,
        setup_s=time.perf_counter() - t0,
        rss_start_mb=rss_start,
        estimate_s=estimate,
        **info,
    )
    print(json.dumps(reply), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "done":
            print(json.dumps({"peak_rss_mb": _peak_rss_mb(), "rss_mb": _rss_mb()}), flush=True)
            return
        mode, count = words[1], int(words[2])
        times, cpu = [], []
        for _ in range(count):
            t, c = time.perf_counter(), time.process_time()
            steps[mode]()
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        print(json.dumps({"times": times, "cpu": cpu}), flush=True)


if __name__ == "__main__":
    main()
