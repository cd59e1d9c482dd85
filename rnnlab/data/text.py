"""Text datasets for language modelling: austen, text_dir (characters, or words with
``level="word"``), tiny_shakespeare (characters), lm1b (words, packed sentences).

Options: ``seq_len`` (default 128), ``split_fractions`` (austen, text_dir; default
(0.9, 0.05, 0.05) per document), ``novels`` ("all" or a list, austen), ``path`` and
``pattern`` (text_dir, default ``"**/*.txt"``), ``level`` ("char" or "word"; austen,
text_dir), ``max_vocab`` (word level, default 10000), ``vocab_size`` (lm1b, default 32768),
``vocab_examples`` (lm1b, training sentences counted for the vocabulary, default 300000).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import grain
import numpy as np
from etils import epath

from rnnlab.data import builders, catalog, lm, pipeline
from rnnlab.data.config import (
    CATALOG_FIELDS,
    cache_key,
    check_split,
    data_dir,
    tfds_dir,
)
from rnnlab.data.options import POSITIVE, SHARES, Catalog, Check, Common, Threads, one_of, opt
from rnnlab.data.registry import Dataset, register
from rnnlab.data.vocab import (
    BOS_ID,
    EOS_ID,
    WORD_RESERVED,
    CharEncoder,
    WordEncoder,
    as_text,
    char_vocab,
    word_vocab,
)

DEFAULT_SEQ_LEN = 128
DEFAULT_MAX_VOCAB = 10_000  # the size of the Penn Treebank's vocabulary
LEVELS = ("char", "word")


# The options that the memoised reads below depend on.
_FIELDS = (
    *CATALOG_FIELDS,
    "split_fractions",
    "novels",
    "path",
    "pattern",
    "vocab_size",
    "vocab_examples",
    "level",
    "max_vocab",
)


def _fraction_name(fractions) -> str:
    return "-".join(f"{100 * f:g}".replace(".", "p") for f in fractions)


# ------------------------------------------------------------------ character corpora
def _corpus_builder(cfg: Any):
    fractions = tuple(cfg.get("split_fractions"))
    if cfg["name"] == "austen":
        root = data_dir(cfg)
        read = builders.austen_documents(root / "austen")

        def documents():
            # Only a builder that is not prepared yet reads the novels: with prepared TFDS data
            # elsewhere ($TFDS_DATA_DIR, a bucket), nothing is fetched into the data directory.
            from rnnlab.data import fetch

            fetch.fetch_austen(root)
            return read()

        name = "austen"
    else:
        path = cfg.get("path")
        if not path:
            raise ValueError("text_dir needs path: expected a directory of text files, got None")
        pattern = str(cfg.get("pattern"))
        documents, digest = builders.directory_documents(Path(path).expanduser(), pattern)
        name = f"dir-{digest}"
    config = builders.TextCorpusConfig(
        name=f"{name}-{_fraction_name(fractions)}", documents=documents, fractions=fractions
    )
    sources = getattr(documents, "files", ())  # the user's files (text_dir)
    return builders.make(builders.TextCorpus, tfds_dir(cfg), config, sources=sources)


def _novels(cfg: Any) -> list[str] | None:
    novels = cfg.get("novels")
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
    metadata = builder.info.metadata or {}
    docs = {}
    for split in ("train", "validation", "test"):
        src = builder.as_data_source(split=split)
        chunks: dict[str, list[tuple[int, str]]] = {}
        for ex in (src[i] for i in range(len(src))):
            chunks.setdefault(as_text(ex["document"]), []).append(
                (int(ex["chunk"]), as_text(ex["text"]))
            )
        # Under tfds.testing.mock_data the builder has no metadata: names sorted instead.
        order = [d for d in metadata.get("documents", sorted(chunks)) if d in chunks]
        docs[split] = [
            "".join(t for _, t in sorted(chunks[d])) for d in order if keep is None or d in keep
        ]
    return {
        "vocab": list(metadata.get("vocab") or char_vocab(docs["train"])),
        "documents": docs,
        "data_dir": str(builder.data_dir),
    }


def _level(cfg: Any) -> str:
    level = cfg.get("level")
    if level == "word" and cfg["name"] not in ("austen", "text_dir"):
        raise ValueError(
            f"level 'word' is read from austen and text_dir, received name {cfg['name']!r}"
        )
    return level


def _stream_info(cfg: Any, level: str, vocab: list[str], num_tokens, num_documents):
    return {
        "task": "lm",
        "level": level,
        "vocab": vocab,
        "vocab_size": len(vocab),
        "pad_id": 0,
        "seq_len": cfg.get("seq_len"),
        "num_tokens": num_tokens,
        "num_documents": num_documents,
    }


def _char_info(cfg: Any) -> dict[str, Any]:
    if _level(cfg) == "word":
        return _word_info(cfg)
    corpus = _char_corpus(cache_key(cfg, _FIELDS))
    docs = corpus["documents"]
    return _stream_info(
        cfg,
        "char",
        corpus["vocab"],
        {s: sum(len(d) for d in split_docs) for s, split_docs in docs.items()},
        {s: len(split_docs) for s, split_docs in docs.items()},
    )


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
    return _end_to_end([encoder.encode(d) for d in corpus["documents"][split]])


def _end_to_end(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The documents' ids laid end to end, and True at each document's first token."""
    tokens = np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)
    starts = np.zeros(len(tokens), bool)
    offset = 0
    for part in parts:
        if len(part):
            starts[offset] = True
        offset += len(part)
    return tokens, starts


def _char_load(cfg, info, *, split, **shard):
    key = cache_key(cfg, _FIELDS)
    if _level(cfg) == "word":
        tokens, starts = _word_corpus(key)["streams"][check_split(split)]
    else:
        tokens, starts = _char_stream(key, check_split(split))
    ds, num_batches = lm.stream_batches(
        tokens,
        starts,
        seq_len=info["seq_len"],
        **shard,
        what=f"{cfg['name']} split {split!r}",
    )
    return ds.to_iter_dataset(pipeline.read_options(cfg)), num_batches


# ------------------------------------------------------- word level (austen, text_dir)
@functools.lru_cache(maxsize=32)
def _word_corpus(key: str) -> dict[str, Any]:
    """Vocabulary and per-split ``(tokens, starts)`` of a corpus read as words.

    Words are runs of letters and digits, and every other non-space character is a token of
    its own (:func:`rnnlab.data.vocab.words`); case is kept, line breaks are not tokens. The
    vocabulary is ``<pad> <unk> <s> </s>`` then the ``max_vocab - 4`` most frequent words of
    the training split (ties alphabetical); other words read as ``<unk>``. It is written
    next to the prepared corpus (``word_vocab-<max_vocab>-<novels>.json``) and read back
    from there.
    """
    cfg = json.loads(key)
    size = cfg.get("max_vocab")
    if size <= len(WORD_RESERVED):
        raise ValueError(
            f"max_vocab must be more than the {len(WORD_RESERVED)} reserved tokens, received {size}"
        )
    corpus = _builder_corpus(key)
    novels = _novels(cfg) if cfg["name"] == "austen" else None
    tag = "all" if novels is None else hashlib.sha1("+".join(novels).encode()).hexdigest()[:8]
    saved = epath.Path(corpus["data_dir"]) / f"word_vocab-{size}-{tag}.json"
    if saved.exists():
        vocab = json.loads(saved.read_text())
    else:
        vocab = word_vocab(corpus["documents"]["train"], max_size=size)
        # Only into a prepared dataset (not the metadata folder tfds's mock data points to).
        if (saved.parent / "dataset_info.json").exists():
            saved.write_text(json.dumps(vocab))
    encoder = WordEncoder(vocab)
    streams = {
        split: _end_to_end([encoder.encode(d) for d in docs])
        for split, docs in corpus["documents"].items()
    }
    counts = {split: len(docs) for split, docs in corpus["documents"].items()}
    return {"vocab": vocab, "streams": streams, "num_documents": counts}


def _word_info(cfg: Any) -> dict[str, Any]:
    corpus = _word_corpus(cache_key(cfg, _FIELDS))
    num_tokens = {s: len(t) for s, (t, _) in corpus["streams"].items()}
    return _stream_info(cfg, "word", corpus["vocab"], num_tokens, corpus["num_documents"])


# ------------------------------------------------------------------------ lm1b (words)
def _lm1b_source(cfg: Any, split: str):
    return catalog.data_source(cfg, "lm1b", catalog.split_spec(cfg, split, has_validation=False))


def _lm1b_vocab(key: str) -> list[str]:
    cfg = json.loads(key)
    src = _lm1b_source(cfg, "train")
    count = min(len(src), int(cfg.get("vocab_examples")))
    size = cfg.get("vocab_size")
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
        "seq_len": cfg.get("seq_len"),
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
    prefetch = int(cfg.get("prefetch"))
    return grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=prefetch), (
        num_batches
    )


@dataclasses.dataclass(frozen=True)
class Stream(Common, Threads):
    seq_len: int = opt(
        DEFAULT_SEQ_LEN, "tokens per row of a batch (truncated BPTT length)", POSITIVE
    )


LEVEL_HELP = '"char", or "word" (words and punctuation, a vocabulary)'


@dataclasses.dataclass(frozen=True)
class Corpus(Stream):
    level: str = opt("char", LEVEL_HELP, one_of(*LEVELS))
    max_vocab: int = opt(
        DEFAULT_MAX_VOCAB, "word level: vocabulary size, reserved tokens included", POSITIVE
    )
    split_fractions: tuple = opt(
        (0.9, 0.05, 0.05), "train, validation, test shares of the text", SHARES
    )


@dataclasses.dataclass(frozen=True)
class Austen(Corpus):
    novels: Any = opt(
        "all",
        '"all" or a list of novel names (builders.AUSTEN_NOVELS)',
        Check(lambda v: v == "all" or isinstance(v, (list, tuple)), '"all" or a list of names'),
    )


@dataclasses.dataclass(frozen=True)
class TextDir(Corpus):
    path: Any = opt(None, "the directory of text files (required)")
    pattern: str = opt("**/*.txt", "glob of the files read under path")


@dataclasses.dataclass(frozen=True)
class TinyShakespeare(Stream, Catalog):
    level: str = opt("char", LEVEL_HELP, one_of(*LEVELS))


@dataclasses.dataclass(frozen=True)
class Lm1b(Stream, Catalog):
    vocab_examples: int = opt(300_000, "training sentences counted for the word vocabulary")
    vocab_size: int = opt(32768, "word vocabulary size, reserved tokens included", POSITIVE)


for _name, _options, _what in (
    ("austen", Austen, "Jane Austen's six novels, characters"),
    ("text_dir", TextDir, "a directory of text files"),
    ("tiny_shakespeare", TinyShakespeare, "TFDS tiny_shakespeare"),
):
    register(Dataset(_name, "lm", _char_info, _char_load, _what, options=_options))
register(Dataset("lm1b", "lm", _lm1b_info, _lm1b_load, "TFDS lm1b, packed word sentences", Lm1b))
