"""``spoken_digits`` (task ``"ctc"``): digit strings spoken by espeak-ng, as log-mel frames.

Each utterance reads 1 to 7 random digits ("3 1 4") in one of espeak-ng's English accents
and voice variants, at a random rate and pitch, between random stretches of silence; noise
is added at a random SNR (see ``rnnlab.data.spoken_digits_audio`` for the recipe and the
speaker lists: the accents and variants of train, validation and test are disjoint). librosa
turns the audio into 40 log-mel bands every 10 ms; at load time each utterance's bands are
normalised to zero mean and unit variance (``normalize``).

Batches: ``inputs [B, T, num_mels]`` float32, ``targets [B, L]`` int32 labels ``digit + 1``
(0 is the CTC blank, 0-padded), ``input_lengths``, ``target_lengths``, ``weights``.

Options: ``synthesis_seed`` (0), ``train_examples`` (2000), ``validation_examples`` (200),
``test_examples`` (400), ``noisy_train`` (True: train and validation are read with their
noise; False reads them clean, the test split is noisy either way: every utterance is stored
with and without its noise), ``num_mels`` (40), ``normalize`` (True), ``pad_multiple``
(frames, 64: few distinct shapes, few compilations), ``pad_to`` (``"batch"`` or ``"max"``),
``bucket_window`` (8), ``shuffle`` (train only), plus ``data_dir`` / ``tfds_data_dir``. The
set is synthesised the first time it is read (about 0.1 s per utterance on one core) and
kept under ``<data_dir>/tfds/rnnlab_spoken_digits/<config>``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import numpy as np

from rnnlab.data import builders
from rnnlab.data import spoken_digits_audio as audio
from rnnlab.data.config import cache_key, check_split, tfds_dir
from rnnlab.data.options import COUNT, POSITIVE, Common, Pipeline, opt, resolve
from rnnlab.data.registry import Dataset, register
from rnnlab.data.speech import utterance_batches

VOCAB = ("<blank>", *"0123456789")
_SIZES = {"train": 2000, "validation": 200, "test": 400}
_FIELDS = ("synthesis_seed", "num_mels", *(f"{s}_examples" for s in _SIZES))


def builder_config(cfg: Any) -> audio.SpokenDigitsConfig:
    """The builder config (seed, split sizes, noise, bands) that the options ask for."""
    cfg = resolve(cfg, SpokenDigits, "spoken_digits")  # a bare dict or cache key too
    sizes = tuple(cfg.get(f"{s}_examples") for s in _SIZES)
    return audio.SpokenDigitsConfig(
        seed=cfg.get("synthesis_seed"), sizes=sizes, num_mels=cfg.get("num_mels")
    )


def _builder(cfg: Any):
    return builders.make(audio.SpokenDigits, tfds_dir(cfg), builder_config(cfg))


@functools.lru_cache(maxsize=8)
def _lengths(key: str) -> dict[str, tuple[int, int]]:
    """Longest frames and labels per split (read once per prepared copy)."""
    cfg = json.loads(key)
    builder = _builder(cfg)
    out = {}
    for split in audio.SPLITS:
        src = builder.as_data_source(split=split)
        examples = [src[i] for i in range(len(src))]
        out[split] = (
            max(len(e["features"]) for e in examples),
            max(len(e["labels"]) for e in examples),
            len(examples),
        )
    return out


def _info(cfg: Any) -> dict[str, Any]:
    c = builder_config(cfg)
    lengths = _lengths(cache_key(cfg, _FIELDS))
    frames = max(v[0] for v in lengths.values())
    return {
        "task": "ctc",
        "input_features": c.num_mels,
        "num_labels": len(VOCAB),
        "vocab_size": len(VOCAB),
        "vocab": list(VOCAB),
        "blank_id": 0,
        "seq_len": frames,
        "max_frames": frames,
        "max_label": audio.MAX_DIGITS,
        "sample_rate": audio.SAMPLE_RATE,
        "hop_length": audio.HOP,
        "num_examples": {s: v[2] for s, v in lengths.items()},
        "builder_config": c.name,
    }


def _load(cfg, info, *, split, **shard):
    src = _builder(cfg).as_data_source(split=check_split(split))
    normalize = bool(cfg.get("normalize"))
    key = "features" if split == "test" or cfg.get("noisy_train") else "clean_features"

    def fetch(index):
        if index < 0:
            return None
        example = src[int(index)]
        feats = np.asarray(example[key], np.float32)
        if normalize:
            feats = (feats - feats.mean(axis=0)) / np.maximum(feats.std(axis=0), 1e-5)
        return feats, np.asarray(example["labels"], np.int32)

    what = f"spoken_digits split {split!r}"
    return utterance_batches(cfg, info, len(src), fetch, split, what, shard)


@dataclasses.dataclass(frozen=True)
class SpokenDigits(Common, Pipeline):
    synthesis_seed: int = opt(0, "seed of the synthesis: digits, speakers, rates, noise", COUNT)
    train_examples: int = opt(_SIZES["train"], "utterances in the train split", POSITIVE)
    validation_examples: int = opt(
        _SIZES["validation"], "utterances in the validation split", POSITIVE
    )
    test_examples: int = opt(_SIZES["test"], "utterances in the test split", POSITIVE)
    noisy_train: bool = opt(True, "train and validate on the noisy audio (False: the clean copy)")
    num_mels: int = opt(audio.NUM_MELS, "log-mel bands per 10 ms frame", POSITIVE)
    normalize: bool = opt(True, "per-utterance mean and variance normalisation")
    pad_multiple: int = opt(64, "padded frame counts are a multiple of this")
    pad_to: str = opt("batch", '"batch" (the longest in the batch) or "max" (of the split)')
    bucket_window: int = opt(8, "batches sorted by length together")


register(
    Dataset(
        "spoken_digits",
        "ctc",
        _info,
        _load,
        "digit strings spoken by espeak-ng with noise, log-mel frames (librosa)",
        options=SpokenDigits,
    )
)
