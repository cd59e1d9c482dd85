"""Per-step cost of each recurrent regulariser against the plain layer.

One LSTM layer (:class:`rnnlab.layers.StackedRNN`), one jitted training
step each (forward, backward, SGD update; loss ``mean(y^2)`` plus AR/TAR where enabled),
float32. The default shape is config A of the performance baselines scaled down by two in
every dimension (batch 16, time 64, input 64, hidden 128). Variants are timed in
interleaved rounds so that load changes on a shared machine hit all of them alike; each
record gives the median and the minimum step time (the minimum is the steadier number on a
busy machine).

Run: ``python -m benchmarks.regularizers [--steps N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.layers import StackedRNN, fused_path
from rnnlab.regularizers import Regularization, prepare_layer

DEFAULT_SHAPE = dict(batch=16, time=64, input=64, hidden=128)

VARIANTS: dict[str, Regularization] = {
    "plain": Regularization(),
    # The same plain layer forced onto the step-by-step scan: the baseline of the technique
    # that needs the scan (zoneout); recurrent masks and weight drop run fused.
    "plain_scan": Regularization(),
    "dropout_in_out": Regularization(input_dropout=0.3, output_dropout=0.3),
    "variational_in_out": Regularization(input_dropout=0.3, output_dropout=0.3, variational=True),
    "recurrent_gal": Regularization(recurrent_dropout=0.25),
    "recurrent_semeniuta": Regularization(
        recurrent_dropout=0.25, recurrent_dropout_kind="semeniuta"
    ),
    "zoneout": Regularization(zoneout_c=0.5, zoneout_h=0.05),
    "weight_drop": Regularization(weight_drop=0.5),
    "ar_tar": Regularization(ar=2.0, tar=1.0),
    "awd_lstm": Regularization.awd_lstm(),
}


def _train_step(name: str, shape: dict, cell: str):
    reg = VARIANTS[name]
    model = StackedRNN(
        shape["input"],
        shape["hidden"],
        1,
        cell=cell,
        regularization=reg,
        rnn_kwargs={"implementation": "scan" if name == "plain_scan" else "auto"},
        rngs=nnx.Rngs(0),
    )
    # The stack keeps its own dropout stream (an RNG key): only the parameters train.
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    rnn = model.layers[0]
    plan = prepare_layer(
        rnn, reg, batch_shape=(shape["batch"],), num_steps=shape["time"], rngs=jax.random.key(0),
        deterministic=False,
    )  # fmt: skip
    why = fused_path.unsupported_reason(
        rnn.cell,
        plan.params or rnn.cell.cell_params(),
        step_transform=plan.step_transform,
        step_inputs=plan.step_inputs,
    )
    path = "scan" if rnn.implementation == "scan" or why is not None else "fused"

    def loss_fn(params, x, key):
        out, aux = nnx.merge(graphdef, params, rest)(x, rngs=key, return_aux=True)
        return jnp.mean(out**2) + sum(v for k, v in aux.items() if k in ("ar", "tar"))

    @jax.jit
    def step(params, x, key):
        grads = jax.grad(loss_fn)(params, x, key)
        return jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)

    return step, params, path


def interleaved_times(compiled: dict, x, *, rounds: int, steps: int) -> dict[str, list[float]]:
    """Seconds per step of each ``name -> (step, params)`` (``step(params, x, key) ->
    params``), timed in interleaved rounds so load changes hit every variant alike."""
    times: dict[str, list[float]] = {name: [] for name in compiled}
    for r in range(rounds):
        for name in list(compiled):
            step, params = compiled[name]
            for i in range(steps):
                key = jax.random.key(r * steps + i)
                t0 = time.perf_counter()
                params = jax.block_until_ready(step(params, x, key))
                times[name].append(time.perf_counter() - t0)
            compiled[name] = (step, params)
    return times


def run(
    shape: dict | None = None,
    *,
    steps: int = 10,
    rounds: int = 3,
    cell: str = "lstm",
    variants: list[str] | None = None,
) -> list[dict]:
    """Times every variant; returns one record per variant.

    Records hold ``name``, ``technique``, ``cell``, the shape, ``path`` (``"fused"`` or
    ``"scan"``: which implementation the layer ran), ``ms_per_step`` (median over ``rounds *
    steps`` steps), ``ms_min``, ``tokens_per_s`` (from the median), ``relative_to_plain`` /
    ``relative_to_plain_min`` (step time over the default plain layer's, measured in the same
    run) and ``relative_to_plain_scan`` / ``relative_to_plain_scan_min`` (over the plain
    layer forced onto the scan path: the cost of the technique itself).
    """
    shape = dict(DEFAULT_SHAPE if shape is None else shape)
    names = list(VARIANTS) if variants is None else list(variants)
    for base in ("plain_scan", "plain"):
        if base not in names:
            names.insert(0, base)
    x = jax.random.normal(jax.random.key(0), (shape["batch"], shape["time"], shape["input"]))
    compiled, paths = {}, {}
    for name in names:
        step, params, path = _train_step(name, shape, cell)
        params = jax.block_until_ready(step(params, x, jax.random.key(1)))  # compile
        compiled[name] = (step, params)
        paths[name] = path
    times = interleaved_times(compiled, x, rounds=rounds, steps=steps)
    plain, plain_min = statistics.median(times["plain"]), min(times["plain"])
    scan, scan_min = statistics.median(times["plain_scan"]), min(times["plain_scan"])
    tokens = shape["batch"] * shape["time"]
    records = []
    for name in names:
        med, best = statistics.median(times[name]), min(times[name])
        records.append(
            dict(
                name=f"regularizers/{cell}/{name}",
                technique=name,
                cell=cell,
                **shape,
                backend=jax.default_backend(),
                ms_per_step=1e3 * med,
                ms_min=1e3 * best,
                tokens_per_s=tokens / med,
                relative_to_plain=med / plain,
                relative_to_plain_min=best / plain_min,
                relative_to_plain_scan=med / scan,
                relative_to_plain_scan_min=best / scan_min,
                path=paths[name],
            )
        )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cell", default="lstm")
    args = parser.parse_args()
    records = run(steps=args.steps, rounds=args.rounds, cell=args.cell)
    print(
        "| technique | path | ms/step (median) | ms/step (min) | x plain (median, min) "
        "| x plain scan (median, min) |"
    )
    print("|---|---|---|---|---|---|")
    for rec in records:
        print(
            f"| {rec['technique']} | {rec['path']} | {rec['ms_per_step']:.2f} "
            f"| {rec['ms_min']:.2f} | {rec['relative_to_plain']:.2f}, "
            f"{rec['relative_to_plain_min']:.2f} | {rec['relative_to_plain_scan']:.2f}, "
            f"{rec['relative_to_plain_scan_min']:.2f} |"
        )


if __name__ == "__main__":
    main()
