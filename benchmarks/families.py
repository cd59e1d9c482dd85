"""Training throughput of the recurrent families beside the LSTM's.

One :class:`rnnlab.layers.StackedRNN` layer of each cell (LSTM, GRU, RG-LRU, the Hawk
block, S6, sLSTM, mLSTM), each on the path ``implementation="auto"`` chooses, one jitted
training step (forward, backward, SGD update of ``mean(y^2)``), float32, timed in
interleaved rounds (:func:`benchmarks.regularizers.interleaved_times`). Every layer has the
same input and output width; parameter counts differ by family and are reported. The
default shape is config A of the performance baselines scaled down by two in every
dimension (batch 16, time 64, input 64, hidden 128).

Run: ``python -m benchmarks.families [--steps N] [--rounds R] [--cells lstm,rglru]``.
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks.regularizers import DEFAULT_SHAPE, interleaved_times
from rnnlab.layers import StackedRNN, dispatch

# Registry name -> cell arguments (heads and state sizes of the papers' small models).
CELLS: dict[str, dict] = {
    "lstm": {},
    "gru": {},
    "rglru": {"num_heads": 4},
    "hawk": {"num_heads": 4},
    "s6": {"state_size": 16},
    "slstm": {"num_heads": 4},
    "mlstm": {"num_heads": 4},
}


def _train_step(cell: str, shape: dict):
    model = StackedRNN(
        shape["input"], shape["hidden"], 1, cell=cell, cell_kwargs=CELLS[cell], rngs=nnx.Rngs(0)
    )
    graphdef, params = nnx.split(model)
    x = jnp.zeros((shape["batch"], shape["time"], shape["input"]))
    with dispatch.recording() as record:
        jax.eval_shape(lambda p: nnx.merge(graphdef, p)(x), params)

    def loss_fn(params, x):
        return jnp.mean(nnx.merge(graphdef, params)(x) ** 2)

    @jax.jit
    def step(params, x, key):
        del key
        grads = jax.grad(loss_fn)(params, x)
        return jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)

    size = sum(leaf.size for leaf in jax.tree.leaves(params))
    return step, params, dispatch.summary(record), size


def run(
    shape: dict | None = None, *, steps: int = 10, rounds: int = 3, cells: list[str] | None = None
) -> list[dict]:
    """Times every family; one record each with ``cell``, ``path`` (the header line),
    ``params``, ``ms_per_step`` (median), ``ms_min``, ``tokens_per_s`` and
    ``relative_to_lstm`` / ``relative_to_lstm_min`` (step time over the LSTM's, same run)."""
    shape = dict(DEFAULT_SHAPE if shape is None else shape)
    names = list(CELLS) if cells is None else list(cells)
    unknown = sorted(set(names) - set(CELLS))
    if unknown:
        raise ValueError(f"cells must be among {sorted(CELLS)}, got {unknown}")
    if "lstm" not in names:
        names.insert(0, "lstm")
    x = jax.random.normal(jax.random.key(0), (shape["batch"], shape["time"], shape["input"]))
    compiled, info = {}, {}
    for name in names:
        step, params, path, size = _train_step(name, shape)
        compiled[name] = (step, jax.block_until_ready(step(params, x, None)))  # compile
        info[name] = (path, size)
    times = interleaved_times(compiled, x, rounds=rounds, steps=steps)
    lstm, lstm_min = statistics.median(times["lstm"]), min(times["lstm"])
    tokens = shape["batch"] * shape["time"]
    records = []
    for name in names:
        med, best = statistics.median(times[name]), min(times[name])
        records.append(
            dict(
                name=f"families/{name}",
                cell=name,
                **shape,
                backend=jax.default_backend(),
                path=info[name][0],
                params=info[name][1],
                ms_per_step=1e3 * med,
                ms_min=1e3 * best,
                tokens_per_s=tokens / med,
                relative_to_lstm=med / lstm,
                relative_to_lstm_min=best / lstm_min,
            )
        )
    return records


def table(records: list[dict]) -> list[str]:
    """Markdown rows of :func:`run`'s records."""
    out = [
        "| cell | path | parameters | tokens/s (median) | ms/step (median, min) "
        "| x LSTM step time (median, min) |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        out.append(
            f"| {r['cell']} | {r['path']} | {r['params']:,} | {r['tokens_per_s']:,.0f} "
            f"| {r['ms_per_step']:.2f}, {r['ms_min']:.2f} "
            f"| {r['relative_to_lstm']:.2f}, {r['relative_to_lstm_min']:.2f} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cells", default="", help="comma-separated registry names")
    args = parser.parse_args()
    cells = [c for c in args.cells.split(",") if c] or None
    print("\n".join(table(run(steps=args.steps, rounds=args.rounds, cells=cells))))


if __name__ == "__main__":
    main()
