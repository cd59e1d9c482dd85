"""Spoken digit strings synthesised with espeak-ng, noise at a chosen SNR, and log-mel frames.

Everything an utterance is made of (its digits, speaker, rate, pitch, silence, noise type,
SNR and noise samples) is drawn from ``numpy.random.default_rng([seed, split, index])``,
and espeak-ng's output is a deterministic function of its arguments, so a data set is a
deterministic function of its seed on a given machine (a test checks it byte for byte).

Speakers are espeak-ng voices (an accent: ``gmw/en-US``, ...) combined with a voice variant
(a formant and pitch setting: ``m3``, ``f2``, ``Andy``, ...). The accents *and* the variants
of the three splits are disjoint (:data:`SPEAKERS`), so no test speaker's accent or voice
quality is heard in training.

The TFDS builder (:class:`SpokenDigits`) stores log-mel frames, labels and what made each
utterance; ``rnnlab.data.spoken_digits`` reads it as the ``spoken_digits`` dataset.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

import numpy as np
import tensorflow_datasets as tfds

SAMPLE_RATE = 16000  # espeak-ng speaks at 22,050 Hz; the audio is resampled to 16 kHz
MAX_DIGITS = 7
SPLITS = ("train", "validation", "test")
# (espeak-ng voice files, variants) per split: disjoint accents and disjoint variants.
SPEAKERS = {
    "train": (
        ("gmw/en", "gmw/en-US", "gmw/en-GB-x-rp", "gmw/en-GB-scotland", "gmw/en-GB-x-gbclan"),
        (
            *("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4"),
            *("Andy", "Annie", "david", "edward", "linda", "max"),
        ),
    ),
    "validation": (("gmw/en-GB-x-gbcwmd",), ("m7", "f5", "benjamin", "Alicia")),
    "test": (("gmw/en-029", "gmw/en-US-nyc"), ("m8", "Andrea", "Michael", "steph")),
}
RATES = (130, 210)  # words per minute, uniform (espeak-ng's default is 175)
PITCHES = (25, 75)  # espeak-ng pitch 0..99, uniform (default 50)
SILENCE_S = 0.25  # up to this much silence (then noise) before and after the speech
NOISES = ("white", "pink", "babble")
SNRS_DB = (None, 20.0, 10.0, 5.0, 0.0)  # None: clean; drawn uniformly per utterance
# Babble is digit-free speech: words outside the labels, spoken by the split's own speakers.
BABBLE_WORDS = (
    "the house river morning garden yellow window people water little story table over "
    "under music quickly station letter between summer paper mountain evening orange"
).split()
BABBLE_CLIPS, BABBLE_TALKERS, BABBLE_WORDS_PER_CLIP = 6, 4, 10
NUM_MELS = 40
WINDOW, HOP, FFT = 400, 160, 512  # 25 ms Hann windows every 10 ms at 16 kHz
LOG_FLOOR = 1e-10
TOP_DB = 80.0  # dynamic range kept below the loudest band energy
INSTALL = "apt-get install -y espeak-ng (Debian/Ubuntu), brew install espeak-ng (macOS)"


# -- synthesis ------------------------------------------------------------------------------
def espeak_binary() -> str:
    """The espeak-ng executable; a RuntimeError says how to install it when missing."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise RuntimeError(f"espeak-ng is needed to synthesise spoken_digits: {INSTALL}")
    return path


def parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit mono PCM WAV bytes -> (float64 samples in [-1, 1), sample rate).

    ``espeak-ng --stdout`` cannot seek back to fill in the chunk sizes, so the data chunk is
    read to the end of the stream rather than by its declared size.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng output is not a RIFF/WAVE stream")
    pos, rate = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"fmt ":
            channels = int.from_bytes(data[pos + 10 : pos + 12], "little")
            rate = int.from_bytes(data[pos + 12 : pos + 16], "little")
            bits = int.from_bytes(data[pos + 22 : pos + 24], "little")
            if channels != 1 or bits != 16:
                raise ValueError(f"expected 16-bit mono audio, got {channels} ch x {bits} bit")
        elif chunk == b"data":
            pcm = data[pos + 8 :]
            pcm = pcm[: len(pcm) // 2 * 2]
            if rate is None:
                raise ValueError("WAVE stream has a data chunk before its fmt chunk")
            return np.frombuffer(pcm, "<i2").astype(np.float64) / 32768.0, rate
        pos += 8 + size + (size & 1)
    raise ValueError("WAVE stream has no data chunk")


def synthesise(text: str, voice: str, variant: str, rate: int, pitch: int) -> np.ndarray:
    """espeak-ng reading ``text``, resampled to :data:`SAMPLE_RATE` (float64 samples)."""
    import librosa

    cmd = [espeak_binary(), "-v", f"{voice}+{variant}", "-s", str(rate), "-p", str(pitch)]
    result = subprocess.run([*cmd, "--stdout", text], capture_output=True, check=False)
    if result.returncode != 0 or len(result.stdout) <= 44:
        raise RuntimeError(
            f"espeak-ng failed for voice {voice}+{variant}: {result.stderr.decode().strip()}"
        )
    audio, sr = parse_wav(result.stdout)
    return librosa.resample(audio, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq")


# -- noise ----------------------------------------------------------------------------------
def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise with power spectral density ~ 1/f: white noise shaped by ``1/sqrt(f)`` in the
    frequency domain (the DC bin is zeroed)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    spectrum *= np.where(f > 0, 1.0 / np.sqrt(np.maximum(f, 1.0)), 0.0)
    return np.fft.irfft(spectrum, n)


def babble_pool(seed: int, split: str) -> list[np.ndarray]:
    """:data:`BABBLE_CLIPS` clips of digit-free words spoken by the split's own speakers."""
    rng = np.random.default_rng([seed, SPLITS.index(split), 2**31 - 1])
    voices, variants = SPEAKERS[split]
    clips = []
    for _ in range(BABBLE_CLIPS):
        words = " ".join(rng.choice(BABBLE_WORDS, size=BABBLE_WORDS_PER_CLIP))
        clips.append(
            synthesise(
                words,
                str(rng.choice(voices)),
                str(rng.choice(variants)),
                int(rng.integers(RATES[0], RATES[1] + 1)),
                int(rng.integers(PITCHES[0], PITCHES[1] + 1)),
            )
        )
    return clips


def babble_noise(rng: np.random.Generator, n: int, pool: list[np.ndarray]) -> np.ndarray:
    """The sum of :data:`BABBLE_TALKERS` pool clips, each tiled and started at a random
    offset, each scaled to unit power (several people talking at once)."""
    out = np.zeros(n)
    for k in rng.choice(len(pool), size=BABBLE_TALKERS, replace=False):
        clip = pool[int(k)]
        tiled = np.tile(clip, n // len(clip) + 2)
        start = int(rng.integers(0, len(clip)))
        part = tiled[start : start + n]
        out += part / np.sqrt(np.mean(part**2) + 1e-12)
    return out


def add_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float, reference: float):
    """``speech + g noise`` with ``g`` chosen so ``10 log10(P_ref / P_noise) = snr_db``, where
    ``P_ref`` is the power of the synthesised speech (before the added silence)."""
    gain = np.sqrt(reference / (np.mean(noise**2) * 10.0 ** (snr_db / 10.0)))
    return speech + gain * noise


# -- features -------------------------------------------------------------------------------
def log_mel(audio: np.ndarray, num_mels: int = NUM_MELS) -> np.ndarray:
    """``log(max(mel power, floor))`` ``[T, num_mels]`` float32 by librosa: 25 ms Hann
    windows every 10 ms, 512-point FFT, librosa's (Slaney) mel filters from 20 Hz to 8 kHz;
    ``floor`` is 80 dB below the utterance's largest mel energy (librosa.power_to_db's
    ``top_db``), at least 1e-10."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=np.asarray(audio, np.float32),
        sr=SAMPLE_RATE,
        n_fft=FFT,
        win_length=WINDOW,
        hop_length=HOP,
        window="hann",
        center=False,
        power=2.0,
        n_mels=num_mels,
        fmin=20.0,
        fmax=SAMPLE_RATE / 2,
    )
    # Clamped 80 dB below the utterance's strongest band energy, as librosa.power_to_db's
    # top_db=80: espeak-ng's silence is digital zero, and an absolute floor would put clean
    # silence tens of nats below any speech, dominating the per-utterance normalisation.
    floor = max(float(mel.max()) * 10.0 ** (-TOP_DB / 10.0), LOG_FLOOR)
    return np.log(np.maximum(mel, floor)).T.astype(np.float32)


# -- one utterance --------------------------------------------------------------------------
def utterance(seed: int, split: str, index: int, *, pool=None, num_mels: int = NUM_MELS) -> dict:
    """Utterance ``index`` of ``split``: log-mel frames with and without its noise, labels
    and the recipe. ``pool``: a callable returning the split's babble clips (made on first
    use by default: a split whose utterances draw no babble never synthesises them).

    ``features`` hears the noise (none when the utterance drew "clean"), ``clean_features``
    the same speech and silence without it. Labels are ``digit + 1`` (0 is the CTC blank).
    """
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    digits = rng.integers(0, 10, size=int(rng.integers(1, MAX_DIGITS + 1)))
    voices, variants = SPEAKERS[split]
    voice, variant = str(rng.choice(voices)), str(rng.choice(variants))
    rate = int(rng.integers(RATES[0], RATES[1] + 1))
    pitch = int(rng.integers(PITCHES[0], PITCHES[1] + 1))
    lead, trail = (int(v) for v in rng.integers(0, int(SILENCE_S * SAMPLE_RATE), size=2))
    kind = str(rng.choice(NOISES))
    snr = SNRS_DB[int(rng.integers(len(SNRS_DB)))]
    noise_rng = np.random.default_rng([seed, SPLITS.index(split), index, 1])

    text = " ".join(str(d) for d in digits)
    speech = synthesise(text, voice, variant, rate, pitch)
    reference = float(np.mean(speech**2))
    clean = np.pad(speech, (lead, trail))
    if snr is None:
        kind, noisy = "none", clean
    elif kind == "white":
        noisy = add_noise(clean, noise_rng.standard_normal(len(clean)), snr, reference)
    elif kind == "pink":
        noisy = add_noise(clean, pink_noise(noise_rng, len(clean)), snr, reference)
    else:
        clips = pool() if pool is not None else babble_pool(seed, split)
        noisy = add_noise(clean, babble_noise(noise_rng, len(clean), clips), snr, reference)
    clean_features = log_mel(clean, num_mels)
    return {
        "features": clean_features if noisy is clean else log_mel(noisy, num_mels),
        "clean_features": clean_features,
        "labels": (digits + 1).astype(np.int32),
        "text": text,
        "speaker": f"{voice}+{variant}",
        "rate": rate,
        "pitch": pitch,
        "noise": kind,
        "snr_db": np.float32(np.inf if snr is None else snr),
    }


# -- the TFDS builder -----------------------------------------------------------------------
class SpokenDigitsConfig(tfds.core.BuilderConfig):
    """Seed, split sizes and mel bands of one prepared copy (its name encodes them)."""

    def __init__(self, *, seed: int, sizes: tuple[int, int, int], num_mels: int):
        name = f"s{seed}_{'-'.join(map(str, sizes))}_m{num_mels}"
        super().__init__(name=name, description="spoken digit strings")
        self.seed, self.sizes, self.num_mels = seed, tuple(sizes), num_mels


class SpokenDigits(tfds.core.GeneratorBasedBuilder):
    """Digit strings of 1 to 7 digits spoken by espeak-ng, as log-mel frames (see module).

    Every utterance is stored twice, as heard (``features``: with its noise) and without
    the noise (``clean_features``), so a model can be trained clean and tested noisy on
    exactly the same utterances.
    """

    name = "rnnlab_spoken_digits"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [SpokenDigitsConfig(seed=0, sizes=(1, 1, 1), num_mels=NUM_MELS)]

    def _info(self):
        from rnnlab.data.builders import _info

        frames = tfds.features.Tensor(
            shape=(None, self.builder_config.num_mels), dtype=np.float32, encoding="zlib"
        )
        return _info(
            self,
            {
                "features": frames,
                "clean_features": frames,
                "labels": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                "text": tfds.features.Text(),
                "speaker": tfds.features.Text(),
                "rate": tfds.features.Scalar(np.int32),
                "pitch": tfds.features.Scalar(np.int32),
                "noise": tfds.features.Text(),
                "snr_db": tfds.features.Scalar(np.float32),
            },
            "Spoken digit strings (espeak-ng) with white, pink or babble noise, log-mel frames.",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        espeak_binary()  # fail before any split is written
        c = self.builder_config
        return {
            split: self._generate_examples(split, size)
            for split, size in zip(SPLITS, c.sizes, strict=True)
        }

    def _generate_examples(self, split, size):
        c = self.builder_config
        pool = functools.cache(functools.partial(babble_pool, c.seed, split))
        for i in range(size):
            yield i, utterance(c.seed, split, i, pool=pool, num_mels=c.num_mels)
