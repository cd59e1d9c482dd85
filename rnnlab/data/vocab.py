"""Tokenisers and vocabularies (built from the training split only).

Character vocabularies reserve id 0 for padding and 1 for characters unseen in training.
Word vocabularies add 2 = ``<s>`` (start of sentence) and 3 = ``</s>`` (end of sentence).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Sequence

import numpy as np

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
CHAR_RESERVED = (PAD, UNK)
WORD_RESERVED = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

# Words and single punctuation marks; public so an exported translator's signature names it.
WORD_PATTERN = r"\w+|[^\w\s]"
_WORD = re.compile(WORD_PATTERN, re.UNICODE)


def char_vocab(texts: Iterable[str]) -> list[str]:
    """``[<pad>, <unk>]`` followed by the sorted distinct characters of ``texts``."""
    chars: set[str] = set()
    for text in texts:
        chars.update(text)
    return list(CHAR_RESERVED) + sorted(chars)


def words(text: str) -> list[str]:
    """Splits text into words and single punctuation marks (``"Hi, you."`` -> 4 tokens)."""
    return _WORD.findall(text)


def word_vocab(texts: Iterable[str], *, max_size: int, min_count: int = 1) -> list[str]:
    """``WORD_RESERVED`` then the most frequent words (ties broken alphabetically)."""
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        counts.update(words(text))
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return list(WORD_RESERVED) + ranked[: max(0, max_size - len(WORD_RESERVED))]


class CharEncoder:
    """Maps text to int32 ids with a code-point lookup table (fast on megabytes of text)."""

    def __init__(self, vocab: Sequence[str]):
        self.vocab = list(vocab)
        chars = [c for c in self.vocab[len(CHAR_RESERVED) :]]
        size = max((ord(c) for c in chars), default=0) + 1
        self._table = np.full(size, UNK_ID, dtype=np.int32)
        for i, c in enumerate(chars, len(CHAR_RESERVED)):
            self._table[ord(c)] = i

    def encode(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.full(codes.shape, UNK_ID, dtype=np.int32)
        known = codes < len(self._table)
        ids[known] = self._table[codes[known]]
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.vocab[i] if i >= len(CHAR_RESERVED) else "" for i in ids)


class WordEncoder:
    """Maps text to word ids; unknown words become ``<unk>``."""

    def __init__(self, vocab: Sequence[str]):
        self.vocab = list(vocab)
        self._index = {w: i for i, w in enumerate(self.vocab)}

    def encode(self, text: str) -> np.ndarray:
        get = self._index.get
        return np.array([get(w, UNK_ID) for w in words(text)], dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.vocab[i] for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID))


def as_text(value) -> str:
    """TFDS text features: ``bytes`` from array_record files, ``str`` under mock data."""
    return value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else str(value)
