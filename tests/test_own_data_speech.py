"""Own speech for CTC: a folder of audio files and a manifest, trained through
``rnnlab train`` and scored against edit distances counted on ``rnnlab predict``'s
transcripts; unreadable audio is named with its manifest line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from rnnlab import cli

RATE = 16000
TONES = {"a": 300.0, "b": 800.0, "c": 1900.0}  # each character a tone of its own


def _utterance(text: str, rng) -> np.ndarray:
    parts = [np.zeros(int(0.05 * RATE))]
    for ch in text:
        t = np.arange(int(0.12 * RATE)) / RATE
        parts += [0.5 * np.sin(2 * np.pi * TONES[ch] * t), np.zeros(int(0.05 * RATE))]
    audio = np.concatenate(parts)
    return (audio + 0.01 * rng.standard_normal(len(audio))).astype(np.float32)


def _folder(root, name: str, n: int, seed: int, rate: int = RATE) -> list[str]:
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(exist_ok=True)
    texts, lines = [], []
    for i in range(n):
        text = "".join(rng.choice(list(TONES), size=int(rng.integers(1, 4))))
        audio = _utterance(text, rng)
        if rate != RATE:  # another sample rate: rnnlab resamples it
            audio = np.interp(np.arange(0, len(audio), RATE / rate), np.arange(len(audio)), audio)
        soundfile.write(root / "audio" / f"{name}{i}.wav", audio.astype(np.float32), rate)
        texts.append(text)
        lines.append(f"audio/{name}{i}.wav\t{text.upper()}\n")
    (root / f"{name}.tsv").write_text("".join(lines))
    return texts


def _edits(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def test_audio_folder_trains_and_matches_edit_distance_on_transcripts(tmp_path, capsys):
    _folder(tmp_path, "train", 48, 0)
    refs = _folder(tmp_path, "test", 12, 1, rate=22050)
    workdir = tmp_path / "run"
    args = ["train", "--config", "experiments/own_data.py:speech,small", "--workdir",
            str(workdir), f"--config.data.path={tmp_path / 'train.tsv'}",
            f"--config.data.test_manifest={tmp_path / 'test.tsv'}"]  # fmt: skip
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(["eval", "--workdir", str(workdir), "--split", "test"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    out = tmp_path / "out.jsonl"
    args = ["predict", "--workdir", str(workdir), "--input", str(tmp_path / "test.tsv"),
            "--output", str(out), "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    hyps = [r["transcript"] for r in rows]
    assert [r["audio"].rsplit("/", 1)[-1] for r in rows] == [f"test{i}.wav" for i in range(12)]
    edits = sum(_edits(h, r) for h, r in zip(hyps, refs, strict=True))
    assert metrics["error_rate"] == pytest.approx(edits / sum(len(r) for r in refs), abs=1e-6)
    exact = np.mean([h == r for h, r in zip(hyps, refs, strict=True)])
    assert metrics["sequence_accuracy"] == pytest.approx(exact, abs=1e-6)


@pytest.mark.parametrize("damage", ["garbage", "missing"])
def test_unreadable_audio_is_named_with_its_manifest_line(tmp_path, capsys, damage):
    _folder(tmp_path, "train", 6, 0)
    bad = tmp_path / "audio" / "train3.wav"
    if damage == "garbage":
        bad.write_bytes(b"RIFF not really a wave file")
    else:
        bad.unlink()
    workdir = tmp_path / "run"
    args = ["train", "--config", "experiments/own_data.py:speech,small", "--workdir",
            str(workdir), f"--config.data.path={tmp_path / 'train.tsv'}"]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{tmp_path / 'train.tsv'}: line 4: audio file '{bad}' cannot be read" in err, err
    assert not workdir.exists()


def test_a_manifest_that_is_not_utf8_is_named(tmp_path):
    from rnnlab.data.audio_folder import read_manifest

    manifest = tmp_path / "train.tsv"
    manifest.write_bytes("a.wav\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"train.tsv: must be UTF-8 text"):
        read_manifest(str(manifest))
