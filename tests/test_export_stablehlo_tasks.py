"""``rnnlab export --format stablehlo`` of translation and forecasting runs: each function
runs in a process that imports only jax and numpy and gives the trained model's outputs at
two batch sizes and two lengths; a greedy loop over the exported encoder and decoder step
reproduces the exported whole translation; the files carry the platforms their signature
names."""

from __future__ import annotations

import json

import jax
import numpy as np

from rnnlab import cli
from rnnlab.models.attention import source_mask
from rnnlab.train import export
from tests.forecast_runs import LOOKBACK, train_forecaster, write_series
from tests.stablehlo_runner import compiled, run_outside, run_script

# Greedy decoding by a caller: encode once, then one decoder step per token, feeding back
# the argmax; positions after the end token hold the padding id.
GREEDY = r"""
import json, sys
import numpy as np
from jax import export
out_dir, case_file, result_file = sys.argv[1:]
sig = json.load(open(f"{out_dir}/signature.json"))
load = lambda n: export.deserialize(bytearray(open(f"{out_dir}/{n}.stablehlo", "rb").read()))
encode, step = load("encode"), load("decode_step")
cases = np.load(case_file)
inputs, lengths = cases["inputs"], cases["lengths"]
values, keys, *state = encode.call(inputs, lengths)
token = np.full(len(inputs), sig["bos_id"], np.int32)
done = np.zeros(len(inputs), bool)
out = []
for _ in range(sig["max_target_len"]):
    logits, *state = step.call(token, *state, values, keys, lengths)
    token = np.asarray(logits).argmax(-1).astype(np.int32)
    out.append(np.where(done, sig["pad_id"], token))
    done |= token == sig["eos_id"]
np.save(result_file, np.stack(out, 1))
assert not any(m == "rnnlab" or m.startswith("rnnlab.") for m in sys.modules), "rnnlab imported"
"""


def _pairs(path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    words = "red blue green big small cat dog sun moon tree".split()
    rows = []
    for _ in range(n):
        s = list(rng.choice(words, size=int(rng.integers(1, 5))))
        rows.append(json.dumps({"source": " ".join(s), "target": " ".join(reversed(s))}))
    path.write_text("\n".join(rows) + "\n")


def _export(workdir, out, platforms: str = "cpu") -> dict:
    args = ["export", "--workdir", str(workdir), "--format", "stablehlo", "--out", str(out),
            "--platforms", platforms]  # fmt: skip
    assert cli.main(args) == 0
    return json.loads((out / "signature.json").read_text())


def test_translator_encoder_step_and_greedy_translation_run_without_rnnlab(tmp_path):
    _pairs(tmp_path / "pairs.jsonl", 120, 0)
    workdir, out = tmp_path / "run", tmp_path / "hlo"
    args = ["train", "--config", "experiments/own_data.py:translation,small", "--workdir",
            str(workdir), f"--config.data.path={tmp_path / 'pairs.jsonl'}",
            "--config.train.steps=4", "--config.train.eval_every=4",
            "--config.train.checkpoint_every=4", "--config.train.log_every=4",
            "--config.optim.warmup_steps=1"]  # fmt: skip
    assert cli.main(args) == 0
    sig = _export(workdir, out)
    assert set(sig["functions"]) == {"encode", "decode_step", "translate"}
    assert sig["target_vocab"][3] == "</s>" and sig["source_vocab"][4:]
    model, info = export.load(str(workdir))
    V, T = info.dataset["source_vocab_size"], info.dataset["max_target_len"]
    encode, decode_step = compiled(model, "encode"), compiled(model, "decode_step")
    translate = compiled(model, "translate", max_length=T)
    rng = np.random.default_rng(1)
    cases, want = {}, {}
    for batch, length in ((1, 3), (3, 3), (1, 7), (3, 7)):
        tokens = rng.integers(4, V, size=(batch, length)).astype(np.int32)
        lengths = rng.integers(1, length + 1, size=batch).astype(np.int32)
        lengths[0] = length
        case = f"{batch}x{length}"
        cases[f"encode/{case}/0"], cases[f"encode/{case}/1"] = tokens, lengths
        cases[f"translate/{case}/0"], cases[f"translate/{case}/1"] = tokens, lengths
        enc = encode(tokens, lengths)
        leaves = jax.tree.leaves(enc["state"])
        want[f"encode/{case}"] = [enc["values"], enc["keys"], *leaves]
        want[f"translate/{case}"] = translate({"inputs": tokens, "input_lengths": lengths})
        # One decoder step from the encoder's state on a token of the caller's choice.
        prev = rng.integers(4, info.dataset["target_vocab_size"], size=batch).astype(np.int32)
        args = [prev, *leaves, enc["values"], enc["keys"], lengths]
        for i, a in enumerate(args):
            cases[f"decode_step/{case}/{i}"] = np.asarray(a)
        enc = dict(enc, mask=source_mask(lengths, length))
        new, logits, _ = decode_step(enc["state"], prev, enc)
        want[f"decode_step/{case}"] = [logits, *jax.tree.leaves(new)]
    got = run_outside(out, cases, tmp_path)
    for key, values in want.items():
        for i, value in enumerate(values):
            np.testing.assert_allclose(got[f"{key}/out{i}"], value, rtol=1e-4, atol=1e-5)
    # A caller's greedy loop over encode and decode_step equals the exported translation.
    tokens, lengths = cases["translate/3x7/0"], cases["translate/3x7/1"]
    np.savez(tmp_path / "src.npz", inputs=tokens, lengths=lengths)
    run_script(GREEDY, [str(out), str(tmp_path / "src.npz"), str(tmp_path / "g.npy")], tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "g.npy"), got["translate/3x7/out0"])


def test_forecaster_forward_runs_without_rnnlab_on_every_platform_it_names(tmp_path):
    write_series(tmp_path / "sales.csv")
    workdir, out = tmp_path / "run", tmp_path / "hlo"
    train_forecaster(tmp_path / "sales.csv", workdir, "quantile", steps=4)
    sig = _export(workdir, out, "cpu,cuda,tpu")
    fwd = sig["functions"]["forward"]
    assert [o["name"] for o in fwd["outputs"]] == ["forecast", "quantiles"]
    assert fwd["time"] == "symbolic" and fwd["min_time"] == 4  # the autoregressive lags
    assert [i["shape"] for i in fwd["inputs"]] == [["b", "t", 1]]
    assert sorted(fwd["platforms"] + list(fwd["not_lowered"])) == ["cpu", "cuda", "tpu"]
    assert sig["quantile_levels"] == [0.1, 0.5, 0.9] and sig["horizon"] == 4
    model, _ = export.load(str(workdir))
    forward = compiled(model, train=False)
    rng = np.random.default_rng(2)
    cases, want = {}, {}
    for batch, length in ((1, LOOKBACK), (4, LOOKBACK), (1, 29), (4, 29)):
        inputs = rng.normal(size=(batch, length, 1)).astype(np.float32)
        cases[f"forward/{batch}x{length}/0"] = inputs
        point, aux = forward({"inputs": inputs})
        want[f"forward/{batch}x{length}"] = [point, aux["quantiles"]]
    got = run_outside(out, cases, tmp_path)
    assert list(got["forward/platforms"]) == fwd["platforms"] == sig["platforms"]
    for key, values in want.items():
        for i, value in enumerate(values):
            np.testing.assert_allclose(got[f"{key}/out{i}"], value, rtol=1e-5, atol=1e-5)
