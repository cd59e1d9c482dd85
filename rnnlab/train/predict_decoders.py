"""Text out of ``rnnlab predict``: translations, transcripts and continuations.

Translation (``sentence_pairs`` runs): the input is a ``.tsv``/``.jsonl`` of pairs (targets
ignored) or a ``.txt`` of one source sentence a line; each source is decoded greedily.
Speech (``audio_folder`` runs): the input is a manifest (``.tsv``/``.jsonl``, transcripts
ignored) or a ``.txt`` of one audio file a line (relative to the list's folder); each file
goes through the run's log-mel front end and is decoded by best path (Graves et al. 2006).
Language models: the input is a ``.txt`` of prompts, one a line; each is continued as
``rnnlab sample`` would (the run's ``sample`` settings). The output (``.tsv``, ``.jsonl``
or ``.txt``) holds one line per input: the input and its text.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
from flax import nnx


def _lines(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: holds no lines")
    return lines


def sources(path: str, data: dict[str, Any]) -> list[str]:
    """The source sentences of a file of pairs or of plain lines."""
    from rnnlab.data.pairs import read_pairs

    if path.endswith(".txt"):
        return _lines(path)
    keys = (data.get("source_key") or "source", data.get("target_key") or "target")
    pairs = read_pairs(path, *keys)
    if not pairs:
        raise ValueError(f"{path}: holds no sentence pairs")
    return [source for source, _ in pairs]


def audio_files(path: str) -> list[tuple[str, str]]:
    """``[(audio file, where), ...]`` of a manifest or a ``.txt`` list of files."""
    from rnnlab.data.audio_folder import read_manifest

    if path.endswith(".txt"):
        folder = os.path.dirname(os.path.abspath(path))
        return [
            (os.path.join(folder, f), f"{path}: line {i}") for i, f in enumerate(_lines(path), 1)
        ]
    rows = read_manifest(path)
    if not rows:
        raise ValueError(f"{path}: holds no audio files")
    return [(file, f"{path}: line {line}") for file, _, line in rows]


def prompts(path: str) -> list[str]:
    """The prompts of a ``.txt`` file, one a line."""
    if not path.endswith(".txt"):
        raise ValueError(f"{path}: a language model's prompts are a .txt file, one a line")
    return _lines(path)


def continue_texts(model, info, config, texts: list[str], *, progress) -> list[str]:
    """Each prompt continued by ``config.sample.length`` tokens (200 when 0) at the run's
    ``sample`` temperature, top-k and top-p (temperature 0: greedy), seed ``config.seed``."""
    from rnnlab.models.language_model import generate
    from rnnlab.tasks.sampling import codec

    s = config.sample
    encode, decode = codec(info)
    out = []
    for i, text in enumerate(texts):
        ids = encode(text)
        if ids.size == 0:
            raise ValueError(f"prompt {i + 1} {text!r} encodes to no tokens")
        tokens = generate(
            model,
            np.asarray(ids, np.int32)[None],
            int(s.length) or 200,
            key=jax.random.fold_in(jax.random.key(int(config.seed)), i),
            temperature=float(s.temperature),
            top_k=int(s.top_k),
            top_p=float(s.top_p),
        )
        out.append(decode(np.asarray(tokens)[0]))
        progress(1)
    return out


def transcribe(model, info, data, files, *, batch_size: int, progress) -> list[str]:
    """Best-path transcripts of ``files`` by a trained CTC recogniser."""
    from rnnlab.data import audio_folder, speech

    mels, normalize = int(info["input_features"]), bool(data.get("normalize", True))
    vocab = info["vocab"]
    out = []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        rows = [(audio_folder.features(f, where, mels, normalize), np.zeros(1, np.int32))
                for f, where in chunk]  # fmt: skip
        rows += [None] * (batch_size - len(chunk))
        longest = max(len(r[0]) for r in rows if r is not None)
        batch = speech.collate(rows, max_frames=longest, max_label=1, pad_multiple=64, fixed=False)
        for labels in model.decode({k: batch[k] for k in ("inputs", "input_lengths")})[
            : len(chunk)
        ]:
            out.append("".join(vocab[i] for i in labels))
        progress(len(chunk))
    return out


def translate(model, info: dict[str, Any], sources: list[str], *, batch_size: int, progress):
    """Greedy translations of ``sources`` (text) by a trained translator."""
    from rnnlab.data import pairs, seq2seq

    enc_src, enc_tgt = pairs.encoders(info)
    S, T = int(info["max_source_len"]), int(info["max_target_len"])
    graphdef, state = nnx.split(model)

    @jax.jit
    def decode(state, batch):
        return nnx.merge(graphdef, state).translate(batch, max_length=T)

    out = []
    for start in range(0, len(sources), batch_size):
        chunk = sources[start : start + batch_size]
        rows = [(enc_src.encode(s)[:S], np.zeros(1, np.int32)) for s in chunk]
        rows += [None] * (batch_size - len(chunk))
        batch = seq2seq.collate(rows, max_source=S, max_target=1, pad_multiple=1, fixed=True)
        tokens, lengths = (np.asarray(a) for a in decode(state, batch))
        for b in range(len(chunk)):
            ids = [int(t) for t in tokens[b, : lengths[b]] if int(t) != info["eos_id"]]
            out.append(enc_tgt.decode(ids))
        progress(len(chunk))
    return out


def text_lines(ext: str, inputs: list[str], texts: list[str], task: str) -> str:
    """The output file's text: one line per input (module docstring)."""
    if ext == ".txt":
        return "".join(t + "\n" for t in texts)
    if ext == ".tsv":
        return "".join(f"{s}\t{t}\n" for s, t in zip(inputs, texts, strict=True))
    keys = {"seq2seq": ("source", "translation"), "ctc": ("audio", "transcript")}.get(
        task, ("prompt", "continuation")
    )
    return "".join(
        json.dumps(dict(zip(keys, pair, strict=True)), ensure_ascii=False) + "\n"
        for pair in zip(inputs, texts, strict=True)
    )
