"""Small in-memory data sources with the data contract, for tests of the engine.

``FakeSource()`` serves three datasets, chosen by ``config.data.name``:

- ``fake_lm``: a character stream from a fixed first-order Markov chain over
  ``vocab_size`` symbols, laid out for truncated BPTT (row ``b`` of batch ``k + 1``
  continues row ``b`` of batch ``k``), with a reset at the start of every row;
- ``fake_classification``: float sequences of varying length whose class is the sign
  pattern of the mean of the first two features;
- ``fake_regression``: a small adding problem (Hochreiter & Schmidhuber 1997).

Iterators expose ``get_state``/``set_state`` (a position), so resume tests are exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}


def _opt(cfg: Any, key: str, default: Any) -> Any:
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


class FakeIterator:
    """Batches ``make(k)`` for ``k = 0, 1, ...`` (finite when ``num_batches`` is set)."""

    def __init__(self, make, num_batches: int | None):
        self._make, self.num_batches, self._k = make, num_batches, 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self.num_batches is not None and self._k >= self.num_batches:
            raise StopIteration
        batch = self._make(self._k)
        self._k += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        return {"position": self._k}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._k = int(state["position"])


class FakeSource:
    """``info(cfg)`` and ``load(cfg, ...)`` for the fake datasets (see the module docstring)."""

    names = ("fake_lm", "fake_classification", "fake_regression")

    def info(self, cfg: Any) -> dict[str, Any]:
        name = _opt(cfg, "name", "")
        if name == "fake_lm":
            v = int(_opt(cfg, "vocab_size", 8))
            vocab = ["<pad>", "<unk>"] + [chr(ord("a") + i) for i in range(v - 2)]
            return {"task": "lm", "level": "char", "vocab": vocab, "vocab_size": v}
        if name == "fake_classification":
            return {"task": "classification", "num_classes": 4, "input_features": 3}
        if name == "fake_regression":
            return {"task": "regression", "output_features": 1, "input_features": 2}
        raise ValueError(f"name must be one of {list(self.names)}, received {name!r}")

    def load(self, cfg, *, split, batch_size, seed, shard_index=0, shard_count=1, repeat=True):
        info = self.info(cfg)
        T = int(_opt(cfg, "seq_len", 16))
        eval_batches = int(_opt(cfg, "eval_batches", 2))
        num = None if repeat else eval_batches
        rng_seed = [int(seed), SPLIT_SEEDS[split], shard_index]
        if info["task"] == "lm":
            make = self._lm(info["vocab_size"], T, batch_size, rng_seed)
        elif info["task"] == "classification":
            make = self._classification(T, batch_size, rng_seed)
        else:
            make = self._regression(T, batch_size, rng_seed)
        return FakeIterator(make, num)

    @staticmethod
    def _lm(v: int, T: int, B: int, seed):
        # A sparse transition matrix: each symbol has two likely successors, so a model
        # can get well below the uniform log(v - 2) nats.
        chain = np.random.default_rng(1234)
        probs = np.full((v - 2, v - 2), 0.02)
        for s in range(v - 2):
            probs[s, chain.choice(v - 2, 2, replace=False)] += 1.0
        probs /= probs.sum(1, keepdims=True)
        length = 4096
        rng = np.random.default_rng(seed)
        rows = np.zeros((B, length), np.int32)
        state = rng.integers(v - 2, size=B)
        for t in range(length):
            rows[:, t] = state + 2
            u = rng.random(B)[:, None]
            state = (np.cumsum(probs[state], axis=1) < u).sum(1).clip(0, v - 3)
        steps = (length - 1) // T

        def make(k: int):
            start = (k % steps) * T
            resets = np.zeros((B, T), bool)
            if start == 0:
                resets[:, 0] = True
            return {
                "inputs": rows[:, start : start + T],
                "targets": rows[:, start + 1 : start + T + 1],
                "weights": np.ones((B, T), np.float32),
                "resets": resets,
            }

        return make

    @staticmethod
    def _classification(T: int, B: int, seed):
        def make(k: int):
            rng = np.random.default_rng(seed + [k])
            lengths = rng.integers(T // 2, T + 1, size=B).astype(np.int32)
            x = rng.normal(size=(B, T, 3)).astype(np.float32)
            x[np.arange(T)[None, :] >= lengths[:, None]] = 0.0
            m = x[..., :2].sum(1) / lengths[:, None]
            labels = ((m[:, 0] > 0).astype(np.int32) * 2 + (m[:, 1] > 0)).astype(np.int32)
            return {
                "inputs": x,
                "seq_lengths": lengths,
                "labels": labels,
                "weights": np.ones((B,), np.float32),
            }

        return make

    @staticmethod
    def _regression(T: int, B: int, seed):
        def make(k: int):
            rng = np.random.default_rng(seed + [k])
            values = rng.random((B, T)).astype(np.float32)
            marks = np.zeros((B, T), np.float32)
            for b in range(B):
                marks[b, rng.choice(T, 2, replace=False)] = 1.0
            x = np.stack([values, marks], axis=-1)
            y = (values * marks).sum(1, keepdims=True).astype(np.float32)
            return {"inputs": x, "targets": y, "weights": np.ones((B,), np.float32)}

        return make
