"""A user's own speech for CTC: ``audio_folder``, a folder of audio files and a transcript
manifest, through the spoken-digits log-mel front end.

``path`` is the training manifest: ``.tsv`` lines ``file<TAB>transcript`` or ``.jsonl``
objects ``{"audio": file, "text": transcript}``, file names relative to the manifest's
folder. ``validation_manifest`` and ``test_manifest`` name the other splits, otherwise
carved from the training manifest (``validation_fraction``, ``test_fraction``,
``split_seed``). Audio is any format ``soundfile`` reads (WAV, FLAC, OGG); several channels
are averaged and the signal resampled to 16 kHz, then turned into ``num_mels`` log-mel
bands every 10 ms (:func:`rnnlab.data.spoken_digits_audio.log_mel`, the front end of
``spoken_digits``) and, with ``normalize``, to zero mean and unit variance per utterance.

The labels are the characters of the training transcripts (``lowercase`` folds case); id 0
is the CTC blank. A transcript character unseen in training, an unreadable audio file or
an empty transcript is an error naming the manifest, its line and the file.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import numpy as np

from rnnlab.data import own, spoken_digits_audio
from rnnlab.data.config import check_split, positive_int
from rnnlab.data.options import COMMON, PIPELINE, Option
from rnnlab.data.registry import Dataset, register
from rnnlab.data.speech import utterance_batches

BLANK = "<blank>"


def read_manifest(path: str) -> list[tuple[str, str, int]]:
    """``[(audio file, transcript, line), ...]`` of a ``.tsv`` or ``.jsonl`` manifest."""
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such manifest file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".tsv", ".jsonl"):
        raise ValueError(f"{path}: unknown manifest format {ext!r}: expected '.tsv' or '.jsonl'")
    folder = os.path.dirname(os.path.abspath(path))
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:  # as sentence_pairs says it (rnnlab.data.pairs)
        raise ValueError(f"{path}: must be UTF-8 text ({e})") from e
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if ext == ".tsv":
            fields = line.split("\t")
            if len(fields) != 2:
                raise ValueError(
                    f"{path}: line {number}: expected 2 tab-separated fields (audio file, "
                    f"transcript), found {len(fields)}"
                )
        else:
            try:
                record = json.loads(line)
                fields = [record["audio"], record["text"]]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(
                    f"{path}: line {number}: expected a JSON object with 'audio' and 'text' ({e})"
                ) from e
        if not str(fields[1]).strip():
            raise ValueError(f"{path}: line {number}: the transcript of {fields[0]!r} is empty")
        out.append((os.path.join(folder, str(fields[0])), str(fields[1]), number))
    return out


def features(file: str, where: str, num_mels: int, normalize: bool) -> np.ndarray:
    """Log-mel frames ``[T, num_mels]`` of one audio file (16 kHz mono)."""
    import soundfile

    try:
        audio, rate = soundfile.read(file, dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001 - soundfile raises several types
        raise ValueError(f"{where}: audio file {file!r} cannot be read ({e})") from e
    audio = audio.mean(axis=1)
    if not len(audio) or not np.isfinite(audio).all():
        raise ValueError(f"{where}: audio file {file!r} is empty or holds non-finite samples")
    if rate != spoken_digits_audio.SAMPLE_RATE:
        import librosa

        audio = librosa.resample(audio, orig_sr=rate, target_sr=spoken_digits_audio.SAMPLE_RATE)
    if len(audio) < spoken_digits_audio.WINDOW:
        raise ValueError(f"{where}: audio file {file!r} is shorter than one 25 ms frame")
    frames = spoken_digits_audio.log_mel(audio, num_mels)
    if normalize:
        frames = (frames - frames.mean(axis=0)) / np.maximum(frames.std(axis=0), 1e-5)
    return frames.astype(np.float32)


_FIELDS = ("path", "validation_manifest", "test_manifest", "validation_fraction",
           "test_fraction", "split_seed", "num_mels", "normalize", "lowercase")  # fmt: skip


def _key(cfg: Any) -> str:
    return own.files_key(cfg, _FIELDS, ("path", "validation_manifest", "test_manifest"))


@functools.lru_cache(maxsize=2)
def _prepared(key: str) -> tuple[dict[str, Any], dict[str, list]]:
    cfg = json.loads(key)
    if not cfg.get("path"):
        raise ValueError("path must name the training manifest (.tsv or .jsonl)")
    given = {
        s: read_manifest(cfg[f]) if cfg.get(f) else None
        for s, f in (
            ("train", "path"),
            ("validation", "validation_manifest"),
            ("test", "test_manifest"),
        )
    }
    missing = [s for s in ("validation", "test") if given[s] is None]
    splits = {s: given[s] for s in ("validation", "test") if s not in missing}
    if missing:
        index = own.carve(len(given["train"]), cfg, missing)
        splits.update({s: [given["train"][i] for i in rows] for s, rows in index.items()})
    else:
        splits["train"] = given["train"]
    fold = (lambda t: t.lower()) if cfg.get("lowercase", True) else (lambda t: t)
    vocab = [BLANK] + sorted({c for _, text, _ in splits["train"] for c in fold(text)})
    ids = {c: i for i, c in enumerate(vocab)}
    mels, normalize = int(cfg.get("num_mels") or 40), bool(cfg.get("normalize", True))
    out = {}
    for split, rows in splits.items():
        manifest = cfg.get(f"{split}_manifest") or cfg["path"]
        if not rows:
            raise ValueError(f"{manifest}: split {split!r} is empty")
        examples = []
        for file, text, line in rows:
            where = f"{manifest}: line {line}"
            unseen = sorted({c for c in fold(text) if c not in ids})
            if unseen:
                raise ValueError(
                    f"{where}: transcript characters {unseen} are not in the training transcripts"
                )
            labels = np.asarray([ids[c] for c in fold(text)], np.int32)
            examples.append((features(file, where, mels, normalize), labels))
        out[split] = examples
    frames = max(len(f) for v in out.values() for f, _ in v)
    info = {
        "task": "ctc",
        "input_features": mels,
        "num_labels": len(vocab),
        "vocab_size": len(vocab),
        "vocab": vocab,
        "blank_id": 0,
        "seq_len": frames,
        "max_frames": frames,
        "max_label": max(len(y) for v in out.values() for _, y in v),
        "sample_rate": spoken_digits_audio.SAMPLE_RATE,
        "hop_length": spoken_digits_audio.HOP,
        "num_examples": {s: len(v) for s, v in out.items()},
    }
    return info, out


def _info(cfg):
    positive_int(cfg, "num_mels")
    return dict(_prepared(_key(cfg))[0])


def _load(cfg, info, *, split, **shard):
    examples = _prepared(_key(cfg))[1][check_split(split)]

    def fetch(index):
        return None if index < 0 else examples[int(index)]

    what = f"audio_folder split {split!r}"
    return utterance_batches(cfg, info, len(examples), fetch, split, what, shard)


OPTIONS = {
    **COMMON,
    **PIPELINE,
    "path": Option("", "training manifest: .tsv (file<TAB>transcript) or .jsonl"),
    "validation_manifest": Option(None, "validation manifest (None: carved from path)"),
    "test_manifest": Option(None, "test manifest (None: carved from path)"),
    "validation_fraction": Option(0.1, "share of train held out without validation_manifest"),
    "test_fraction": Option(0.1, "share of train held out without test_manifest"),
    "split_seed": Option(0, "seed of the permutation that carves those splits"),
    "num_mels": Option(40, "log-mel bands per 10 ms frame"),
    "normalize": Option(True, "zero mean, unit variance per utterance and band"),
    "lowercase": Option(True, "fold transcripts to lower case"),
    "pad_multiple": Option(64, "padded frame counts are a multiple of this"),
    "pad_to": Option("batch", '"batch" (the longest in the batch) or "max"'),
    "bucket_window": Option(8, "batches sorted by length together"),
}
register(
    Dataset("audio_folder", "ctc", _info, _load, "your own audio files with transcripts", OPTIONS)
)
