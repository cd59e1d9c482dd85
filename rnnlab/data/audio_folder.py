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

import dataclasses
import functools
import json
import os
from typing import Any

import numpy as np

from rnnlab.data import own, spoken_digits_audio
from rnnlab.data.config import check_split
from rnnlab.data.options import POSITIVE, Common, Pipeline, opt
from rnnlab.data.pairs import read_two_fields
from rnnlab.data.registry import Dataset, register
from rnnlab.data.speech import utterance_batches

BLANK = "<blank>"


def read_manifest(path: str) -> list[tuple[str, str, int]]:
    """``[(audio file, transcript, line), ...]`` of a ``.tsv`` or ``.jsonl`` manifest."""
    rows = read_two_fields(path, ("audio", "text"), ("audio file", "transcript"))
    folder = os.path.dirname(os.path.abspath(os.path.expanduser(str(path))))
    return [(os.path.join(folder, file), text, line) for file, text, line in rows]


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
    return dict(_prepared(_key(cfg))[0])


def _load(cfg, info, *, split, **shard):
    examples = _prepared(_key(cfg))[1][check_split(split)]

    def fetch(index):
        return None if index < 0 else examples[int(index)]

    what = f"audio_folder split {split!r}"
    return utterance_batches(cfg, info, len(examples), fetch, split, what, shard)


@dataclasses.dataclass(frozen=True)
class AudioFolder(Common, Pipeline):
    path: str = opt("", "training manifest: .tsv (file<TAB>transcript) or .jsonl")
    validation_manifest: Any = opt(None, "validation manifest (None: carved from path)")
    test_manifest: Any = opt(None, "test manifest (None: carved from path)")
    validation_fraction: float = opt(0.1, "share of train held out without validation_manifest")
    test_fraction: float = opt(0.1, "share of train held out without test_manifest")
    split_seed: int = opt(0, "seed of the permutation that carves those splits")
    num_mels: int = opt(40, "log-mel bands per 10 ms frame", POSITIVE)
    normalize: bool = opt(True, "zero mean, unit variance per utterance and band")
    lowercase: bool = opt(True, "fold transcripts to lower case")
    pad_multiple: int = opt(64, "padded frame counts are a multiple of this")
    pad_to: str = opt("batch", '"batch" (the longest in the batch) or "max"')
    bucket_window: int = opt(8, "batches sorted by length together")


register(
    Dataset(
        "audio_folder", "ctc", _info, _load, "your own audio files with transcripts", AudioFolder
    )
)
