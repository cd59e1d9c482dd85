"""Per-step cost of each recurrent regulariser against the plain layer.

One LSTM layer (:class:`rnnlab.regularizers.RegularizedStackedRNN`), one jitted training
step each (forward, backward, SGD update; loss ``mean(y^2)`` plus AR/TAR where enabled),
float32. The default shape is config A of the performance baselines scaled down by two in
every dimension (batch 16, time 64, input 64, hidden 128). Variants are timed in
interleaved rounds so that load changes on a shared machine hit all of them alike; the
number reported is the median.

Run: ``python -m benchmarks.regularizers [--steps N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.regularizers import Regularization, RegularizedStackedRNN

DEFAULT_SHAPE = dict(batch=16, time=64, input=64, hidden=128)

VARIANTS: dict[str, Regularization] = {
    "plain": Regularization(),
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


def _train_step(reg: Regularization, shape: dict, cell: str):
    model = RegularizedStackedRNN(
        shape["input"], shape["hidden"], 1, cell=cell, regularization=reg, rngs=nnx.Rngs(0)
    )
    graphdef, params = nnx.split(model)

    def loss_fn(params, x, key):
        out, aux = nnx.merge(graphdef, params)(x, deterministic=False, rngs=key, return_aux=True)
        return jnp.mean(out**2) + sum(v for k, v in aux.items() if k in ("ar", "tar"))

    @jax.jit
    def step(params, x, key):
        grads = jax.grad(loss_fn)(params, x, key)
        return jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)

    return step, params


def run(
    shape: dict | None = None,
    *,
    steps: int = 10,
    rounds: int = 3,
    cell: str = "lstm",
    variants: list[str] | None = None,
) -> list[dict]:
    """Times every variant; returns one record per variant.

    Records hold ``name``, ``technique``, ``cell``, the shape, ``ms_per_step`` (median over
    ``rounds * steps`` steps), ``tokens_per_s`` and ``relative_to_plain`` (step time over
    the plain layer's, measured in the same run).
    """
    shape = dict(DEFAULT_SHAPE if shape is None else shape)
    names = list(VARIANTS) if variants is None else list(variants)
    if "plain" not in names:
        names.insert(0, "plain")
    x = jax.random.normal(jax.random.key(0), (shape["batch"], shape["time"], shape["input"]))
    compiled = {}
    for name in names:
        step, params = _train_step(VARIANTS[name], shape, cell)
        params = jax.block_until_ready(step(params, x, jax.random.key(1)))  # compile
        compiled[name] = (step, params)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names:
            step, params = compiled[name]
            for i in range(steps):
                key = jax.random.key(r * steps + i)
                t0 = time.perf_counter()
                params = jax.block_until_ready(step(params, x, key))
                times[name].append(time.perf_counter() - t0)
            compiled[name] = (step, params)
    plain = statistics.median(times["plain"])
    tokens = shape["batch"] * shape["time"]
    records = []
    for name in names:
        med = statistics.median(times[name])
        records.append(
            dict(
                name=f"regularizers/{cell}/{name}",
                technique=name,
                cell=cell,
                **shape,
                backend=jax.default_backend(),
                ms_per_step=1e3 * med,
                tokens_per_s=tokens / med,
                relative_to_plain=med / plain,
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
    print("| technique | ms/step | tokens/s | x plain |")
    print("|---|---|---|---|")
    for rec in records:
        print(
            f"| {rec['technique']} | {rec['ms_per_step']:.2f} | {rec['tokens_per_s']:,.0f} "
            f"| {rec['relative_to_plain']:.2f} |"
        )


if __name__ == "__main__":
    main()
