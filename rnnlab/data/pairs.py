"""A user's own sentence pairs for translation: ``sentence_pairs`` from TSV or JSONL files.

Files: ``.tsv`` (one pair a line, ``source<TAB>target``) or ``.jsonl`` (one JSON object a
line with ``source_key`` and ``target_key``, default ``"source"`` and ``"target"``).
``path`` is the training file; ``validation_path`` and ``test_path`` name the other
splits, otherwise carved from the training file by a permutation drawn with
``split_seed`` (``validation_fraction``, ``test_fraction``; 10 % each).

The vocabularies are built on the training split only, one per side, by ``tokenizer``:

- ``"char"``: the characters of the training sentences;
- ``"word"``: the ``vocab_size`` most frequent words and punctuation marks
  (:func:`rnnlab.data.vocab.words`);
- ``"sentencepiece"``: the pieces of a trained SentencePiece model (BPE or unigram; Kudo
  and Richardson 2018) the user names with ``tokenizer_model`` (a ``.model`` file), shared
  by both sides.

Ids follow :mod:`rnnlab.data.vocab` (0 padding, 1 unknown, 2 ``<s>``, 3 ``</s>``); batches
are those of the built-in translation sets (:func:`rnnlab.data.seq2seq.collate`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import numpy as np

from rnnlab.data import own, seq2seq
from rnnlab.data.config import check_split
from rnnlab.data.options import POSITIVE, Common, Pipeline, one_of, opt
from rnnlab.data.registry import Dataset, register
from rnnlab.data.vocab import EOS_ID, UNK_ID, WORD_RESERVED, CharEncoder, WordEncoder, word_vocab

TOKENIZERS = ("char", "word", "sentencepiece")


def read_two_fields(path: str, keys: tuple[str, str], names: tuple[str, str]):
    """``[(first, second, line number), ...]`` of a ``.tsv`` (two tab-separated fields a
    line) or ``.jsonl`` file (an object a line, the fields under ``keys``); blank lines are
    skipped. A bad line is a ValueError naming the file, the line and, by ``names``, the
    field."""
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".tsv", ".jsonl"):
        raise ValueError(f"{path}: unknown format {ext!r}: expected '.tsv' or '.jsonl'")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: must be UTF-8 text ({e})") from e
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if ext == ".tsv":
            fields = line.split("\t")
            if len(fields) != 2:
                raise ValueError(
                    f"{path}: line {number}: expected 2 tab-separated fields ({names[0]}, "
                    f"{names[1]}), found {len(fields)}"
                )
        else:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {number}: not JSON ({e.msg})") from e
            if not isinstance(record, dict) or keys[0] not in record or keys[1] not in record:
                raise ValueError(
                    f"{path}: line {number}: expected an object with keys {keys[0]!r} and "
                    f"{keys[1]!r}"
                )
            fields = [record[keys[0]], record[keys[1]]]
        for name, value in zip(names, fields, strict=True):
            if not (isinstance(value, str) and value.strip()):
                raise ValueError(f"{path}: line {number}: the {name} is empty or not text")
        out.append((fields[0], fields[1], number))
    return out


def read_pairs(path: str, source_key: str = "source", target_key: str = "target"):
    """``[(source, target), ...]`` of a ``.tsv`` or ``.jsonl`` file (:func:`read_two_fields`)."""
    rows = read_two_fields(path, (source_key, target_key), ("source", "target"))
    return [(a, b) for a, b, _ in rows]


class _Pieces:
    """A SentencePiece model as an encoder: its ids shifted past rnnlab's reserved four."""

    def __init__(self, model_file: str):
        try:
            import sentencepiece
        except ImportError as e:
            raise ValueError("tokenizer 'sentencepiece' needs: pip install sentencepiece") from e
        if not os.path.isfile(os.path.expanduser(str(model_file))):
            raise ValueError(f"tokenizer_model {model_file!r}: no such SentencePiece model file")
        self._sp = sentencepiece.SentencePieceProcessor(model_file=os.path.expanduser(model_file))
        pieces = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        self.vocab = list(WORD_RESERVED) + pieces

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._sp.encode(text), np.int32) + len(WORD_RESERVED)

    def decode(self, ids) -> str:
        ids = [int(i) - len(WORD_RESERVED) for i in ids if int(i) >= len(WORD_RESERVED)]
        return self._sp.decode(ids)


def encoders(info: dict[str, Any]) -> tuple[Any, Any]:
    """The (source, target) encoders of a ``sentence_pairs`` description."""
    kind = info.get("tokenizer", "word")
    if kind == "sentencepiece":
        pieces = _Pieces(info["tokenizer_model"])
        return pieces, pieces
    if kind == "char":
        return _Chars(info["source_vocab"]), _Chars(info["target_vocab"])
    return WordEncoder(info["source_vocab"]), WordEncoder(info["target_vocab"])


class _Chars(CharEncoder):
    """Characters with the four reserved word ids (the decoder needs ``<s>`` and ``</s>``)."""

    def __init__(self, vocab):
        self.vocab = list(vocab)
        self._index = {c: i for i, c in enumerate(self.vocab) if i >= len(WORD_RESERVED)}

    def encode(self, text: str) -> np.ndarray:
        return np.asarray([self._index.get(c, UNK_ID) for c in text], np.int32)

    def decode(self, ids) -> str:
        return "".join(self.vocab[i] for i in ids if int(i) >= len(WORD_RESERVED))


def _vocab(kind: str, texts: list[str], size: int) -> list[str]:
    if kind == "char":
        return list(WORD_RESERVED) + sorted({c for t in texts for c in t})
    return word_vocab(texts, max_size=size)


_FIELDS = ("path", "validation_path", "test_path", "validation_fraction", "test_fraction",
           "split_seed", "tokenizer", "tokenizer_model", "vocab_size", "source_key",
           "target_key", "max_len")  # fmt: skip


def _stamp(cfg: Any) -> str:
    return own.files_key(cfg, _FIELDS, ("path", "validation_path", "test_path", "tokenizer_model"))


@functools.lru_cache(maxsize=4)
def _prepared(key: str) -> tuple[dict[str, Any], dict[str, list]]:
    cfg = json.loads(key)
    if not cfg.get("path"):
        raise ValueError("path must name the training file of sentence pairs (.tsv or .jsonl)")
    keys = (cfg.get("source_key") or "source", cfg.get("target_key") or "target")
    given = {
        s: read_pairs(cfg[f], *keys) if cfg.get(f) else None
        for s, f in (("train", "path"), ("validation", "validation_path"), ("test", "test_path"))
    }
    splits = _carve(cfg, given)
    for split, pairs in splits.items():
        if not pairs:
            where = cfg.get(f"{split}_path") or cfg["path"]
            raise ValueError(f"{where}: split {split!r} is empty")
    kind = cfg.get("tokenizer")
    size = cfg.get("vocab_size")
    info: dict[str, Any] = {"tokenizer": kind}
    if kind == "sentencepiece":
        if not cfg.get("tokenizer_model"):
            raise ValueError("tokenizer_model must name a SentencePiece .model file")
        info["tokenizer_model"] = os.path.abspath(os.path.expanduser(cfg["tokenizer_model"]))
        vocab = _Pieces(info["tokenizer_model"]).vocab
        info["source_vocab"] = info["target_vocab"] = vocab
    else:
        train = splits["train"]
        info["source_vocab"] = _vocab(kind, [s for s, _ in train], size)
        info["target_vocab"] = _vocab(kind, [t for _, t in train], size)
    enc_src, enc_tgt = encoders(info)
    ids = {
        s: [
            (enc_src.encode(a), np.append(enc_tgt.encode(b), EOS_ID).astype(np.int32)) for a, b in p
        ]
        for s, p in splits.items()
    }
    longest_src = max(len(a) for p in ids.values() for a, _ in p)
    longest_tgt = max(len(b) for p in ids.values() for _, b in p)
    max_len = cfg.get("max_len")
    S = min(longest_src, max_len) if max_len else longest_src
    T = min(longest_tgt, max_len) if max_len else longest_tgt
    # Longer sentences are cut, the target keeping its </s> (as the built-in wmt set).
    ids = {s: [(a[:S], np.append(b[: T - 1], EOS_ID)) if len(b) > T else (a[:S], b)
               for a, b in p] for s, p in ids.items()}  # fmt: skip
    info = seq2seq.s2s_info(info.pop("source_vocab"), info.pop("target_vocab"), S, T) | info
    info["num_examples"] = {s: len(p) for s, p in ids.items()}
    return info, ids


def _carve(cfg: dict[str, Any], given: dict[str, Any]) -> dict[str, list]:
    missing = [s for s in ("validation", "test") if given[s] is None]
    if not missing:
        return dict(given)
    index = own.carve(len(given["train"]), cfg, missing)
    out = {s: given[s] for s in ("validation", "test") if s not in missing}
    out.update({s: [given["train"][i] for i in rows] for s, rows in index.items()})
    return out


def _info(cfg):
    return dict(_prepared(_stamp(cfg))[0])


def _load(cfg, info, *, split, **shard):
    pairs = _prepared(_stamp(cfg))[1][check_split(split)]

    def fetch(index):
        return None if index < 0 else pairs[int(index)]

    what = f"sentence_pairs split {split!r}"
    return seq2seq.pair_batches(cfg, info, len(pairs), fetch, split, what, shard)


@dataclasses.dataclass(frozen=True)
class SentencePairs(Common, Pipeline, own.Carved):
    path: str = opt("", "training pairs: .tsv (source<TAB>target) or .jsonl")
    validation_path: Any = opt(None, "validation pairs (None: carved from path)")
    test_path: Any = opt(None, "test pairs (None: carved from path)")
    source_key: str = opt("source", "JSONL key of the source sentence")
    target_key: str = opt("target", "JSONL key of the target sentence")
    tokenizer: str = opt("word", '"char", "word" or "sentencepiece"', one_of(*TOKENIZERS))
    tokenizer_model: Any = opt(None, "SentencePiece .model file (tokenizer sentencepiece)")
    vocab_size: int = opt(8000, "largest word vocabulary per side, reserved ids included", POSITIVE)
    max_len: Any = opt(None, "longest sentence kept, in tokens (None: the longest)")
    bucket_window: int = opt(8, "batches sorted by length together")
    pad_to: str = opt("batch", '"batch" (the longest in the batch) or "max"')
    pad_multiple: int = opt(8, "padded lengths are a multiple of this")


register(
    Dataset(
        "sentence_pairs",
        "seq2seq",
        _info,
        _load,
        "your own sentence pairs (TSV, JSONL)",
        SentencePairs,
    )
)
