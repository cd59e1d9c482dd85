"""Synthetic tasks as deterministic, seeded, infinite sources: adding, copy, selective copy,
Mackey-Glass.

Example ``i`` of a stream is drawn from ``numpy.random.default_rng([seed, stream, i])``, so
it depends on nothing but its index: training (``repeat=True``) streams use the ``seed``
given to ``load`` and are infinite; validation and test are fixed sets of ``eval_examples``
(default 1000) drawn with ``data_seed`` (default 0), the same whatever the training seed.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from typing import Any

import grain
import numpy as np

from rnnlab.data import pipeline
from rnnlab.data.config import check_split
from rnnlab.data.options import POSITIVE, Common, Threads, opt
from rnnlab.data.registry import Dataset, register

STREAMS = {"train": 0, "validation": 1, "test": 2}


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, STREAMS[split], index])


# ----------------------------------------------------------------------- adding problem
def adding_example(rng: np.random.Generator, T: int) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter & Schmidhuber 1997), in the form of Le et al. (2015).

    Input ``[T, 2]``: channel 0 holds values drawn from U(0, 1), channel 1 marks two steps,
    one in each half of the sequence. Target: the sum of the two marked values. Predicting
    the mean 1 gives MSE = Var(u1 + u2) = 1/6 (about 0.167), the baseline to beat.
    """
    values = rng.uniform(0.0, 1.0, T)
    half = max(T // 2, 1)
    first = rng.integers(0, half)
    second = rng.integers(half, T) if T > 1 else first
    marks = np.zeros(T)
    marks[[first, second]] = 1.0
    x = np.stack([values, marks], axis=1).astype(np.float32)
    return x, np.array([values[first] + values[second]], np.float32)


def copy_example(
    rng: np.random.Generator, delay: int, num_symbols: int, copy_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """The copy-memory task (Arjovsky, Shah & Bengio 2016).

    Length ``delay + 2 * copy_len``. Input: ``copy_len`` symbols from ``1..num_symbols``,
    ``delay - 1`` blanks (0), the delimiter ``num_symbols + 1``, then ``copy_len`` blanks.
    Target: blanks, then the symbols in the last ``copy_len`` steps. Guessing blanks and then
    uniform symbols scores ``copy_len * log(num_symbols) / (delay + 2 * copy_len)``
    (10 log 8 / (T + 20) in the paper).
    """
    symbols = rng.integers(1, num_symbols + 1, copy_len)
    total = delay + 2 * copy_len
    x = np.zeros(total, np.int32)
    y = np.zeros(total, np.int32)
    x[:copy_len] = symbols
    x[copy_len + delay - 1] = num_symbols + 1
    y[-copy_len:] = symbols
    return x, y


def selective_copy_example(
    rng: np.random.Generator, context: int, num_symbols: int, copy_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The selective-copying task (Gu & Dao 2023, "Mamba", section 3.1 and table 1).

    Length ``context + copy_len``. Input: ``copy_len`` symbols from ``1..num_symbols`` at
    random positions (in order) of the first ``context`` steps, the noise token 0 at the
    others, then ``copy_len`` markers ``num_symbols + 1``. Target: the symbols in order at the
    marker steps; ``weights`` (1 there, 0 elsewhere) make the loss and the accuracy count
    those steps only. The spacing varies from example to example, so a recurrence whose
    decay ignores its input (linear time-invariant, like S4) cannot tell the symbols from
    the noise. Guessing uniformly scores ``log(num_symbols)`` nats and ``1 / num_symbols``
    accuracy. The layout is the S4 repository's ``torch_copying_data(variable=True)``
    with ``A = num_symbols + 2`` tokens and ``L = context - copy_len`` noise steps.
    """
    if copy_len > context:
        raise ValueError(f"copy_len must be at most seq_len={context}, received {copy_len}")
    symbols = rng.integers(1, num_symbols + 1, copy_len)
    positions = np.sort(rng.choice(context, copy_len, replace=False))
    x = np.zeros(context + copy_len, np.int32)
    x[positions] = symbols
    x[context:] = num_symbols + 1
    y = np.zeros(context + copy_len, np.int32)
    y[context:] = symbols
    weights = np.zeros(context + copy_len, np.float32)
    weights[context:] = 1.0
    return x, y, weights


# --------------------------------------------------------------------------- Mackey-Glass
MG = {"beta": 0.2, "gamma": 0.1, "n": 10.0, "tau": 17.0}


def mackey_glass(histories: np.ndarray, steps: int, *, dt: float = 0.25, every: int = 4):
    """Integrates the Mackey-Glass delay equation (Mackey & Glass 1977) for a batch.

    dx/dt = beta x(t - tau) / (1 + x(t - tau)^n) - gamma x(t), with beta 0.2, gamma 0.1,
    n 10, tau 17 (chaotic). ``histories`` ``[B, tau/dt + 1]`` is x on ``[-tau, 0]``. Uses the
    classical 4th-order Runge-Kutta step with the delayed term taken from the stored
    trajectory (linear interpolation at half steps). Returns ``[B, steps]``, x sampled every
    ``every * dt`` time units after t = 0.
    """
    beta, gamma, n, tau = MG["beta"], MG["gamma"], MG["n"], MG["tau"]
    lag = int(round(tau / dt))
    if histories.shape[1] != lag + 1:
        raise ValueError(f"histories must have {lag + 1} columns, received {histories.shape[1]}")
    total = steps * every
    x = np.empty((histories.shape[0], lag + 1 + total), np.float64)
    x[:, : lag + 1] = histories

    def f(now, delayed):
        return beta * delayed / (1.0 + delayed**n) - gamma * now

    for i in range(lag, lag + total):
        d0, d1 = x[:, i - lag], x[:, i - lag + 1]
        dh = 0.5 * (d0 + d1)
        xi = x[:, i]
        k1 = f(xi, d0)
        k2 = f(xi + 0.5 * dt * k1, dh)
        k3 = f(xi + 0.5 * dt * k2, dh)
        k4 = f(xi + dt * k3, d1)
        x[:, i + 1] = xi + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x[:, lag + every :: every][:, :steps]


MG_DT, MG_WARMUP = 0.25, 100


def mackey_glass_examples(indices, *, seed, split, length, warmup=MG_WARMUP):
    """Series of ``length`` unit-time samples, each from its own random constant history in
    [0.5, 1.5], after ``warmup`` time units (the transient is dropped)."""
    lag = int(round(MG["tau"] / MG_DT))
    starts = np.array([example_rng(seed, split, max(int(i), 0)).uniform(0.5, 1.5) for i in indices])
    histories = np.repeat(starts[:, None], lag + 1, axis=1)
    return mackey_glass(histories, warmup + length, dt=MG_DT, every=int(round(1 / MG_DT)))[
        :, warmup:
    ]


# ------------------------------------------------------------------------- the pipelines
def index_batches(cfg, *, split, batch_size, seed, shard_index, shard_count, repeat):
    """Batches of example indices (-1 = padding) and the stream seed for ``split``."""
    check_split(split)
    if repeat:
        ds = grain.MapDataset.range(sys.maxsize)[shard_index::shard_count]
        num_batches, stream_seed = None, seed
    else:
        ds, num_batches = pipeline.example_order(
            cfg.get("eval_examples"),
            batch_size=batch_size,
            seed=0,
            shuffle=False,
            shard_index=shard_index,
            shard_count=shard_count,
            repeat=False,
        )
        stream_seed = int(cfg.get("data_seed"))
    return ds, num_batches, stream_seed


def per_example_load(make: Callable[[np.random.Generator, Any], dict[str, np.ndarray]]):
    """A ``load`` for tasks whose examples are independent draws, stacked into batches."""

    def load(cfg, info, *, split, **shard):
        ds, num_batches, stream_seed = index_batches(cfg, split=split, **shard)

        def collate(indices):
            rows = [make(example_rng(stream_seed, split, max(int(i), 0)), info) for i in indices]
            batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
            real = np.array([int(i) >= 0 for i in indices])
            if "weights" in batch:
                batch["weights"] = batch["weights"] * real[:, None].astype(np.float32)
            else:
                batch["weights"] = real.astype(np.float32)
            return batch

        ds = ds.batch(shard["batch_size"], drop_remainder=True, batch_fn=collate)
        return ds.to_iter_dataset(pipeline.read_options(cfg)), num_batches

    return load


def _adding_info(cfg):
    T = cfg.get("seq_len")
    return {
        "task": "regression",
        "input_features": 2,
        "output_features": 1,
        "seq_len": T,
        "baseline_mse": 1.0 / 6.0,
    }


def _adding_make(rng, info):
    x, y = adding_example(rng, info["seq_len"])
    return {"inputs": x, "targets": y}


def _copy_info(cfg):
    delay = cfg.get("seq_len")
    num_symbols = cfg.get("num_symbols")
    copy_len = cfg.get("copy_len")
    total = delay + 2 * copy_len
    return {
        "task": "copy",
        "vocab_size": num_symbols + 2,
        "num_classes": num_symbols + 2,
        "delay": delay,
        "copy_len": copy_len,
        "num_symbols": num_symbols,
        "seq_len": total,
        "baseline_loss": copy_len * math.log(num_symbols) / total,
    }


def _copy_make(rng, info):
    x, y = copy_example(rng, info["delay"], info["num_symbols"], info["copy_len"])
    return {"inputs": x, "targets": y, "weights": np.ones(len(x), np.float32)}


def _selective_copy_info(cfg):
    context = cfg.get("seq_len")
    num_symbols = cfg.get("num_symbols")
    copy_len = cfg.get("copy_len")
    if copy_len > context:
        raise ValueError(f"copy_len must be at most seq_len={context}, received {copy_len}")
    return {
        "task": "copy",
        "vocab_size": num_symbols + 2,
        "num_classes": num_symbols + 2,
        "context": context,
        "copy_len": copy_len,
        "num_symbols": num_symbols,
        "seq_len": context + copy_len,
        "baseline_loss": math.log(num_symbols),
        "baseline_accuracy": 1.0 / num_symbols,
    }


def _selective_copy_make(rng, info):
    x, y, w = selective_copy_example(rng, info["context"], info["num_symbols"], info["copy_len"])
    return {"inputs": x, "targets": y, "weights": w}


@dataclasses.dataclass(frozen=True)
class Generated(Common, Threads):
    """Options of every dataset generated example by example (index_batches)."""

    eval_examples: int = opt(
        1000, "examples of each evaluation split (fixed by data_seed)", POSITIVE
    )
    data_seed: int = opt(0, "seed of the evaluation examples")


@dataclasses.dataclass(frozen=True)
class Adding(Generated):
    seq_len: int = opt(200, "sequence length T", POSITIVE)


@dataclasses.dataclass(frozen=True)
class Copy(Generated):
    seq_len: int = opt(100, "delay T between the symbols and the recall marker", POSITIVE)
    num_symbols: int = opt(8, "alphabet size of the copied symbols", POSITIVE)
    copy_len: int = opt(10, "symbols to copy", POSITIVE)


@dataclasses.dataclass(frozen=True)
class SelectiveCopy(Generated):
    seq_len: int = opt(256, "context steps holding the symbols among noise (L + M)", POSITIVE)
    num_symbols: int = opt(
        14, "alphabet of the copied symbols (Gu & Dao: 16 tokens, 14 symbols)", POSITIVE
    )
    copy_len: int = opt(16, "symbols to copy (M)", POSITIVE)


register(
    Dataset(
        "adding",
        "regression",
        _adding_info,
        per_example_load(_adding_make),
        "adding",
        Adding,
    )
)
register(Dataset("copy", "copy", _copy_info, per_example_load(_copy_make), "copy memory", Copy))
register(
    Dataset(
        "selective_copy",
        "copy",
        _selective_copy_info,
        per_example_load(_selective_copy_make),
        "selective copying",
        SelectiveCopy,
    )
)
