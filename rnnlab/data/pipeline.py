"""grain pipelines shared by every dataset: example order, sharding, bucketing, resumable iterator.

Every pipeline is a ``grain.MapDataset`` (random access by position) turned into an
``IterDataset`` with thread prefetch. Because element ``k`` of the final dataset is a pure
function of ``k``, the seed and the shard, the iterator state is a position, and restoring it
gives exactly the batch that would have come next.

Sharding follows the global order: with ``n`` processes, process ``h`` takes positions
``h, h + n, h + 2n, ...`` of the (per-epoch shuffled) example order, so the processes' shards
are disjoint and together cover every epoch.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import grain
import numpy as np

PAD_INDEX = -1


class DataIterator:
    """An iterator of local batches (dicts of numpy arrays) with exact save and restore.

    ``get_state()`` returns a JSON-serialisable dict; ``set_state(state)`` on an iterator built
    with the same config, split, seed, batch size and sharding continues exactly where the
    saved one stopped. ``num_batches`` is the number of batches of a finite (``repeat=False``)
    iterator, None for an infinite one.
    """

    def __init__(self, dataset: grain.IterDataset, *, meta: dict[str, Any], num_batches=None):
        self._dataset = dataset
        self._iterator = iter(dataset)
        self._closed = False
        self.meta = dict(meta)
        self.num_batches = num_batches

    def __iter__(self) -> DataIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._closed:
            raise StopIteration
        try:
            return next(self._iterator)
        except StopIteration:
            self.close()  # a finished pass releases its reader threads at once
            raise

    def close(self) -> None:
        """Stops background reading; the iterator yields nothing more."""
        self._closed = True
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an infinite (repeat=True) data iterator has no length")
        return self.num_batches

    def get_state(self) -> dict[str, Any]:
        """The position of the next batch, with the settings it is valid for."""
        return {"meta": dict(self.meta), "pipeline": self._iterator.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores a state from ``get_state()`` (also after a JSON round trip)."""
        if not isinstance(state, dict) or "pipeline" not in state:
            raise ValueError(f"state must be a dict from get_state(), received {state!r}")
        saved = state.get("meta", {})
        diffs = {k: (v, saved.get(k)) for k, v in self.meta.items() if saved.get(k) != v}
        if diffs:
            detail = ", ".join(
                f"{k}: expected {a!r}, received {b!r}" for k, (a, b) in diffs.items()
            )
            raise ValueError(f"state was saved by a different data pipeline ({detail})")
        if self._closed:
            self._iterator, self._closed = iter(self._dataset), False
        self._iterator.set_state(state["pipeline"])


def read_options(cfg: Any) -> grain.ReadOptions:
    """Thread prefetch settings: ``cfg.num_threads`` (default 2), ``cfg.prefetch`` (default 4)."""

    return grain.ReadOptions(
        num_threads=int(cfg.get("num_threads")),
        prefetch_buffer_size=int(cfg.get("prefetch")),
    )


def example_order(
    num_examples: int,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool,
    shard_index: int,
    shard_count: int,
    repeat: bool,
    what: str = "split",
) -> tuple[grain.MapDataset, int | None]:
    """This process's sequence of example indices, and the number of batches when finite.

    With ``repeat`` the sequence is infinite and every epoch is reshuffled (grain's per-epoch
    seeds). Without it, the single pass is padded with ``PAD_INDEX`` to the same number of
    batches on every process: ``ceil(num_examples / (batch_size * shard_count))``.
    """
    if num_examples <= 0:
        raise ValueError(f"{what} is empty: expected at least one example, received 0")
    if repeat:
        ds = grain.MapDataset.range(num_examples)
        if shuffle:
            ds = ds.shuffle(seed=seed % 2**32)
        return ds.repeat(None)[shard_index::shard_count], None
    num_batches = math.ceil(num_examples / (batch_size * shard_count))
    positions = np.arange(num_batches * batch_size, dtype=np.int64) * shard_count + shard_index
    order = np.arange(num_examples)
    if shuffle:
        order = np.random.default_rng(seed).permutation(num_examples)
    indices = np.where(positions < num_examples, order[np.minimum(positions, num_examples - 1)], -1)
    return grain.MapDataset.source(indices.tolist()), num_batches


def padded_length(lengths: Sequence[int], *, max_len: int, pad_multiple: int, fixed: bool) -> int:
    """Time length of a padded batch: ``max_len`` when fixed, else the longest rounded up."""
    if fixed:
        return max_len
    longest = max(max(lengths, default=1), 1)
    return min(max_len, math.ceil(longest / pad_multiple) * pad_multiple)


def pad_stack(seqs: Sequence[np.ndarray | None], length: int, dtype: Any) -> np.ndarray:
    """Stacks sequences (first axis = time) into ``[B, length, ...]``, zero-padded at the end.

    ``None`` entries (padding examples) become all-zero rows.
    """
    template = next(s for s in seqs if s is not None) if any(s is not None for s in seqs) else None
    tail = () if template is None else np.asarray(template).shape[1:]
    out = np.zeros((len(seqs), length, *tail), dtype=dtype)
    for row, seq in enumerate(seqs):
        if seq is not None:
            out[row, : len(seq)] = seq
    return out


class BucketBatches(grain.MapDataset):
    """Batches of similar length: sort each window of ``window`` batches, then shuffle batches.

    Element ``k`` is the list of examples of batch ``k``: the parent's examples are taken in
    windows of ``batch_size * window``, sorted by ``length_fn`` (stable, so the result does not
    depend on thread timing), cut into batches, and the batches of a window are put in a
    seeded random order so that training does not see lengths in a sweep. Bucketing by length
    to limit padding follows the common practice of tf.data's ``bucket_by_sequence_length``;
    windows keep it a pure function of the position, so it stays resumable.
    """

    def __init__(
        self,
        parent: grain.MapDataset,
        *,
        batch_size: int,
        window: int,
        seed: int,
        length_fn: Callable[[Any], int],
    ):
        super().__init__(parent)
        self._batch_size = batch_size
        self._window = window
        self._seed = seed
        self._length_fn = length_fn
        self._lock = threading.Lock()
        self._cache: dict[int, list[list[Any]]] = {}

    def __len__(self) -> int:
        return len(self._parent) // self._batch_size

    def __str__(self) -> str:
        return f"BucketBatches(batch_size={self._batch_size}, window={self._window})"

    def _window_batches(self, w: int) -> list[list[Any]]:
        with self._lock:
            if w in self._cache:
                return self._cache[w]
        size = self._batch_size * self._window
        start = w * size
        stop = min(start + size, len(self) * self._batch_size)
        elements = [self._parent[i] for i in range(start, stop)]
        order = sorted(range(len(elements)), key=lambda i: (self._length_fn(elements[i]), i))
        b = self._batch_size
        batches = [
            [elements[i] for i in order[k * b : (k + 1) * b]] for k in range(len(order) // b)
        ]
        perm = np.random.default_rng([self._seed, w]).permutation(len(batches))
        batches = [batches[p] for p in perm]
        with self._lock:
            if len(self._cache) > 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[w] = batches
        return batches

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        w, j = divmod(index, self._window)
        return self._window_batches(w)[j]


def batched(
    examples: grain.MapDataset,
    *,
    batch_size: int,
    collate: Callable[[list[Any]], dict[str, np.ndarray]],
    bucket_window: int = 0,
    seed: int = 0,
    length_fn: Callable[[Any], int] | None = None,
) -> grain.MapDataset:
    """Batches ``examples`` (optionally bucketed by length) and collates each batch."""
    if bucket_window > 1:
        if length_fn is None:
            raise ValueError("bucketing needs a length_fn")
        ds = BucketBatches(
            examples, batch_size=batch_size, window=bucket_window, seed=seed, length_fn=length_fn
        )
        return ds.map(collate)
    return examples.batch(batch_size, drop_remainder=True, batch_fn=collate)


def sequence_batches(
    size: int,
    fetch: Callable[[int], Any],
    collate: Callable[..., dict[str, np.ndarray]],
    cfg: Any,
    info: Any,
    *,
    split: str,
    what: str,
    **shard: Any,
) -> tuple[grain.IterDataset, int]:
    """One split of ``size`` sequences of varying length as batches: ``fetch(index)`` is
    ``(sequence [T, F], label)`` (None for a padding index), windows of ``cfg.bucket_window``
    batches (None: 8 where lengths vary, else 0) are sorted by length, and ``collate(examples,
    max_len=, pad_multiple=, fixed=, features=)`` pads each batch. Returns the iterable
    dataset and the number of batches of one pass."""
    order, num_batches = example_order(size, shuffle=cfg.shuffled(split), what=what, **shard)
    variable = info["variable_length"]
    window = cfg.bucket_window
    window = (8 if variable else 0) if window is None else int(window)
    ds = batched(
        order.map(fetch),
        batch_size=shard["batch_size"],
        collate=functools.partial(
            collate,
            max_len=int(info["seq_len"]),
            pad_multiple=cfg.get("pad_multiple"),
            fixed=cfg.get("pad_to") == "max" or not variable,
            features=int(info["input_features"]),
        ),
        bucket_window=window,
        seed=shard["seed"],
        length_fn=lambda e: 0 if e is None else len(e[0]),
    )
    return ds.to_iter_dataset(read_options(cfg)), num_batches
