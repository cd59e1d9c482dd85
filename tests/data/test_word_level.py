"""Word-level reading of local corpora (``level="word"``): the vocabulary and the token
stream against a plain Python tokeniser, counter and split written here."""

import collections
import json

import numpy as np
import pytest

import rnnlab.data as data

WORDS = "the a of and to her she was not be it Emma said Mr Knightley's Harriet".split()
MARKS = [".", ",", ";", "!", "?", " -"]


def _document(seed, n_words):
    rng = np.random.default_rng(seed)
    # Zipf-like frequencies, so the vocabulary cut falls between words of different counts.
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    out = []
    for i in range(n_words):
        out.append(WORDS[rng.choice(len(WORDS), p=p / p.sum())])
        if rng.random() < 0.15:
            out[-1] += MARKS[rng.integers(len(MARKS))]
        if i % 11 == 10:
            out[-1] += "\n"
    return " ".join(out).replace("\n ", "\n")


def _naive_words(text):
    """Letters/digits runs are words; any other non-space character is a token alone."""
    tokens, word = [], ""
    for c in text:
        if c.isalnum() or c == "_":
            word += c
            continue
        if word:
            tokens.append(word)
            word = ""
        if not c.isspace():
            tokens.append(c)
    if word:
        tokens.append(word)
    return tokens


def _naive_splits(texts, fractions=(0.9, 0.05, 0.05)):
    """Each document cut at round(len * 0.9) and round(len * 0.95) characters."""
    out = {"train": [], "validation": [], "test": []}
    for t in texts:
        a, b = round(len(t) * fractions[0]), round(len(t) * (fractions[0] + fractions[1]))
        out["train"].append(t[:a])
        out["validation"].append(t[a:b])
        out["test"].append(t[b:])
    return out


@pytest.fixture
def corpus(tmp_path):
    texts = {"a.txt": _document(0, 700), "b.txt": _document(1, 500)}
    folder = tmp_path / "texts"
    folder.mkdir()
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    return tmp_path, folder, [texts[n] for n in sorted(texts)]


def test_word_vocabulary_and_stream_match_a_naive_reference(corpus):
    root, folder, texts = corpus
    max_vocab = 12
    cfg = {
        "name": "text_dir",
        "path": str(folder),
        "data_dir": str(root),
        "level": "word",
        "max_vocab": max_vocab,
        "seq_len": 8,
    }
    spec = data.info(cfg)
    splits = _naive_splits(texts)
    counts = collections.Counter(w for t in splits["train"] for w in _naive_words(t))
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    vocab = ["<pad>", "<unk>", "<s>", "</s>"] + ranked[: max_vocab - 4]
    assert spec["level"] == "word" and spec["vocab"] == vocab and spec["vocab_size"] == 12
    assert len(ranked) > max_vocab  # some words do become <unk>
    saved = list((root / "tfds").glob("**/word_vocab-12-all.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text()) == vocab

    index = {w: i for i, w in enumerate(vocab)}
    for split in ("train", "validation"):
        docs = [[index.get(w, 1) for w in _naive_words(t)] for t in splits[split]]
        assert spec["num_tokens"][split] == sum(len(d) for d in docs)
        targets = []
        for batch in data.load(cfg, split=split, batch_size=1, seed=0, repeat=False):
            keep = batch["weights"][0] > 0
            targets.extend(batch["targets"][0][keep].tolist())
        # Documents end to end; the target crossing into the next document is not scored.
        assert targets == [i for d in docs for i in d[1:]], split
    assert 1 in docs[0]  # the validation stream holds <unk>


def test_bad_word_level_options_name_the_option(corpus):
    root, folder, _ = corpus
    base = {"name": "text_dir", "path": str(folder), "data_dir": str(root)}
    with pytest.raises(ValueError, match="level"):
        data.info({**base, "level": "token"})
    with pytest.raises(ValueError, match="max_vocab"):
        data.info({**base, "level": "word", "max_vocab": 4})
