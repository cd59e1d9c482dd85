"""The ``librispeech`` source: log-mel features against closed forms, character labels
against an independent encoding, batches and an end-to-end run on ``tfds.testing.mock_data``."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

import rnnlab.data as data
from rnnlab.data import speech

REPO = Path(__file__).resolve().parents[1]
RATE, FFT, WINDOW, HOP = 16000, 512, 400, 160
# The label map written out by hand: blank 0, space 1, apostrophe 2, a..z 3..28.
CHARS = {" ": 1, "'": 2, **{chr(ord("a") + i): 3 + i for i in range(26)}}


def htk_edges(num_mels, f_max=RATE / 2):
    """The num_mels + 2 band edges in Hz, equally spaced on 2595 log10(1 + f / 700)."""
    top = 2595 * math.log10(1 + f_max / 700)
    return [700 * (10 ** (k * top / (num_mels + 1) / 2595) - 1) for k in range(num_mels + 2)]


def triangle(f, lo, mid, hi):
    if lo < f <= mid:
        return (f - lo) / (mid - lo)
    if mid < f < hi:
        return (hi - f) / (hi - mid)
    return 0.0


def expected_labels(text):
    kept = "".join(c for c in text.lower() if c in CHARS or c.isspace())
    return [CHARS[c] for c in " ".join(kept.split())]


def frames_of(num_samples):
    return 1 + (num_samples - WINDOW) // HOP if num_samples >= WINDOW else 1


# -- features -------------------------------------------------------------------------------
def test_htk_mel_formula_and_filterbank_triangles():
    assert math.isclose(float(speech.hz_to_mel(700.0)), 2595 * math.log10(2))
    assert math.isclose(float(speech.hz_to_mel(1000.0)), 2595 * math.log10(17 / 7))
    f = np.array([0.0, 123.0, 1000.0, 7999.0])
    np.testing.assert_allclose(speech.mel_to_hz(speech.hz_to_mel(f)), f, atol=1e-9)

    num_mels = 80
    fb = speech.mel_filterbank(FFT, RATE, num_mels)
    assert fb.shape == (FFT // 2 + 1, num_mels)
    edges = htk_edges(num_mels)
    want = np.array(
        [
            [
                triangle(j * RATE / FFT, edges[k], edges[k + 1], edges[k + 2])
                for k in range(num_mels)
            ]
            for j in range(FFT // 2 + 1)
        ]
    )
    np.testing.assert_allclose(fb, want, atol=1e-9)
    # Every band sees at least one bin above 0 at this resolution.
    assert (fb.max(axis=0) > 0).all()


def test_framing_and_power_spectrum_against_a_direct_dft_and_parseval():
    rng = np.random.default_rng(0)
    x = rng.normal(size=RATE // 4)  # 0.25 s
    frames = speech.frame_signal(x, WINDOW, HOP)
    assert frames.shape == (frames_of(len(x)), WINDOW) == (23, WINDOW)
    for t in (0, 7, 22):
        np.testing.assert_array_equal(frames[t], x[t * HOP : t * HOP + WINDOW])
    assert speech.frame_signal(x[:37], WINDOW, HOP).shape == (1, WINDOW)

    hann = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / WINDOW) for n in range(WINDOW)])
    np.testing.assert_allclose(speech.hann_window(WINDOW), hann, atol=1e-12)
    windowed = frames[:3] * hann
    power = speech.power_spectrum(windowed, FFT)
    assert power.shape == (3, FFT // 2 + 1)
    n, k = np.arange(WINDOW), np.arange(FFT // 2 + 1)
    dft = windowed @ np.exp(-2j * np.pi * np.outer(n, k) / FFT)
    np.testing.assert_allclose(power, np.abs(dft) ** 2, rtol=1e-9, atol=1e-9)
    # Parseval over the full (two-sided) spectrum of the zero-padded frame.
    two_sided = power[:, 0] + power[:, -1] + 2 * power[:, 1:-1].sum(axis=1)
    np.testing.assert_allclose(two_sided, FFT * (windowed**2).sum(axis=1), rtol=1e-9)


@pytest.mark.parametrize("band", [20, 60])
def test_a_sine_puts_its_energy_in_the_band_centred_on_its_frequency(band):
    edges = htk_edges(80)
    f0 = edges[band + 1]  # the peak of band `band`
    t = np.arange(RATE // 2) / RATE
    audio = np.round(0.5 * 32767 * np.sin(2 * np.pi * f0 * t)).astype(np.int16)
    feats = speech.log_mel(audio, normalize=False)
    assert feats.shape == (frames_of(len(audio)), 80) and feats.dtype == np.float32
    assert (feats.argmax(axis=1) == band).all()
    # Far bands hold only the window's leakage: below 1e-4 of the peak energy.
    energy = np.exp(feats)
    far = np.abs(np.arange(80) - band) > 3
    assert (energy[:, far].max(axis=1) < 1e-4 * energy[:, band]).all()
    # Between the peaks of the first and last bands the triangles sum to one, so the bands
    # together hold the sine's one-sided power: by Parseval, FFT * sum (w x)^2 / 2 with
    # sum (w x)^2 ~ A^2 / 2 * sum w^2 for amplitude A = 0.5.
    fb = speech.mel_filterbank(FFT, RATE, 80)
    bins = np.arange(FFT // 2 + 1) * RATE / FFT
    inside = (bins >= edges[1]) & (bins <= edges[80])
    np.testing.assert_allclose(fb[inside].sum(axis=1), 1.0, atol=1e-9)
    w = speech.hann_window(WINDOW)
    one_sided = FFT * (0.5**2 / 2 * (w**2).sum()) / 2
    ratio = energy.sum(axis=1) / one_sided
    assert np.all(np.abs(ratio - 1) < 0.03), ratio


def test_log_floor_and_per_utterance_normalisation():
    silent = speech.log_mel(np.zeros(RATE // 10, np.int16), normalize=False, log_floor=1e-8)
    np.testing.assert_allclose(silent, math.log(1e-8), rtol=1e-6)
    noise = np.random.default_rng(1).normal(0, 3000, RATE // 2).astype(np.int16)
    feats = speech.log_mel(noise, normalize=True)
    np.testing.assert_allclose(feats.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(feats.std(axis=0), 1.0, atol=1e-3)


def test_text_encoding_matches_a_hand_written_map():
    for text in ["HELLO WORLD'S", "  it's  42 dogs!\t ", "Ünïcode café", ""]:
        ids = speech.encode_text(text)
        assert ids.dtype == np.int32 and ids.tolist() == expected_labels(text)
    assert speech.decode_labels([10, 7, 14, 14, 17, 0, 0]) == "hello"


# -- batches on mock data -------------------------------------------------------------------
def test_batches_under_mock_data_decode_back_to_the_mock_text(tmp_path):
    cfg = {"name": "librispeech", "data_dir": str(tmp_path), "bucket_window": 0}
    with tfds.testing.mock_data(num_examples=10):
        spec = data.info(cfg)
        batches = list(data.load(cfg, split="validation", batch_size=4, seed=0, repeat=False))
        source = speech._source(data.resolve(cfg), "validation")  # as load resolves it
        raw = [source[i] for i in range(len(source))]
    assert spec["task"] == "ctc" and spec["input_features"] == 80
    assert spec["num_labels"] == len(spec["vocab"]) == 29 and spec["blank_id"] == 0
    assert spec["vocab"][1:] == list(CHARS)
    assert len(batches) == 3
    weights = np.concatenate([b["weights"] for b in batches])
    np.testing.assert_array_equal(weights, [1.0] * 10 + [0.0] * 2)
    row = 0
    for batch in batches:
        B, T, F = batch["inputs"].shape
        assert (B, F) == (4, 80) and batch["inputs"].dtype == np.float32
        assert T % 64 == 0 and batch["targets"].shape[1] % 16 == 0
        for key in ("input_lengths", "targets", "target_lengths"):
            assert batch[key].dtype == np.int32
        for b in range(B):
            if batch["weights"][b] == 0:
                continue
            example = raw[row]
            row += 1
            labels = expected_labels(str(example["text"]))
            n, u = batch["input_lengths"][b], batch["target_lengths"][b]
            assert n == frames_of(len(example["speech"])) and u == len(labels)
            assert batch["targets"][b, :u].tolist() == labels
            assert not batch["targets"][b, u:].any() and not batch["inputs"][b, n:].any()
            assert speech.decode_labels(batch["targets"][b]) == " ".join(
                str(example["text"]).split()
            )
    assert row == 10


def _sine_examples(texts, seconds, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i, (text, sec) in enumerate(zip(texts, seconds, strict=True)):
        t = np.arange(int(sec * RATE)) / RATE
        tone = 8000 * np.sin(2 * np.pi * (300 + 150 * i) * t) + rng.normal(0, 200, len(t))
        out.append({"speech": tone.astype(np.int16), "text": text, "id": str(i)})
    return out


def test_long_utterances_become_zero_weight_rows(tmp_path):
    texts = ["HELLO WORLD'S", "A B", "IT'S A VERY LONG TRANSCRIPT", "OK", "NO"]
    seconds = [0.2, 0.5, 0.2, 0.1, 0.03]
    examples = _sine_examples(texts, seconds)
    cfg = {
        "name": "librispeech",
        "data_dir": str(tmp_path),
        "bucket_window": 0,
        "max_frames": 30,
        "max_label": 20,
        "pad_to": "max",
    }
    with tfds.testing.mock_data(as_data_source_fn=lambda *a, **k: examples):
        (batch,) = data.load(cfg, split="test", batch_size=5, seed=0, repeat=False)
    keep = [
        frames_of(int(s * RATE)) <= 30 and len(expected_labels(t)) <= 20
        for t, s in zip(texts, seconds, strict=True)
    ]
    assert keep == [True, False, False, True, True]
    np.testing.assert_array_equal(batch["weights"], np.array(keep, np.float32))
    assert batch["inputs"].shape == (5, 30, 80) and batch["targets"].shape == (5, 20)
    assert batch["targets"][0, :13].tolist() == expected_labels("hello world's")
    assert not batch["targets"][1].any() and not batch["inputs"][2].any()


# -- the experiment, end to end -------------------------------------------------------------
def test_librispeech_experiment_trains_on_mock_data(tmp_path, monkeypatch):
    from rnnlab import cli

    monkeypatch.setenv("RNNLAB_DATA_DIR", str(tmp_path / "data"))
    words = ["A CAT", "THE DOG'S", "NO", "YES SIR", "GO ON", "IT IS", "BE", "AN OX"]
    examples = _sine_examples(words, [0.3 + 0.02 * i for i in range(8)])
    workdir = tmp_path / "run"
    overrides = {
        "train.steps": 2,
        "optim.warmup_steps": 1,
        "train.batch_size": 8,
        "train.log_every": 1,
        "train.eval_every": 2,
        "train.checkpoint_every": 2,
        "eval.batch_size": 8,
        "eval.max_batches": 1,
        "model.hidden_features": 8,
        "model.num_layers": 1,
        "report.max_examples": 8,
        "data.num_mels": 16,
    }
    argv = ["train", "--config", f"{REPO}/experiments/ctc_digits.py:librispeech"]
    argv += ["--workdir", str(workdir)] + [f"--config.{k}={v}" for k, v in overrides.items()]
    with tfds.testing.mock_data(as_data_source_fn=lambda *a, **k: examples):
        assert cli.main(argv) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["stop_reason"] == "completed" and summary["steps"] == 2
    assert math.isfinite(summary["final"]["validation"]["loss"]), summary["final"]
    assert summary["report"]["examples"] == 8
