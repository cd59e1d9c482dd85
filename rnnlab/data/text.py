"""Text datasets for language modelling: austen, text_dir, tiny_shakespeare (characters),
lm1b (words, packed sentences).

Options: ``seq_len`` (default 128), ``split_fractions`` (austen, text_dir; default
(0.9, 0.05, 0.05) per document), ``novels`` ("all" or a list, austen), ``path`` and
``pattern`` (text_dir, default ``"**/*.txt"``), ``vocab_size`` (lm1b, default 32768),
``vocab_examples`` (lm1b, training sentences counted for the vocabulary, default 300000).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import grain
import numpy as np

from rnnlab.data import builders, catalog, lm, pipeline
from rnnlab.data.config import (
    CATALOG_FIELDS,
    cache_key,
    check_split,
    data_dir,
    option,
    positive_int,
    split_fractions,
    tfds_dir,
)
from rnnlab.data.registry import Dataset, register
from rnnlab.data.vocab import (
    BOS_ID,
    EOS_ID,
    CharEncoder,
    WordEncoder,
    as_text,
    char_vocab,
    word_vocab,
)

DEFAULT_SEQ_LEN = 128


# The options that the memoised reads below depend on.
_FIELDS = (
    *CATALOG_FIELDS,
    "split_fractions",
    "novels",
    "path",
    "pattern",
    "vocab_size",
    "vocab_examples",
)


def _fraction_name(fractions) -> str:
    return "-".join(f"{100 * f:g}".replace(".", "p") for f in fractions)


# ------------------------------------------------------------------ character corpora
def _corpus_builder(cfg: Any):
    fractions = split_fractions(cfg, (0.9, 0.05, 0.05))
    if option(cfg, "name") == "austen":
        raw = data_dir(cfg) / "austen"
        if not all((raw / f"{n}.txt").exists() for n in builders.AUSTEN_NOVELS):
            from rnnlab.data import fetch

            fetch.fetch_austen(data_dir(cfg))
        documents, name = builders.austen_documents(raw), "austen"
    else:
        path = option(cfg, "path")
        if not path:
            raise ValueError("text_dir needs path: expected a directory of text files, got None")
        pattern = str(option(cfg, "pattern", "**/*.txt"))
        documents, digest = builders.directory_documents(Path(path).expanduser(), pattern)
        name = f"dir-{digest}"
    config = builders.TextCorpusConfig(
        name=f"{name}-{_fraction_name(fractions)}", documents=documents, fractions=fractions
    )
    return builders.make(builders.TextCorpus, tfds_dir(cfg), config)


def _novels(cfg: Any) -> list[str] | None:
    novels = option(cfg, "novels", "all")
    if novels == "all":
        return None
    novels = [novels] if isinstance(novels, str) else list(novels)
    bad = [n for n in novels if n not in builders.AUSTEN_NOVELS]
    if bad or not novels:
        raise ValueError(
            f"novels must be 'all' or a list from {list(builders.AUSTEN_NOVELS)}, received {novels}"
        )
    return novels


def _char_corpus(key: str) -> dict[str, Any]:
    """Vocabulary and per-split documents of a character corpus.

    Catalog data is not memoised: the same config may be read under
    ``tfds.testing.mock_data`` and for real in one process.
    """
    cfg = json.loads(key)
    if cfg["name"] != "tiny_shakespeare":
        return _builder_corpus(key)
    docs = {
        split: [as_text(ex["text"]) for ex in catalog.data_source(cfg, cfg["name"], split)]
        for split in ("train", "validation", "test")
    }
    return {"vocab": char_vocab(docs["train"]), "documents": docs}


@functools.lru_cache(maxsize=32)
def _builder_corpus(key: str) -> dict[str, Any]:
    cfg = json.loads(key)
    builder = _corpus_builder(cfg)
    keep = _novels(cfg) if cfg["name"] == "austen" else None
    docs = {}
    for split in ("train", "validation", "test"):
        src = builder.as_data_source(split=split)
        chunks: dict[str, list[tuple[int, str]]] = {}
        for ex in (src[i] for i in range(len(src))):
            chunks.setdefault(as_text(ex["document"]), []).append(
                (int(ex["chunk"]), as_text(ex["text"]))
            )
        order = [d for d in builder.info.metadata["documents"] if d in chunks]
        docs[split] = [
            "".join(t for _, t in sorted(chunks[d])) for d in order if keep is None or d in keep
        ]
    return {"vocab": list(builder.info.metadata["vocab"]), "documents": docs}


def _char_info(cfg: Any) -> dict[str, Any]:
    corpus = _char_corpus(cache_key(cfg, _FIELDS))
    vocab = corpus["vocab"]
    return {
        "task": "lm",
        "level": "char",
        "vocab": vocab,
        "vocab_size": len(vocab),
        "pad_id": 0,
        "seq_len": positive_int(cfg, "seq_len", DEFAULT_SEQ_LEN),
        "num_tokens": {s: sum(len(d) for d in docs) for s, docs in corpus["documents"].items()},
        "num_documents": {s: len(docs) for s, docs in corpus["documents"].items()},
    }


def _char_stream(key: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    if json.loads(key)["name"] == "tiny_shakespeare":
        return _encode_stream(_char_corpus(key), split)
    return _builder_stream(key, split)


@functools.lru_cache(maxsize=32)
def _builder_stream(key: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    return _encode_stream(_char_corpus(key), split)


def _encode_stream(corpus: dict[str, Any], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of a split's documents laid end to end, and the document starts."""
    encoder = CharEncoder(corpus["vocab"])
    parts = [encoder.encode(d) for d in corpus["documents"][split]]
    tokens = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    starts = np.zeros(len(tokens), bool)
    offset = 0
    for part in parts:
        if len(part):
            starts[offset] = True
        offset += len(part)
    return tokens, starts


def _char_load(cfg, info, *, split, **shard):
    tokens, starts = _char_stream(cache_key(cfg, _FIELDS), check_split(split))
    ds, num_batches = lm.stream_batches(
        tokens,
        starts,
        seq_len=info["seq_len"],
        **shard,
        what=f"{cfg['name']} split {split!r}",
    )
    return ds.to_iter_dataset(pipeline.read_options(cfg)), num_batches


# ------------------------------------------------------------------------ lm1b (words)
def _lm1b_source(cfg: Any, split: str):
    return catalog.data_source(cfg, "lm1b", catalog.split_spec(cfg, split, has_validation=False))


def _lm1b_vocab(key: str) -> list[str]:
    cfg = json.loads(key)
    src = _lm1b_source(cfg, "train")
    count = min(len(src), int(option(cfg, "vocab_examples", 300_000)))
    size = positive_int(cfg, "vocab_size", 32768)
    head = [as_text(src[i]["text"]) for i in range(min(count, 3))]
    fingerprint = hashlib.sha1(json.dumps([len(src), count, size, head]).encode()).hexdigest()
    cache = data_dir(cfg) / "vocab" / f"lm1b-{fingerprint[:16]}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    vocab = word_vocab((as_text(src[i]["text"]) for i in range(count)), max_size=size)
    if count >= 10_000:  # worth keeping; small (test) sources are rebuilt in milliseconds
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(vocab))
    return vocab


def _lm1b_info(cfg: Any) -> dict[str, Any]:
    vocab = _lm1b_vocab(cache_key(cfg, _FIELDS))
    return {
        "task": "lm",
        "level": "word",
        "packed": True,
        "vocab": vocab,
        "vocab_size": len(vocab),
        "pad_id": 0,
        "bos_id": BOS_ID,
        "eos_id": EOS_ID,
        "seq_len": positive_int(cfg, "seq_len", DEFAULT_SEQ_LEN),
    }


def _lm1b_load(cfg, info, *, split, batch_size, seed, shard_index, shard_count, repeat):
    src = _lm1b_source(cfg, check_split(split))
    encoder = WordEncoder(info["vocab"])
    T = info["seq_len"]

    def segment(example) -> tuple[np.ndarray, np.ndarray]:
        ids = encoder.encode(as_text(example["text"]))
        return np.concatenate([[BOS_ID], ids]).astype(np.int32), np.append(ids, EOS_ID).astype(
            np.int32
        )

    if repeat:
        order, _ = pipeline.example_order(
            len(src),
            batch_size=batch_size,
            seed=seed,
            shuffle=True,
            shard_index=shard_index,
            shard_count=shard_count,
            repeat=True,
            what=f"lm1b split {split!r}",
        )
        segments = order.map(lambda i: segment(src[int(i)]))
        limit = num_batches = None
    else:
        if len(src) == 0:
            raise ValueError(f"lm1b split {split!r} is empty: expected at least one example")
        lengths = [len(segment(src[i])[0]) for i in range(len(src))]
        num_batches = max(
            1,
            max(
                -(-lm.count_packed_rows(lengths[h::shard_count], T) // batch_size)
                for h in range(shard_count)
            ),
        )
        mine = list(range(shard_index, len(src), shard_count))
        segments = grain.MapDataset.source(mine).map(lambda i: segment(src[int(i)]))
        limit = len(mine)
    ds = lm.PackedBatches(
        segments, seq_len=T, batch_size=batch_size, limit=limit, num_batches=num_batches
    )
    prefetch = int(option(cfg, "prefetch", 4))
    return grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=prefetch), (
        num_batches
    )


register(Dataset("austen", "lm", _char_info, _char_load, "Jane Austen's six novels, characters"))
register(Dataset("text_dir", "lm", _char_info, _char_load, "a directory of text files"))
register(Dataset("tiny_shakespeare", "lm", _char_info, _char_load, "TFDS tiny_shakespeare"))
register(Dataset("lm1b", "lm", _lm1b_info, _lm1b_load, "TFDS lm1b, packed word sentences"))
