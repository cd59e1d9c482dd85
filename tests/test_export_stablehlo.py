"""``rnnlab export --format stablehlo``: the artifacts run in a process that imports only
jax and numpy, and give the trained model's outputs at two batch sizes and two lengths;
and ``rnnlab predict`` on a language model."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from rnnlab import cli
from rnnlab.train import export
from tests.stablehlo_runner import compiled, run_outside


def test_classifier_forward_runs_without_rnnlab(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 10, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", inputs=x, labels=(x[:, :, 0].mean(1) > 0).astype(int))
    workdir, out = tmp_path / "run", tmp_path / "hlo"
    args = ["train", "--config", "experiments/own_data.py:classification,small", "--workdir",
            str(workdir), f"--config.data.path={tmp_path / 'd.npz'}"]  # fmt: skip
    assert cli.main(args) == 0
    args = ["export", "--workdir", str(workdir), "--format", "stablehlo", "--out", str(out)]
    assert cli.main(args) == 0
    sig = json.loads((out / "signature.json").read_text())
    fwd = sig["functions"]["forward"]
    assert fwd["time"] == "symbolic" and "cpu" in fwd["platforms"]
    # Asked for all three: each one is carried or named with the reason it did not lower.
    assert sorted(fwd["platforms"] + list(fwd["not_lowered"])) == ["cpu", "cuda", "tpu"]
    assert sig["platforms"] == fwd["platforms"]
    assert [i["shape"] for i in fwd["inputs"]] == [["b", "t", 3], ["b"]]
    model, _ = export.load(str(workdir))
    forward = compiled(model, train=False)
    cases, want = {}, {}
    for batch, length in ((1, 7), (5, 7), (1, 19), (5, 19)):
        inputs = rng.normal(size=(batch, length, 3)).astype(np.float32)
        lengths = rng.integers(1, length + 1, size=batch).astype(np.int32)
        key = f"forward/{batch}x{length}"
        cases[f"{key}/0"], cases[f"{key}/1"] = inputs, lengths
        want[key] = np.asarray(forward({"inputs": inputs, "seq_lengths": lengths})[0])
    got = run_outside(out, cases, tmp_path)
    assert list(got["forward/platforms"]) == fwd["platforms"]  # exported.platforms, outside
    for key, value in want.items():
        np.testing.assert_allclose(got[f"{key}/out0"], value, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def lm_workdir(tmp_path_factory):
    """One short language-model run that the export and predict tests only read. Greedy
    sampling of 8 characters is the run's setting that ``rnnlab predict`` continues with."""
    tmp = tmp_path_factory.mktemp("lm")
    text = tmp / "text"
    text.mkdir()
    # Every character of the predict test's prompts ("abc", "bad d") is in the vocabulary.
    (text / "a.txt").write_text("the quick brown fox jumps over the lazy dog. " * 200)
    workdir = tmp / "run"
    args = ["train", "--config", "experiments/charlm.py:small", "--workdir", str(workdir),
            "--config.data.name=text_dir", f"--config.data.path={text}",
            "--config.train.steps=4", "--config.train.eval_every=4",
            "--config.optim.warmup_steps=1", "--config.train.checkpoint_every=4",
            "--config.sample.length=8", "--config.sample.temperature=0.0"]  # fmt: skip
    assert cli.main(args) == 0
    return workdir


@pytest.fixture(scope="module")
def lm_forward(lm_workdir):
    """The trained language model's forward, loaded once and compiled once per input
    shape, for the export and predict tests (they share the shapes ``[1, 5]``,
    ``[1, 6]`` and ``[1, 12]``), and the load's info."""
    model, info = export.load(str(lm_workdir))
    return compiled(model, train=False), info


def test_language_model_forward_and_streaming_step_run_without_rnnlab(
    lm_workdir, lm_forward, tmp_path
):
    workdir, out = lm_workdir, tmp_path / "hlo"
    args = ["export", "--workdir", str(workdir), "--format", "stablehlo", "--out", str(out),
            "--platforms", "cpu"]  # fmt: skip
    assert cli.main(args) == 0
    sig = json.loads((out / "signature.json").read_text())
    assert set(sig["functions"]) == {"forward", "step"} and sig["vocab"][2:]
    forward, info = lm_forward
    vocab = info.dataset["vocab_size"]
    rng = np.random.default_rng(1)
    cases, want = {}, {}
    for batch, length in ((1, 5), (3, 5), (1, 12), (3, 12)):
        tokens = rng.integers(2, vocab, size=(batch, length)).astype(np.int32)
        key = f"forward/{batch}x{length}"
        cases[f"{key}/0"] = tokens
        logits, aux = forward({"inputs": tokens})
        want[key] = np.asarray(logits)
        # Streaming: the carry after the prompt, then one step on the next token.

        carry = jax.tree.leaves(aux["carry"])
        step_key = f"step/{batch}x{length}"
        nxt = rng.integers(2, vocab, size=(batch,)).astype(np.int32)
        cases[f"{step_key}/0"] = nxt
        for i, c in enumerate(carry):
            cases[f"{step_key}/{i + 1}"] = np.asarray(c)
        full, _ = forward({"inputs": np.concatenate([tokens, nxt[:, None]], 1)})
        want[step_key] = np.asarray(full[:, -1])
    got = run_outside(out, cases, tmp_path)
    for key, value in want.items():
        np.testing.assert_allclose(got[f"{key}/out0"], value, rtol=1e-4, atol=1e-4)


def test_predict_continues_prompts_as_a_greedy_loop_over_the_whole_forward(
    lm_workdir, lm_forward, tmp_path
):
    """``rnnlab predict`` on a language model: its greedy continuation equals an argmax loop
    that reruns the trained model's forward on the growing text (no carry, no decode step)."""
    workdir = lm_workdir
    (tmp_path / "prompts.txt").write_text("abc\nbad d\n")
    out = tmp_path / "out.jsonl"
    args = ["predict", "--workdir", str(workdir), "--input", str(tmp_path / "prompts.txt"),
            "--output", str(out), "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    forward, info = lm_forward
    encode, decode = info.codec()
    for row, prompt in zip(rows, ["abc", "bad d"], strict=True):
        ids = list(encode(prompt))
        for _ in range(8):
            logits, _ = forward({"inputs": np.asarray([ids], np.int32)})
            ids.append(int(np.argmax(np.asarray(logits)[0, -1])))
        assert row == {"prompt": prompt, "continuation": decode(ids[len(encode(prompt)) :])}
