"""Language-model batches: continuous streams for truncated BPTT, and packed sentences.

Stream layout (Zaremba et al. 2014; Merity et al. 2017): the token stream of a split is cut
into ``G = batch_size * shard_count`` rows of equal length; batch ``k`` holds tokens
``[k T, (k + 1) T)`` of every row, so row ``b`` of batch ``k + 1`` continues row ``b`` of batch
``k`` and a hidden state carried across batches is meaningful. Process ``h`` owns rows
``[h B, (h + 1) B)``. Every training epoch starts at a seeded offset in ``[0, T)`` so that the
cut points move, and sets ``resets`` at its first step. ``resets`` is also True at the first
token of each document; the target that would cross into a new document gets weight 0.

Packed layout: sentences ``[<s>, w_1 .. w_n]`` -> ``[w_1 .. w_n, </s>]`` are laid end to end
into rows of ``T`` tokens (next fit, in order; a sentence longer than ``T`` is truncated),
with ``resets`` at each sentence start and weight 0 on the padding at a row's end.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence

import grain
import numpy as np


class DataTooSmallError(ValueError):
    """A split holds fewer tokens than one batch needs: bad input (a batch size or sequence
    length too large for the data), reported with exit status 2 by the command line."""


def _stream_batch(tokens, starts, rows, k, T, epoch_start, limits=None):
    idx = rows[:, None] + k * T + np.arange(T)[None, :]
    last = len(tokens) - 1
    valid = idx < last if limits is None else idx < limits[:, None]
    safe = np.where(valid, idx, 0)
    inputs = np.where(valid, tokens[safe], 0).astype(np.int32)
    targets = np.where(valid, tokens[np.minimum(safe + 1, last)], 0).astype(np.int32)
    resets = starts[safe] & valid
    if epoch_start:
        resets[:, 0] = True
    weights = (valid & ~starts[np.minimum(safe + 1, last)]).astype(np.float32)
    return {"inputs": inputs, "targets": targets, "weights": weights, "resets": resets}


def stream_batches(
    tokens: np.ndarray,
    starts: np.ndarray,
    *,
    seq_len: int,
    batch_size: int,
    seed: int,
    shard_index: int,
    shard_count: int,
    repeat: bool,
    what: str = "split",
) -> tuple[grain.MapDataset, int | None]:
    """Batches of a token stream for truncated BPTT (see the module docstring).

    ``tokens`` int32 ``[N]``; ``starts`` bool ``[N]``, True at each document's first token.
    Finite (``repeat=False``): rows of ``ceil((N - 1) / G)`` tokens, every target of the split
    scored exactly once, the tail padded with weight 0.
    """
    T, G = seq_len, batch_size * shard_count
    n = len(tokens)
    first_row = shard_index * batch_size
    if repeat:
        span = (n - T) // G
        steps = span // T
        if steps < 1:
            raise DataTooSmallError(
                f"{what} has {n} tokens: expected at least {G * T + T} for batch_size * "
                f"shard_count = {G} rows of seq_len {T}; lower the batch size or seq_len"
            )
        base = first_row + np.arange(batch_size)

        def make(i: int):
            epoch, k = divmod(i, steps)
            offset = int(np.random.default_rng([seed, epoch]).integers(T))
            rows = offset + base * span
            return _stream_batch(tokens, starts, rows, k, T, epoch_start=k == 0)

        return grain.MapDataset.range(sys.maxsize).map(make), None
    if n < 2:
        raise ValueError(f"{what} is empty: expected at least 2 tokens, received {n}")
    span = math.ceil((n - 1) / G)
    steps = math.ceil(span / T)
    g = first_row + np.arange(batch_size)
    rows = g * span
    limits = np.minimum((g + 1) * span, n - 1)

    def make_eval(k: int):
        return _stream_batch(tokens, starts, rows, k, T, epoch_start=k == 0, limits=limits)

    return grain.MapDataset.range(steps).map(make_eval), steps


# ------------------------------------------------------------------------------ packing
def pack_rows(
    segment: Callable[[int], tuple[np.ndarray, np.ndarray]],
    position: int,
    *,
    seq_len: int,
    batch_size: int,
    limit: int | None,
) -> tuple[list[list[tuple[np.ndarray, np.ndarray]]], int]:
    """Next-fit packing of segments ``segment(position), segment(position + 1), ...`` into
    ``batch_size`` rows of at most ``seq_len`` tokens. Returns the rows and the next position.
    """
    rows = []
    cached: tuple[int, tuple[np.ndarray, np.ndarray]] | None = None
    for _ in range(batch_size):
        row, used = [], 0
        while limit is None or position < limit:
            if cached is None or cached[0] != position:
                inputs, targets = segment(position)
                cached = (position, (inputs[:seq_len], targets[:seq_len]))
            seg = cached[1]
            if row and used + len(seg[0]) > seq_len:
                break
            row.append(seg)
            used += len(seg[0])
            position += 1
            if used == seq_len:
                break
        rows.append(row)
    return rows, position


def collate_packed(rows: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]], seq_len: int):
    """Rows of segments -> ``inputs``, ``targets``, ``weights``, ``resets`` arrays."""
    B, T = len(rows), seq_len
    out = {
        "inputs": np.zeros((B, T), np.int32),
        "targets": np.zeros((B, T), np.int32),
        "weights": np.zeros((B, T), np.float32),
        "resets": np.zeros((B, T), bool),
    }
    for b, row in enumerate(rows):
        t = 0
        for inputs, targets in row:
            m = len(inputs)
            out["inputs"][b, t : t + m] = inputs
            out["targets"][b, t : t + m] = targets
            out["weights"][b, t : t + m] = 1.0
            out["resets"][b, t] = True
            t += m
    return out


def count_packed_rows(lengths: Sequence[int], seq_len: int) -> int:
    """How many rows next-fit packing makes of segments with these lengths."""
    rows, used = 0, 0
    for length in lengths:
        length = min(length, seq_len)
        if used and used + length > seq_len:
            rows, used = rows + 1, 0
        used += length
        if used == seq_len:
            rows, used = rows + 1, 0
    return rows + (1 if used else 0)


class PackedBatches(grain.IterDataset):
    """A grain ``IterDataset`` of packed batches over a ``MapDataset`` of segments.

    Its iterator state is the position of the next unread segment (and, when finite, the
    number of batches made), so a restore continues exactly. A finite dataset pads with
    all-padding batches up to ``num_batches`` so every process makes the same number.
    """

    def __init__(self, segments: grain.MapDataset, *, seq_len, batch_size, limit, num_batches):
        super().__init__()
        self.segments = segments
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.limit = limit
        self.num_batches = num_batches

    def __iter__(self):
        return _PackedIterator(self)

    def __str__(self) -> str:
        return f"PackedBatches(seq_len={self.seq_len}, batch_size={self.batch_size})"


class _PackedIterator(grain.DatasetIterator):
    def __init__(self, ds: PackedBatches):
        super().__init__()
        self._ds = ds
        self._position = 0
        self._made = 0

    def __next__(self):
        ds = self._ds
        if ds.num_batches is not None and self._made >= ds.num_batches:
            raise StopIteration
        rows, self._position = pack_rows(
            ds.segments.__getitem__,
            self._position,
            seq_len=ds.seq_len,
            batch_size=ds.batch_size,
            limit=ds.limit,
        )
        self._made += 1
        return collate_packed(rows, ds.seq_len)

    def get_state(self):
        return {"position": self._position, "made": self._made}

    def set_state(self, state):
        self._position = int(state["position"])
        self._made = int(state["made"])
