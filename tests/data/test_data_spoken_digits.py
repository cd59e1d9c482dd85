"""spoken_digits: espeak-ng audio with noise -> log-mel frames, deterministic from a seed."""

import subprocess
import wave

import numpy as np
import pytest

from rnnlab import data
from rnnlab.data import spoken_digits
from rnnlab.data import spoken_digits_audio as audio

SMALL = {"train_examples": 4, "validation_examples": 2, "test_examples": 3}
FIELDS = ("features", "clean_features", "labels", "text", "speaker", "rate", "pitch", "noise")


def read_all(tmp_path, **options) -> dict[str, list[dict]]:
    cfg = {"name": "spoken_digits", "data_dir": str(tmp_path), **SMALL, **options}
    builder = spoken_digits._builder(cfg)
    return {
        split: [builder.as_data_source(split=split)[i] for i in range(n)]
        for split, n in zip(audio.SPLITS, SMALL.values(), strict=True)
    }


def as_bytes(example: dict) -> list[bytes]:
    return [np.asarray(example[k]).tobytes() for k in (*FIELDS, "snr_db")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    first = tmp_path_factory.mktemp("a")
    return {
        "dir": first,
        "a": read_all(first),
        "b": read_all(tmp_path_factory.mktemp("b")),
        "other_seed": read_all(tmp_path_factory.mktemp("c"), synthesis_seed=1),
    }


def test_build_is_deterministic_from_its_seed(built):
    a, b, c = built["a"], built["b"], built["other_seed"]
    for split in audio.SPLITS:
        assert [as_bytes(e) for e in a[split]] == [as_bytes(e) for e in b[split]], split
        # Another seed: other digit strings, speakers and noise.
        assert all(
            as_bytes(x)[0] != as_bytes(y)[0] for x, y in zip(a[split], c[split], strict=True)
        )
    assert [e["text"] for e in a["train"]] != [e["text"] for e in c["train"]]


def test_examples_hold_what_the_recipe_says(built):
    for split in audio.SPLITS:
        examples = built["a"][split]
        voices, variants = audio.SPEAKERS[split]
        for e in examples:
            digits = [int(d) for d in e["text"].decode().split()]
            assert 1 <= len(digits) <= audio.MAX_DIGITS
            np.testing.assert_array_equal(e["labels"], np.array(digits) + 1)  # 0 is the blank
            voice, variant = e["speaker"].decode().split("+")
            assert voice in voices and variant in variants
            assert audio.RATES[0] <= e["rate"] <= audio.RATES[1]
            feats, clean = e["features"], e["clean_features"]
            assert feats.shape == clean.shape and feats.shape[1] == audio.NUM_MELS
            assert feats.dtype == np.float32 and np.isfinite(feats).all()
            # At least 1 s of audio per 7 digits is far below any rate used: frames >= digits.
            assert len(feats) >= 3 * len(digits)
            if e["noise"] == b"none":
                assert np.isinf(e["snr_db"])
                np.testing.assert_array_equal(feats, clean)
            else:
                assert float(e["snr_db"]) in [s for s in audio.SNRS_DB if s is not None]
                assert not np.array_equal(feats, clean)


def test_speakers_of_the_splits_are_disjoint():
    voices = [set(audio.SPEAKERS[s][0]) for s in audio.SPLITS]
    variants = [set(audio.SPEAKERS[s][1]) for s in audio.SPLITS]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not voices[i] & voices[j] and not variants[i] & variants[j]


def test_add_noise_reaches_the_snr():
    rng = np.random.default_rng(0)
    speech = np.sin(np.linspace(0, 200, 8000)) * 0.3
    noise = rng.standard_normal(8000) * 5.0
    for snr in (20.0, 5.0, 0.0):
        mixed = audio.add_noise(speech, noise, snr, float(np.mean(speech**2)))
        measured = 10 * np.log10(np.mean(speech**2) / np.mean((mixed - speech) ** 2))
        assert measured == pytest.approx(snr, abs=1e-9)


def test_pink_noise_has_a_one_over_f_spectrum():
    from scipy.signal import welch

    f, psd = welch(audio.pink_noise(np.random.default_rng(0), 1 << 16), nperseg=4096)
    band = (f > 0.005) & (f < 0.4)
    slope = np.polyfit(np.log(f[band]), np.log(psd[band]), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.1)


def test_parse_wav_matches_the_wave_module(tmp_path):
    path = tmp_path / "x.wav"
    subprocess.run(["espeak-ng", "-v", "gmw/en+m3", "-w", str(path), "4 2"], check=True)
    with wave.open(str(path)) as w:
        expected = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0
        rate = w.getframerate()
    stdout = subprocess.run(
        ["espeak-ng", "-v", "gmw/en+m3", "--stdout", "4 2"], capture_output=True, check=True
    ).stdout
    samples, sr = audio.parse_wav(stdout)
    assert sr == rate
    np.testing.assert_array_equal(samples, expected)


def test_missing_espeak_says_how_to_install(monkeypatch):
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install -y espeak-ng"):
        audio.synthesise("1", "gmw/en", "m1", 175, 50)


def test_batches_and_the_clean_training_copy(built):
    cfg = {"name": "spoken_digits", "data_dir": str(built["dir"]), **SMALL}
    info = data.info(cfg)
    assert info["task"] == "ctc" and info["num_labels"] == 11 and info["input_features"] == 40
    batch = next(iter(data.load(cfg, split="train", batch_size=4, seed=0, repeat=False)))
    assert batch["inputs"].shape[0] == 4 and batch["inputs"].shape[2] == 40
    assert batch["targets"].shape[1] == audio.MAX_DIGITS
    lengths = batch["input_lengths"]
    # Per-utterance normalisation: each band has zero mean over the utterance's frames.
    first = batch["inputs"][0, : lengths[0]]
    np.testing.assert_allclose(first.mean(axis=0), 0.0, atol=1e-4)

    def frames(split, noisy):
        opts = {**cfg, "noisy_train": noisy, "shuffle": False}
        it = data.load(opts, split=split, batch_size=8, seed=0, repeat=False)
        return next(iter(it))["inputs"]

    assert not np.array_equal(frames("train", True), frames("train", False))
    np.testing.assert_array_equal(frames("test", True), frames("test", False))  # always noisy


@pytest.mark.parametrize(
    "options, match",
    [
        ({"noisy_train": "yes"}, "noisy_train"),
        ({"synthesis_seed": -1}, "synthesis_seed"),
        ({"train_examples": 0}, "train_examples"),
    ],
)
def test_bad_options_are_errors(tmp_path, options, match):
    with pytest.raises(ValueError, match=match):
        data.info({"name": "spoken_digits", "data_dir": str(tmp_path), **options})
