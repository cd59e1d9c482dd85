"""Sequence to sequence: the synthetic ``reverse`` task and a TFDS ``wmt`` translation pair.

Token ids follow ``rnnlab.data.vocab``: 0 = padding, 1 = unknown, 2 = ``<s>`` (the decoder's
start token, which a model prepends itself: targets are BOS-less), 3 = ``</s>`` (ends every
target). Batches: ``inputs [B, S]``, ``input_lengths [B]``, ``targets [B, T]``,
``target_lengths [B]`` (counting ``</s>``), ``weights [B, T]``. Padding rows of a finite pass
have weight 0 and lengths 1.

reverse options: ``vocab_size`` (default 32, ids 4.. are symbols), ``seq_len`` (longest
source, default 16), ``min_len`` (default 1). wmt options: ``tfds_name`` (default
``"wmt14_translate/de-en"``), ``source_lang``/``target_lang`` (default the builder's
supervised keys), ``vocab_size`` (per language, default 32000), ``vocab_examples``
(default 200000), ``max_len`` (default 64; longer sentences are truncated, the target
keeping its ``</s>``), ``bucket_window`` (default 8), ``pad_multiple`` (8), ``pad_to``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any

import numpy as np

from rnnlab.data import catalog, pipeline, synthetic
from rnnlab.data.config import (
    CATALOG_FIELDS,
    cache_key,
    check_split,
    data_dir,
)
from rnnlab.data.options import PAD_TO, POSITIVE, Catalog, Common, Pipeline, opt
from rnnlab.data.registry import Dataset, register
from rnnlab.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID, WORD_RESERVED, as_text, word_vocab

RESERVED = len(WORD_RESERVED)


def collate(examples, *, max_source: int, max_target: int, pad_multiple: int, fixed: bool):
    """Pads ``(source_ids, target_ids)`` pairs (None = padding row) into a batch."""
    src_len = [0 if e is None else len(e[0]) for e in examples]
    tgt_len = [0 if e is None else len(e[1]) for e in examples]
    S = pipeline.padded_length(src_len, max_len=max_source, pad_multiple=pad_multiple, fixed=fixed)
    T = pipeline.padded_length(tgt_len, max_len=max_target, pad_multiple=pad_multiple, fixed=fixed)
    inputs = np.zeros((len(examples), S), np.int32)
    targets = np.zeros((len(examples), T), np.int32)
    for b, e in enumerate(examples):
        if e is not None:
            inputs[b, : len(e[0])] = e[0]
            targets[b, : len(e[1])] = e[1]
    tl = np.array(tgt_len)
    return {
        "inputs": inputs,
        "input_lengths": np.maximum(np.array(src_len), 1).astype(np.int32),
        "targets": targets,
        "target_lengths": np.maximum(tl, 1).astype(np.int32),
        "weights": (np.arange(T)[None, :] < tl[:, None]).astype(np.float32),
    }


# ------------------------------------------------------------------------------- reverse
def reverse_example(rng: np.random.Generator, vocab_size: int, min_len: int, max_len: int):
    """A random source of symbols ``RESERVED..vocab_size-1``; target = reversed + ``</s>``."""
    n = int(rng.integers(min_len, max_len + 1))
    source = rng.integers(RESERVED, vocab_size, n).astype(np.int32)
    return source, np.append(source[::-1], EOS_ID).astype(np.int32)


def _reverse_info(cfg):
    V = cfg.get("vocab_size")
    if V <= RESERVED:
        raise ValueError(f"vocab_size must be > {RESERVED} (reserved ids), received {V}")
    S = cfg.get("seq_len")
    min_len = cfg.get("min_len")
    if min_len > S:
        raise ValueError(f"min_len must be <= seq_len ({S}), received {min_len}")
    vocab = list(WORD_RESERVED) + [f"s{i}" for i in range(RESERVED, V)]
    return s2s_info(vocab, vocab, S, S + 1) | {"min_len": min_len}


def s2s_info(source_vocab, target_vocab, max_source, max_target):
    return {
        "task": "seq2seq",
        "source_vocab": source_vocab,
        "target_vocab": target_vocab,
        "source_vocab_size": len(source_vocab),
        "target_vocab_size": len(target_vocab),
        "vocab_size": len(target_vocab),
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "bos_id": BOS_ID,
        "eos_id": EOS_ID,
        "max_source_len": max_source,
        "max_target_len": max_target,
        "seq_len": max_source,
    }


def _reverse_load(cfg, info, *, split, **shard):
    ds, num_batches, stream_seed = synthetic.index_batches(cfg, split=split, **shard)
    V, S = info["vocab_size"], info["max_source_len"]

    def make(indices):
        rows = [
            None
            if int(i) < 0
            else reverse_example(
                synthetic.example_rng(stream_seed, split, int(i)), V, info["min_len"], S
            )
            for i in indices
        ]
        return collate(rows, max_source=S, max_target=S + 1, pad_multiple=1, fixed=True)

    ds = ds.batch(shard["batch_size"], drop_remainder=True, batch_fn=make)
    return ds.to_iter_dataset(pipeline.read_options(cfg)), num_batches


# ----------------------------------------------------------------------------------- wmt
# The options that the memoised reads below depend on.
_FIELDS = (
    *CATALOG_FIELDS,
    "tfds_name",
    "source_lang",
    "target_lang",
    "vocab_size",
    "vocab_examples",
)


def _langs(cfg: Any) -> tuple[str, str]:
    name = str(cfg.get("tfds_name"))
    pair = name.split("/")[-1].split("-")
    src = cfg.get("source_lang") or (pair[0] if len(pair) == 2 else None)
    tgt = cfg.get("target_lang") or (pair[1] if len(pair) == 2 else None)
    if not src or not tgt or src == tgt:
        raise ValueError(
            f"source_lang and target_lang must be two languages of {name!r}, received "
            f"{src!r} and {tgt!r}"
        )
    return src, tgt


def _wmt_source(cfg: Any, split: str):
    name = str(cfg.get("tfds_name"))
    return catalog.data_source(cfg, name, split)


def _wmt_vocabs(key: str) -> tuple[list[str], list[str]]:
    cfg = json.loads(key)
    src_lang, tgt_lang = _langs(cfg)
    source = _wmt_source(cfg, "train")
    count = min(len(source), int(cfg.get("vocab_examples")))
    size = cfg.get("vocab_size")
    head = [str(source[i]) for i in range(min(count, 3))]
    tag = json.dumps([cfg.get("tfds_name") or "", len(source), count, size, head])
    cache = data_dir(cfg) / "vocab" / f"wmt-{hashlib.sha1(tag.encode()).hexdigest()[:16]}.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        return saved[src_lang], saved[tgt_lang]
    examples = [source[i] for i in range(count)]
    vocabs = {
        lang: word_vocab((as_text(e[lang]) for e in examples), max_size=size)
        for lang in (src_lang, tgt_lang)
    }
    if count >= 10_000:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(vocabs))
    return vocabs[src_lang], vocabs[tgt_lang]


def _wmt_info(cfg):
    src_vocab, tgt_vocab = _wmt_vocabs(cache_key(cfg, _FIELDS))
    max_len = cfg.get("max_len")
    langs = _langs(cfg)
    return s2s_info(src_vocab, tgt_vocab, max_len, max_len) | {"languages": list(langs)}


def _wmt_load(cfg, info, *, split, **shard):
    from rnnlab.data.vocab import WordEncoder

    src_lang, tgt_lang = _langs(cfg)
    source = _wmt_source(cfg, check_split(split))
    enc_src, enc_tgt = WordEncoder(info["source_vocab"]), WordEncoder(info["target_vocab"])
    S, T = info["max_source_len"], info["max_target_len"]

    def fetch(index):
        if index < 0:
            return None
        example = source[int(index)]
        ids = enc_src.encode(as_text(example[src_lang]))[:S]
        out = np.append(enc_tgt.encode(as_text(example[tgt_lang]))[: T - 1], EOS_ID)
        return ids.astype(np.int32), out.astype(np.int32)

    what = f"wmt split {split!r}"
    return pair_batches(cfg, info, len(source), fetch, split, what, shard)


def pair_batches(cfg, info, size: int, fetch, split: str, what: str, shard: dict):
    """``(iterator, num_batches)`` of padded, length-bucketed sentence-pair batches.

    ``fetch(index) -> (source ids, target ids) | None`` reads pair ``index``; the options
    ``shuffle``, ``pad_multiple``, ``pad_to`` and ``bucket_window`` and
    ``info["max_source_len"]`` / ``info["max_target_len"]`` shape the batches.
    """
    order, num_batches = pipeline.example_order(
        size, shuffle=cfg.shuffled(split), what=what, **shard
    )
    ds = pipeline.batched(
        order.map(fetch),
        batch_size=shard["batch_size"],
        collate=functools.partial(
            collate,
            max_source=info["max_source_len"],
            max_target=info["max_target_len"],
            pad_multiple=cfg.get("pad_multiple"),
            fixed=cfg.get("pad_to") == "max",
        ),
        bucket_window=int(cfg.get("bucket_window")),
        seed=shard["seed"],
        length_fn=lambda e: 0 if e is None else max(len(e[0]), len(e[1])),
    )
    return ds.to_iter_dataset(pipeline.read_options(cfg)), num_batches


@dataclasses.dataclass(frozen=True)
class Reverse(synthetic.Generated):
    vocab_size: int = opt(32, "tokens, the reserved ones included", POSITIVE)
    seq_len: int = opt(16, "longest sequence", POSITIVE)
    min_len: int = opt(1, "shortest sequence", POSITIVE)


@dataclasses.dataclass(frozen=True)
class Wmt(Common, Pipeline, Catalog):
    tfds_name: str = opt("wmt14_translate/de-en", "TFDS translation dataset")
    source_lang: Any = opt(None, "source language (None: the first of the TFDS pair)")
    target_lang: Any = opt(None, "target language (None: the second of the TFDS pair)")
    vocab_examples: int = opt(200_000, "training pairs counted for the vocabularies")
    vocab_size: int = opt(32000, "size of each vocabulary, reserved tokens included", POSITIVE)
    max_len: int = opt(64, "longest sentence kept, in tokens", POSITIVE)
    bucket_window: int = opt(8, "batches sorted by length together")
    pad_to: str = opt("batch", '"batch" (the longest in the batch) or "max" (max_len)', PAD_TO)
    pad_multiple: int = opt(8, "padded lengths are a multiple of this", POSITIVE)


register(Dataset("reverse", "seq2seq", _reverse_info, _reverse_load, "reverse a sequence", Reverse))
register(Dataset("wmt", "seq2seq", _wmt_info, _wmt_load, "TFDS wmt translation pair", Wmt))
