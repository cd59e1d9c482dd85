"""Speech recognition data: TFDS ``librispeech`` as log-mel filterbank frames and characters.

The ``librispeech`` dataset (task ``"ctc"``) reads a prepared TFDS speech dataset (``speech``:
int16 audio at 16 kHz, ``text``: the transcript; Panayotov et al. 2015) as a random-access
source (see ``rnnlab.data.catalog``) and turns each utterance into

- ``inputs [B, T, num_mels]`` float32: log-mel filterbank energies of 25 ms Hann windows every
  10 ms (power spectrum, HTK mel scale, log with a floor), by default normalised to zero mean
  and unit variance per band over each utterance;
- ``targets [B, L]`` int32 character labels, 0-padded: 0 is the CTC blank, then space,
  apostrophe and ``a``..``z`` (:data:`VOCAB`); transcripts are lower-cased, characters outside
  the vocabulary dropped and runs of white space collapsed;
- ``input_lengths [B]``, ``target_lengths [B]``, ``weights [B]`` (1 for a scored utterance).

Utterances with more than ``max_frames`` frames or ``max_label`` characters are dropped, never
cut (cutting the audio would leave labels without sound, and the reverse): they become rows of
weight 0, as do the padding rows of a finite pass, so every process still reads the same
number of batches and a pass stays resumable. The defaults keep every LibriSpeech utterance.

Options: ``tfds_name`` (default ``"librispeech"``), ``train_split`` / ``validation_split`` /
``test_split`` (TFDS split strings, default ``"train_clean100"``, ``"dev_clean"``,
``"test_clean"``), ``speech_key`` / ``text_key`` (``"speech"``, ``"text"``), ``sample_rate``
(16000), ``num_mels`` (80), ``window_ms`` (25), ``hop_ms`` (10), ``log_floor`` (1e-10),
``normalize`` (True), ``max_frames`` (3600, i.e. 36 s), ``max_label`` (800), ``pad_multiple``
(frames, 64), ``pad_to`` (``"batch"`` or ``"max"``), ``bucket_window`` (8), ``shuffle``
(train only), ``download`` (False: the corpus is about 60 GB), plus ``data_dir`` /
``tfds_data_dir``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import threading
import types
from typing import Any

import numpy as np

from rnnlab.data import catalog, pipeline
from rnnlab.data.config import check_split
from rnnlab.data.options import PAD_TO, POSITIVE, Catalog, Check, Common, Pipeline, opt
from rnnlab.data.registry import Dataset, register
from rnnlab.data.vocab import as_text

VOCAB = ("<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz")
BLANK_ID = 0
_CHAR_IDS = {c: i for i, c in enumerate(VOCAB) if i != BLANK_ID}
_LABEL_MULTIPLE = 16
_SPLIT_DEFAULTS = {"train": "train_clean100", "validation": "dev_clean", "test": "test_clean"}


# -- features -------------------------------------------------------------------------------
def hz_to_mel(hz: Any) -> np.ndarray:
    """HTK mel scale: ``m = 2595 log10(1 + f / 700)`` (Young et al., the HTK Book)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel: Any) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`: ``f = 700 (10^(m / 2595) - 1)``."""
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    fft_length: int, sample_rate: int, num_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """Triangular filters ``[fft_length // 2 + 1, num_mels]`` on the one-sided FFT bins.

    Band ``k`` rises linearly (in Hz) from edge ``f_k`` to 1 at ``f_{k+1}`` and falls to 0 at
    ``f_{k+2}``, where the ``num_mels + 2`` edges are equally spaced in HTK mel between
    ``f_min`` and ``f_max`` (default Nyquist); no area normalisation.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(
            f"f_min, f_max must satisfy 0 <= f_min < f_max <= {sample_rate / 2}, received "
            f"{f_min}, {f_max}"
        )
    bins = np.arange(fft_length // 2 + 1) * sample_rate / fft_length
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), num_mels + 2))
    rise = (bins[:, None] - edges[None, :-2]) / (edges[1:-1] - edges[:-2])
    fall = (edges[None, 2:] - bins[:, None]) / (edges[2:] - edges[1:-1])
    return np.maximum(0.0, np.minimum(rise, fall))


def num_frames(num_samples: int, window_length: int, hop_length: int) -> int:
    """Frames of a signal: ``1 + (N - window) // hop``, at least 1 (a signal shorter than a
    window is zero-padded to one frame); a final partial window is left out."""
    return 1 + max(num_samples - window_length, 0) // hop_length


def frame_signal(signal: np.ndarray, window_length: int, hop_length: int) -> np.ndarray:
    """``[num_frames, window_length]`` windows of a 1-D signal, ``hop_length`` apart."""
    x = np.asarray(signal)
    if len(x) < window_length:
        x = np.pad(x, (0, window_length - len(x)))
    count = num_frames(len(x), window_length, hop_length)
    return np.lib.stride_tricks.sliding_window_view(x, window_length)[::hop_length][:count]


def hann_window(length: int) -> np.ndarray:
    """Periodic Hann window ``w[n] = 0.5 - 0.5 cos(2 pi n / N)``, ``n = 0..N-1``."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def power_spectrum(frames: np.ndarray, fft_length: int) -> np.ndarray:
    """``|rfft(frames, fft_length)|^2``: ``[T, fft_length // 2 + 1]`` (frames zero-padded)."""
    spec = np.fft.rfft(frames, n=fft_length, axis=-1)
    return spec.real**2 + spec.imag**2


def to_float(audio: Any) -> np.ndarray:
    """Samples as float64; integer audio is scaled to [-1, 1) (divided by ``2^(bits-1)``)."""
    x = np.asarray(audio)
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float64) / float(2 ** (8 * x.dtype.itemsize - 1))
    return x.astype(np.float64)


@functools.lru_cache(maxsize=8)
def _analysis(sample_rate: int, num_mels: int, window_ms: float, hop_ms: float):
    window = round(sample_rate * window_ms / 1000)
    hop = round(sample_rate * hop_ms / 1000)
    fft = 1 << (window - 1).bit_length()
    return window, hop, fft, hann_window(window), mel_filterbank(fft, sample_rate, num_mels)


def log_mel(
    audio: np.ndarray,
    *,
    sample_rate: int = 16000,
    num_mels: int = 80,
    window_ms: float = 25.0,
    hop_ms: float = 10.0,
    log_floor: float = 1e-10,
    normalize: bool = False,
) -> np.ndarray:
    """Log-mel filterbank features ``[T, num_mels]`` float32 of a mono signal.

    Integer audio is scaled to [-1, 1) (:func:`to_float`). Each window of
    ``window_ms`` (every ``hop_ms``) is Hann-weighted, zero-padded to the next power of two,
    and its power spectrum ``|X_k|^2`` is summed through :func:`mel_filterbank`:
    ``log(max(fbank, log_floor))``. ``normalize`` subtracts each band's mean over the frames
    and divides by its standard deviation (per-utterance normalisation).
    """
    x = to_float(audio)
    if x.ndim != 1:
        raise ValueError(f"audio must be a 1-D signal, received shape {x.shape}")
    window, hop, fft, hann, fbank = _analysis(sample_rate, num_mels, window_ms, hop_ms)
    power = power_spectrum(frame_signal(x, window, hop) * hann, fft)
    feats = np.log(np.maximum(power @ fbank, log_floor))
    if normalize:
        feats = (feats - feats.mean(axis=0)) / np.maximum(feats.std(axis=0), 1e-5)
    return feats.astype(np.float32)


# -- labels ---------------------------------------------------------------------------------
def encode_text(text: str) -> np.ndarray:
    """Transcript -> label ids ``[U]`` int32: lower-cased, characters outside :data:`VOCAB`
    dropped, white space collapsed to single spaces and trimmed."""
    words = "".join(c if c in _CHAR_IDS else " " if c.isspace() else "" for c in text.lower())
    return np.array([_CHAR_IDS[c] for c in " ".join(words.split())], np.int32)


def decode_labels(ids: Any) -> str:
    """Label ids -> text (blanks and padding, id 0, are skipped)."""
    return "".join(VOCAB[int(i)] for i in ids if int(i) != BLANK_ID)


# -- the TFDS source ------------------------------------------------------------------------
_TF_LOCK = threading.Lock()


@contextlib.contextmanager
def _audio_feature_without_tensorflow():
    """Lets TFDS build an ``Audio`` feature when TensorFlow is not installed.

    tensorflow-datasets 4.9 calls ``tf.dtypes.as_dtype`` in the constructor of its audio
    decoder, also for eagerly decoded audio, which array_record sources return as plain NumPy
    arrays; a NumPy stand-in answers that one call while the builder is made. The
    ``lazy_decode`` builder config (FLAC bytes) still needs TensorFlow.
    """
    if importlib.util.find_spec("tensorflow") is not None:
        yield
        return
    from tensorflow_datasets.core.features import audio_feature

    with _TF_LOCK:
        saved = audio_feature.tf
        audio_feature.tf = types.SimpleNamespace(dtypes=types.SimpleNamespace(as_dtype=np.dtype))
        try:
            yield
        finally:
            audio_feature.tf = saved


def _source(cfg: Any, split: str):
    name = str(cfg.get("tfds_name"))
    spec = str(cfg.get(f"{split}_split"))
    # A missing corpus is an error with instructions, not a 60 GB download, unless asked for.
    opts = {**dict(cfg.items()), "download": bool(cfg.get("download"))}
    with _audio_feature_without_tensorflow():
        return catalog.data_source(opts, name, spec)


def _info(cfg: Any) -> dict[str, Any]:
    rate = cfg.get("sample_rate")
    mels = cfg.get("num_mels")
    window_ms, hop_ms = float(cfg.get("window_ms")), float(cfg.get("hop_ms"))
    if not 0 < hop_ms <= window_ms:
        raise ValueError(
            f"hop_ms and window_ms must satisfy 0 < hop_ms <= window_ms, received {hop_ms} "
            f"and {window_ms}"
        )
    window, hop, fft, _, _ = _analysis(rate, mels, window_ms, hop_ms)
    max_frames = cfg.get("max_frames")
    return {
        "task": "ctc",
        "input_features": mels,
        "num_labels": len(VOCAB),
        "vocab_size": len(VOCAB),
        "vocab": list(VOCAB),
        "blank_id": BLANK_ID,
        "seq_len": max_frames,
        "max_frames": max_frames,
        "max_label": cfg.get("max_label"),
        "sample_rate": rate,
        "window_length": window,
        "hop_length": hop,
        "fft_length": fft,
        "splits": {s: str(cfg.get(f"{s}_split")) for s in _SPLIT_DEFAULTS},
    }


def collate(examples, *, max_frames: int, max_label: int, pad_multiple: int, fixed: bool):
    """Pads ``(features [T, F], labels [U])`` pairs (None = a row of weight 0) into a batch."""
    frames = [0 if e is None else len(e[0]) for e in examples]
    labels = [0 if e is None else len(e[1]) for e in examples]
    T = pipeline.padded_length(frames, max_len=max_frames, pad_multiple=pad_multiple, fixed=fixed)
    L = pipeline.padded_length(labels, max_len=max_label, pad_multiple=_LABEL_MULTIPLE, fixed=fixed)
    width = next((e[0].shape[1] for e in examples if e is not None), 1)
    inputs = np.zeros((len(examples), T, width), np.float32)
    targets = np.zeros((len(examples), L), np.int32)
    for b, e in enumerate(examples):
        if e is not None:
            inputs[b, : len(e[0])] = e[0]
            targets[b, : len(e[1])] = e[1]
    return {
        "inputs": inputs,
        "input_lengths": np.maximum(np.array(frames), 1).astype(np.int32),
        "targets": targets,
        "target_lengths": np.array(labels, np.int32),
        "weights": np.array([e is not None for e in examples], np.float32),
    }


def _load(cfg, info, *, split, **shard):
    source = _source(cfg, check_split(split))
    speech_key = str(cfg.get("speech_key"))
    text_key = str(cfg.get("text_key"))
    declared = _declared_rate(source, speech_key)
    if declared and declared != info["sample_rate"]:
        raise ValueError(
            f"sample_rate must match the dataset's {speech_key!r} feature ({declared} Hz), "
            f"received {info['sample_rate']}"
        )
    features = functools.partial(
        log_mel,
        sample_rate=info["sample_rate"],
        num_mels=info["input_features"],
        window_ms=float(cfg.get("window_ms")),
        hop_ms=float(cfg.get("hop_ms")),
        log_floor=float(cfg.get("log_floor")),
        normalize=bool(cfg.get("normalize")),
    )

    def fetch(index):
        if index < 0:
            return None
        example = source[int(index)]
        audio = to_float(example[speech_key])
        if audio.ndim > 1:  # [samples, channels]: the recogniser hears the channels' mean
            audio = audio.mean(axis=1)
        labels = encode_text(as_text(example[text_key]))
        count = num_frames(len(audio), info["window_length"], info["hop_length"])
        if count > info["max_frames"] or len(labels) > info["max_label"]:
            return None
        return features(audio), labels

    return utterance_batches(
        cfg, info, len(source), fetch, split, f"{info['splits'][split]!r} ({split})", shard
    )


def utterance_batches(cfg, info, size: int, fetch, split: str, what: str, shard: dict):
    """``(iterator, num_batches)`` of padded, length-bucketed utterance batches.

    ``fetch(index) -> (features [frames, F], labels) | None`` reads example ``index`` (None
    drops it); the options ``shuffle``, ``pad_multiple``, ``pad_to`` and ``bucket_window``
    and ``info["max_frames"]``/``info["max_label"]`` shape the batches.
    """
    order, num_batches = pipeline.example_order(
        size, shuffle=cfg.shuffled(split), what=what, **shard
    )
    ds = pipeline.batched(
        order.map(fetch),
        batch_size=shard["batch_size"],
        collate=functools.partial(
            collate,
            max_frames=info["max_frames"],
            max_label=info["max_label"],
            pad_multiple=cfg.get("pad_multiple"),
            fixed=cfg.get("pad_to") == "max",
        ),
        bucket_window=int(cfg.get("bucket_window")),
        seed=shard["seed"],
        length_fn=lambda e: 0 if e is None else len(e[0]),
    )
    return ds.to_iter_dataset(pipeline.read_options(cfg)), num_batches


def _declared_rate(source: Any, key: str) -> int | None:
    with contextlib.suppress(AttributeError, KeyError, TypeError):
        rate = source.dataset_info.features[key].sample_rate
        return int(rate) if rate else None
    return None


@dataclasses.dataclass(frozen=True)
class Librispeech(Common, Pipeline, Catalog):
    download: bool = opt(False, "download and prepare librispeech (about 60 GB) if missing")
    tfds_name: str = opt("librispeech", "TFDS speech dataset")
    train_split: str = opt(_SPLIT_DEFAULTS["train"], "TFDS split read as train")
    validation_split: str = opt(_SPLIT_DEFAULTS["validation"], "TFDS split read as validation")
    test_split: str = opt(_SPLIT_DEFAULTS["test"], "TFDS split read as test")
    speech_key: str = opt("speech", "feature holding the audio")
    text_key: str = opt("text", "feature holding the transcript")
    sample_rate: int = opt(16000, "audio sample rate in Hz", POSITIVE)
    num_mels: int = opt(80, "mel bands per frame", POSITIVE)
    window_ms: float = opt(25.0, "analysis window in milliseconds")
    hop_ms: float = opt(10.0, "hop between frames in milliseconds")
    log_floor: float = opt(
        1e-10, "floor added before the log (> 0)", Check(lambda v: v > 0, "a number > 0")
    )
    normalize: bool = opt(True, "per-utterance mean and variance normalisation")
    max_frames: int = opt(3600, "longest utterance kept, in frames", POSITIVE)
    max_label: int = opt(800, "longest transcript kept, in characters", POSITIVE)
    bucket_window: int = opt(8, "batches sorted by length together")
    pad_to: str = opt("batch", '"batch" (the longest in the batch) or "max"', PAD_TO)
    pad_multiple: int = opt(64, "padded frame counts are a multiple of this", POSITIVE)


register(
    Dataset("librispeech", "ctc", _info, _load, "TFDS librispeech as log-mel frames", Librispeech)
)
